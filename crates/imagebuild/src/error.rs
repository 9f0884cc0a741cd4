//! The two error types of image builds: [`TemplateError`] (the template or its variables are wrong; nothing
//! ran) and [`BuildError`] (running the plan failed; says which step and how).
//!
//! Owns the wording of every error a user sees from a build. Does not mask secrets itself: whoever builds an
//! error from text that may hold a sensitive value runs it through the plan's masker first (`plan.rs`,
//! `run.rs`), so a `Display` of these types is always safe to print.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// One thing wrong with a template, at a JSON path such as `provisioners[1].inline`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// Everything found wrong before a build starts. Shape problems are collected, not stopped at, so a user
/// fixes a template in one round.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template is not valid JSON: {0}")]
    Json(String),
    /// The template's shape: unknown keys, wrong types, unknown builder or provisioner types, several
    /// sources, bad `{{ }}` expressions.
    #[error("{}", render_problems("template", .0))]
    Invalid(Vec<Problem>),
    /// Variables the user must set and did not, and names set that the template does not declare.
    #[error("{}", render_variables(.missing, .unknown))]
    Variables { missing: Vec<String>, unknown: Vec<UnknownVariable> },
    /// A var-file that is not an object of scalar values.
    #[error("var-file {file}: {message}")]
    VarFile { file: String, message: String },
    /// Values that are wrong once variables are substituted (a bad image version, a `..` destination).
    #[error("{}", render_problems("template", .0))]
    Values(Vec<Problem>),
}

/// A variable set on the command line or in a var-file that the template does not declare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownVariable {
    pub name: String,
    /// `-var` or `var-file <label>`.
    pub origin: String,
}

fn render_problems(what: &str, problems: &[Problem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let mut s = format!("{what} has {} problems:", many.len());
            for p in many {
                s.push_str("\n  ");
                s.push_str(&p.to_string());
            }
            s
        }
    }
}

fn render_variables(missing: &[String], unknown: &[UnknownVariable]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        let noun = if missing.len() == 1 { "variable" } else { "variables" };
        parts
            .push(format!("required {noun} not set: {} (set with -var NAME=VALUE or a -var-file)", missing.join(", ")));
    }
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|u| format!("{} (from {})", u.name, u.origin)).collect();
        parts.push(format!("variables not declared in the template: {}", list.join(", ")));
    }
    parts.join("; ")
}

/// Which step of a plan: its position, its provisioner type and its optional `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRef {
    /// 1-based position among the steps that run.
    pub index: usize,
    pub total: usize,
    /// `shell` or `file`.
    pub kind: &'static str,
    pub name: Option<String>,
}

impl StepRef {
    /// The short label used as a prefix on streamed lines: `2/3 shell` or `2/3 shell "name"`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{}/{} {} {n:?}", self.index, self.total, self.kind),
            None => format!("{}/{} {}", self.index, self.total, self.kind),
        }
    }
}

impl fmt::Display for StepRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}", self.label())
    }
}

/// How one step failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepFailure {
    /// The process ran and exited with a status not in `valid_exit_codes`.
    Exit { what: String, code: i32 },
    /// The process was killed by a signal it did not ask for.
    Signal { what: String, signal: i32 },
    /// Packer's `timeout` ran out; the step's processes were killed.
    TimedOut { what: String, after: Duration },
    /// The step could not be started (sandbox set-up, spawning).
    Start { what: String, message: String },
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepFailure::Exit { what, code } => write!(f, "{what} exited with status {code}"),
            StepFailure::Signal { what, signal } => write!(f, "{what} was killed by signal {signal}"),
            StepFailure::TimedOut { what, after } => {
                write!(f, "{what} timed out after {} and was killed", crate::duration::display(*after))
            }
            StepFailure::Start { what, message } => write!(f, "{what} could not start: {message}"),
        }
    }
}

/// Running a plan failed. Whatever the variant, the caller publishes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// Provisioners must run sandboxed (CONTRACT §4); where that cannot be set up, nothing runs.
    #[error("cannot run provisioners: {0}")]
    SandboxUnavailable(String),
    #[error("image root {}: {message}", .path.display())]
    Root { path: PathBuf, message: String },
    /// A host input of a step (a script, a file source) is missing or unreadable; found before any step runs.
    #[error("{step}: {message}")]
    Input { step: StepRef, message: String },
    #[error("{step} failed: {failure}")]
    StepFailed { step: StepRef, failure: StepFailure },
    /// The build's private scratch space (its `/tmp`) could not be made.
    #[error("build scratch directory: {0}")]
    Scratch(String),
}
