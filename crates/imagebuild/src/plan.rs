//! A template with its variables substituted: the [`Plan`] of a build, and [`resolve`] that makes it.
//!
//! Owns variable precedence (through `vars.rs`), substitution into every string, `only`/`except`
//! filtering, Packer's shell defaults (`inline_shebang` `/bin/sh -e`, `execute_command`
//! `chmod +x {{.Path}}; {{.Vars}} {{.Path}}`) and the checks that need substituted values (image versions,
//! `KEY=VALUE` environment variables, destinations that stay inside the root). Pure: the process
//! environment and the clock are parameters of [`resolve_with`]. Does not touch the file system: host paths
//! (scripts, file sources, `source_dir`) are checked when the build runs.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use galleon_core::version::Version;

use crate::error::{Problem, TemplateError};
use crate::mask::Masker;
use crate::template::{FileSources, ProvisionerKind, ShellBody, SourceTpl, Template};
use crate::vars::{self, ExecPiece, Scope, Tpl};

/// Packer's default `inline_shebang`: `-e`, so the first failing command fails the step (CONTRACT §4).
pub const DEFAULT_INLINE_SHEBANG: &str = "/bin/sh -e";

/// What a build does, with every variable substituted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The builder's name (Packer's build name): the prefix of streamed lines and `PACKER_BUILD_NAME`.
    pub build_name: String,
    pub source: Source,
    pub outputs: Outputs,
    pub entrypoint: Option<String>,
    /// The provisioners that run (after `only`/`except`), in order.
    pub steps: Vec<Step>,
    /// Values of the sensitive variables, masked as `<sensitive>` in everything a build shows.
    pub sensitive: Vec<String>,
}

/// Where the image root starts from. The caller materializes it before [`crate::run`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An empty root.
    None,
    /// A host directory (`source_dir`).
    Dir(PathBuf),
    /// A managed image name or id (`source_image`).
    ManagedImage(String),
    /// A gallery version id or `GALLERY/IMAGE/VERSION` (`source_image_version`).
    GalleryVersion(String),
}

/// What a successful build publishes; at least one is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outputs {
    pub managed_image: Option<ManagedImageOut>,
    pub gallery: Option<GalleryOut>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedImageOut {
    pub name: String,
    /// `managed_image_resource_group_name`, as in Packer's Azure builder; the caller's default group if unset.
    pub resource_group: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GalleryOut {
    pub resource_group: String,
    pub gallery_name: String,
    pub image_name: String,
    pub image_version: String,
}

/// One provisioner to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The provisioner's optional `name`.
    pub name: Option<String>,
    /// Where it is in the template (`provisioners[2]`), for messages.
    pub template_path: String,
    pub pause_before: Option<Duration>,
    /// Further attempts after a failure (Packer's `max_retries`).
    pub max_retries: u32,
    /// Limit on each attempt (Packer's `timeout`); none by default.
    pub timeout: Option<Duration>,
    pub action: Action,
}

impl Step {
    /// `shell` or `file`.
    pub fn kind(&self) -> &'static str {
        match self.action {
            Action::Shell(_) => "shell",
            Action::File(_) => "file",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Shell(ShellStep),
    File(FileStep),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellStep {
    /// Run one after the other; the first that fails fails the step.
    pub scripts: Vec<Script>,
    /// `environment_vars` and `env`, in template order: given through `{{.Vars}}` and in the environment.
    pub env: Vec<(String, String)>,
    /// The execute_command with `{{.Path}}` and `{{.Vars}}` left for the runner.
    pub execute_command: Vec<ExecPiece>,
    pub valid_exit_codes: Vec<i32>,
    pub pause_after: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Script {
    /// `inline`: written to a script that starts with `#!<shebang>`.
    Inline { shebang: String, lines: Vec<String> },
    /// A host path (`script`, `scripts`), uploaded as it is.
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStep {
    pub sources: Vec<FileSource>,
    pub destination: Destination,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    /// A host file or directory. `contents_only` is Packer's trailing slash: a directory's contents go into
    /// the destination rather than the directory itself.
    Path { path: PathBuf, contents_only: bool },
    /// `content`: this text becomes the destination file.
    Content(String),
}

/// A place inside the image root: normal components only (no `..`, not absolute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// Relative to the root; empty means the root itself.
    pub path: PathBuf,
    /// Written with a trailing slash (or the root itself): sources go inside it.
    pub is_dir: bool,
}

impl Plan {
    /// Masks the sensitive values in `text`.
    pub fn mask(&self, text: &str) -> String {
        self.masker().mask(text)
    }

    pub(crate) fn masker(&self) -> Masker {
        Masker::new(self.sensitive.iter().map(String::as_str))
    }

    /// Makes relative host paths (`source_dir`, scripts, file sources) absolute against `base`. Packer takes
    /// them relative to where it runs; the CLI knows that directory, the server does not.
    pub fn make_paths_absolute(&mut self, base: &Path) {
        if let Source::Dir(p) = &mut self.source {
            *p = base.join(&*p);
        }
        for step in &mut self.steps {
            match &mut step.action {
                Action::Shell(s) => {
                    for script in &mut s.scripts {
                        if let Script::File(p) = script {
                            *p = base.join(&*p);
                        }
                    }
                }
                Action::File(f) => {
                    for src in &mut f.sources {
                        if let FileSource::Path { path, .. } = src {
                            *path = base.join(&*path);
                        }
                    }
                }
            }
        }
    }
}

/// What resolving needs from outside the template.
pub struct ResolveInputs<'a> {
    /// `-var NAME=VALUE`, in command-line order.
    pub vars: &'a [(String, String)],
    /// `-var-file`s in command-line order: a label for messages (its path) and its parsed JSON.
    pub var_files: &'a [(String, serde_json::Value)],
    /// The environment, for `{{env}}` in variable defaults.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `{{timestamp}}`: Unix seconds, the same everywhere in one build.
    pub timestamp: u64,
}

/// Resolves against the process environment and the current time. See [`resolve_with`].
pub fn resolve(
    t: &Template,
    vars: &[(String, String)],
    var_files: &[(String, serde_json::Value)],
) -> Result<Plan, TemplateError> {
    let timestamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let env = |name: &str| std::env::var(name).ok();
    resolve_with(t, &ResolveInputs { vars, var_files, env: &env, timestamp })
}

/// Substitutes variables into the template and checks the values. Errors never show a sensitive value.
pub fn resolve_with(t: &Template, inputs: &ResolveInputs<'_>) -> Result<Plan, TemplateError> {
    let values = vars::resolve_variables(&t.variables, inputs.vars, inputs.var_files, inputs.env, inputs.timestamp)?;
    let sensitive: Vec<String> =
        t.sensitive.iter().filter_map(|n| values.get(n)).filter(|v| !v.is_empty()).cloned().collect();
    let masker = Masker::new(sensitive.iter().map(String::as_str));
    let scope = Scope { vars: &values, build_name: &t.builder.name, timestamp: inputs.timestamp };
    let mut cx = Cx { scope, problems: Vec::new() };

    let b = &t.builder;
    let source = match &b.source {
        SourceTpl::None => Source::None,
        SourceTpl::Dir(p) => Source::Dir(PathBuf::from(cx.non_empty(p))),
        SourceTpl::ManagedImage(n) => Source::ManagedImage(cx.non_empty(n)),
        SourceTpl::GalleryVersion(v) => {
            let s = cx.non_empty(v);
            if !s.is_empty() && !s.starts_with('/') {
                cx.gallery_version_ref(v, &s);
            }
            Source::GalleryVersion(s)
        }
    };
    let managed_image = b.managed_image.as_ref().map(|m| ManagedImageOut {
        name: cx.non_empty(&m.name),
        resource_group: m.resource_group.as_ref().map(|g| cx.non_empty(g)),
    });
    let gallery = b.gallery.as_ref().map(|g| {
        let image_version = cx.non_empty(&g.image_version);
        if !image_version.is_empty()
            && let Err(e) = image_version.parse::<Version>()
        {
            cx.problem(&g.image_version, e.to_string());
        }
        GalleryOut {
            resource_group: cx.non_empty(&g.resource_group),
            gallery_name: cx.non_empty(&g.gallery_name),
            image_name: cx.non_empty(&g.image_name),
            image_version,
        }
    });
    let entrypoint = b.entrypoint.as_ref().map(|e| cx.non_empty(e));

    let mut steps = Vec::new();
    for p in &t.provisioners {
        let included = (p.only.is_empty() || p.only.contains(&b.name)) && !p.except.contains(&b.name);
        if !included {
            continue;
        }
        let action = match &p.kind {
            ProvisionerKind::Shell(s) => Action::Shell(cx.shell(s)),
            ProvisionerKind::File(f) => Action::File(cx.file(f)),
        };
        steps.push(Step {
            name: p.name.clone(),
            template_path: p.path.clone(),
            pause_before: p.pause_before,
            max_retries: p.max_retries,
            timeout: p.timeout,
            action,
        });
    }

    if !cx.problems.is_empty() {
        let problems = cx.problems.into_iter().map(|p| Problem::new(p.path, masker.mask(&p.message))).collect();
        return Err(TemplateError::Values(problems));
    }
    Ok(Plan {
        build_name: b.name.clone(),
        source,
        outputs: Outputs { managed_image, gallery },
        entrypoint,
        steps,
        sensitive,
    })
}

/// Rendering with problems collected.
struct Cx<'a> {
    scope: Scope<'a>,
    problems: Vec<Problem>,
}

impl Cx<'_> {
    fn problem(&mut self, t: &Tpl, message: impl Into<String>) {
        self.problems.push(Problem::new(&t.path, message));
    }

    fn render(&self, t: &Tpl) -> String {
        t.render(&self.scope)
    }

    fn non_empty(&mut self, t: &Tpl) -> String {
        let s = self.render(t);
        if s.trim().is_empty() {
            self.problem(t, "must not be empty");
        }
        s
    }

    fn gallery_version_ref(&mut self, t: &Tpl, s: &str) {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = parts.len() == 3 && parts.iter().all(|p| !p.is_empty());
        if !ok {
            self.problem(t, format!("{s:?} is neither a gallery image version id nor GALLERY/IMAGE/VERSION"));
        } else if let Err(e) = parts[2].parse::<Version>() {
            self.problem(t, e.to_string());
        }
    }

    fn shell(&mut self, s: &crate::template::ShellTpl) -> ShellStep {
        let scripts = match &s.body {
            ShellBody::Inline(lines) => {
                let shebang = match &s.inline_shebang {
                    Some(t) => self.non_empty(t),
                    None => DEFAULT_INLINE_SHEBANG.to_string(),
                };
                vec![Script::Inline { shebang, lines: lines.iter().map(|l| self.render(l)).collect() }]
            }
            ShellBody::Scripts(paths) => paths.iter().map(|p| Script::File(PathBuf::from(self.non_empty(p)))).collect(),
        };
        let mut env = Vec::new();
        for t in &s.environment_vars {
            let kv = self.render(t);
            match kv.split_once('=') {
                Some((k, v)) if is_env_name(k) => env.push((k.to_string(), v.to_string())),
                Some((k, _)) => {
                    self.problem(t, format!("{k:?} is not a valid environment variable name"));
                }
                None => self.problem(t, "must be KEY=VALUE"),
            }
        }
        for (k, t) in &s.env {
            if is_env_name(k) {
                env.push((k.clone(), self.render(t)));
            } else {
                self.problem(t, format!("{k:?} is not a valid environment variable name"));
            }
        }
        let execute_command = match &s.execute_command {
            Some(t) => {
                if self.render(t).trim().is_empty() && !t.segs.iter().any(|s| matches!(s, vars::Seg::Path)) {
                    self.problem(t, "must not be empty");
                }
                t.render_exec(&self.scope)
            }
            None => default_execute_command(),
        };
        ShellStep {
            scripts,
            env,
            execute_command,
            valid_exit_codes: s.valid_exit_codes.clone(),
            pause_after: s.pause_after,
        }
    }

    fn file(&mut self, f: &crate::template::FileTpl) -> FileStep {
        let dest_text = self.non_empty(&f.destination);
        let destination = match destination(&dest_text) {
            Ok(d) => d,
            Err(e) => {
                self.problem(&f.destination, e);
                Destination { path: PathBuf::new(), is_dir: true }
            }
        };
        let sources = match &f.sources {
            FileSources::Paths(paths) => {
                if paths.len() > 1 && !destination.is_dir {
                    self.problem(
                        &f.destination,
                        "with several sources the destination must be a directory (end it with /)",
                    );
                }
                paths
                    .iter()
                    .map(|p| {
                        let s = self.non_empty(p);
                        // Packer's rule: a trailing slash on a directory source uploads its contents.
                        let contents_only = s.len() > 1 && s.ends_with('/');
                        FileSource::Path { path: PathBuf::from(s), contents_only }
                    })
                    .collect()
            }
            FileSources::Content(c) => {
                if destination.is_dir {
                    self.problem(&f.destination, "with content the destination must be a file path, not a directory");
                }
                vec![FileSource::Content(self.render(c))]
            }
        };
        FileStep { sources, destination }
    }
}

/// Packer's default: `chmod +x {{.Path}}; {{.Vars}} {{.Path}}`.
fn default_execute_command() -> Vec<ExecPiece> {
    vec![
        ExecPiece::Lit("chmod +x ".into()),
        ExecPiece::Path,
        ExecPiece::Lit("; ".into()),
        ExecPiece::Vars,
        ExecPiece::Lit(" ".into()),
        ExecPiece::Path,
    ]
}

fn is_env_name(k: &str) -> bool {
    let mut chars = k.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A `file` destination: relative to the image root (an absolute path is taken as root-relative); `..` is
/// refused rather than resolved, so a destination can never name a place outside the root.
fn destination(s: &str) -> Result<Destination, String> {
    let mut path = PathBuf::new();
    for c in Path::new(s).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => path.push(part),
            Component::ParentDir => {
                return Err(format!("{s:?} leaves the image root ('..' is not allowed in a destination)"));
            }
            Component::Prefix(_) => return Err(format!("{s:?} is not a path in the image root")),
        }
    }
    let is_dir = s.ends_with('/') || path.as_os_str().is_empty() || s.ends_with("/.") || s == ".";
    Ok(Destination { path, is_dir })
}

#[cfg(test)]
mod tests;
