//! Packer's `{{ }}` interpolation and the variable precedence of a build (defaults, then var-files in
//! order, then `-var` in order; later wins).
//!
//! Owns the small subset of Go's template language that Packer JSON templates use: `{{user \`x\`}}`,
//! `{{env \`X\`}}` (variable defaults only, as in Packer), `{{timestamp}}`, `{{build_name}}`,
//! `{{build_type}}`, `{{ .Path }}` and `{{ .Vars }}` (in `execute_command` only) and string literals
//! (`{{"{{"}}` writes `{{`). Strings are parsed once, when the template is parsed, so every bad expression is
//! reported before anything runs; rendering cannot fail. Does no I/O: the process environment and the
//! clock come in as parameters.

use std::collections::BTreeMap;

use crate::error::{TemplateError, UnknownVariable};

/// One piece of a template string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Lit(String),
    User(String),
    Env(String),
    Timestamp,
    BuildName,
    BuildType,
    /// `{{ .Path }}`: the script's path inside the sandbox (execute_command only).
    Path,
    /// `{{ .Vars }}`: the flattened `KEY='value' ` list (execute_command only).
    Vars,
}

/// Where a string appears decides which expressions it may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ctx {
    VariableDefault,
    Value,
    ExecuteCommand,
}

/// A template string as written, parsed, with its JSON path for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tpl {
    pub path: String,
    pub segs: Vec<Seg>,
}

const FUNCTIONS: &str = "user, env (in variable defaults), timestamp, build_name, build_type";

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Field(String),
    Str(String),
}

/// Parses `s` into segments, refusing expressions that are unknown or not allowed in `ctx`.
pub(crate) fn parse(s: &str, ctx: Ctx) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        lit.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let (toks, consumed) = tokenize(after)?;
        let action = &rest[open..open + 2 + consumed];
        let seg = interpret(toks, action, ctx)?;
        match seg {
            Seg::Lit(text) => lit.push_str(&text),
            other => {
                if !lit.is_empty() {
                    segs.push(Seg::Lit(std::mem::take(&mut lit)));
                }
                segs.push(other);
            }
        }
        rest = &after[consumed..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        segs.push(Seg::Lit(lit));
    }
    Ok(segs)
}

/// Reads the tokens of one action up to and including its `}}`; returns them and the bytes consumed.
fn tokenize(s: &str) -> Result<(Vec<Tok>, usize), String> {
    let unterminated = || format!("unterminated {{{{ in {:?}", format!("{{{{{}", truncate(s, 40)));
    let bytes = s.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            return Err(unterminated());
        }
        if s[i..].starts_with("}}") {
            return Ok((toks, i + 2));
        }
        match bytes[i] {
            b'`' => {
                let end = s[i + 1..].find('`').ok_or_else(unterminated)?;
                toks.push(Tok::Str(s[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            b'"' => {
                let mut out = String::new();
                let mut chars = s[i + 1..].char_indices();
                let mut closed = None;
                while let Some((at, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = Some(at);
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, 'n')) => out.push('\n'),
                            Some((_, 't')) => out.push('\t'),
                            Some((_, c @ ('\\' | '"'))) => out.push(c),
                            _ => return Err(format!("unsupported escape in a string in {{{{{}", truncate(s, 40))),
                        },
                        c => out.push(c),
                    }
                }
                let at = closed.ok_or_else(unterminated)?;
                toks.push(Tok::Str(out));
                i += at + 2;
            }
            b'.' => {
                let len = ident_len(&s[i + 1..]);
                toks.push(Tok::Field(s[i + 1..i + 1 + len].to_string()));
                i += 1 + len;
            }
            _ => {
                let len = ident_len(&s[i..]);
                if len == 0 {
                    return Err(format!("unexpected {:?} in {{{{{}", char_at(s, i), truncate(s, 40)));
                }
                toks.push(Tok::Ident(s[i..i + len].to_string()));
                i += len;
            }
        }
    }
}

fn ident_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len())
}

fn char_at(s: &str, i: usize) -> char {
    s[i..].chars().next().unwrap_or(' ')
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n).collect::<String>() + "…" }
}

fn interpret(toks: Vec<Tok>, action: &str, ctx: Ctx) -> Result<Seg, String> {
    let only_exec = |what: &str| format!("{action}: {what} is only available in execute_command");
    let seg = match toks.as_slice() {
        [] => return Err(format!("{action}: empty expression")),
        [Tok::Str(s)] => Seg::Lit(s.clone()),
        [Tok::Ident(f), Tok::Str(name)] if f == "user" => {
            if ctx == Ctx::VariableDefault {
                return Err(format!("{action}: a variable's default cannot refer to another variable"));
            }
            Seg::User(name.clone())
        }
        [Tok::Ident(f), Tok::Str(name)] if f == "env" => {
            if ctx != Ctx::VariableDefault {
                return Err(format!("{action}: {{{{env}}}} is only allowed in variable defaults (as in Packer)"));
            }
            Seg::Env(name.clone())
        }
        [Tok::Ident(f)] if f == "timestamp" => Seg::Timestamp,
        [Tok::Ident(f)] if f == "build_name" => Seg::BuildName,
        [Tok::Ident(f)] if f == "build_type" => Seg::BuildType,
        [Tok::Field(f)] if f == "Path" || f == "Vars" => {
            if ctx != Ctx::ExecuteCommand {
                return Err(only_exec(&format!(".{f}")));
            }
            if f == "Path" { Seg::Path } else { Seg::Vars }
        }
        [Tok::Field(f), ..] => {
            return Err(format!("{action}: unknown field .{f} (execute_command has .Path and .Vars)"));
        }
        [Tok::Ident(f), ..] if ["user", "env", "timestamp", "build_name", "build_type"].contains(&f.as_str()) => {
            return Err(format!("{action}: wrong arguments to {f}"));
        }
        [Tok::Ident(f), ..] => {
            return Err(format!("{action}: unknown function {f:?} (galleon supports {FUNCTIONS})"));
        }
        [Tok::Str(_), ..] => return Err(format!("{action}: cannot interpret this expression")),
    };
    Ok(seg)
}

/// What rendering substitutes: the resolved variables, the build's name and the build's timestamp.
pub(crate) struct Scope<'a> {
    pub vars: &'a BTreeMap<String, String>,
    pub build_name: &'a str,
    pub timestamp: u64,
}

impl Tpl {
    /// Renders a string. `.Path`/`.Vars` and `env` never reach here (refused at parse outside their
    /// contexts; execute_command is rendered by [`Tpl::render_exec`]).
    pub(crate) fn render(&self, scope: &Scope<'_>) -> String {
        let mut out = String::new();
        for seg in &self.segs {
            render_seg(seg, scope, &mut out);
        }
        out
    }

    /// Renders an execute_command, keeping `.Path` and `.Vars` for the runner to fill in.
    pub(crate) fn render_exec(&self, scope: &Scope<'_>) -> Vec<ExecPiece> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        for seg in &self.segs {
            match seg {
                Seg::Path | Seg::Vars => {
                    if !lit.is_empty() {
                        pieces.push(ExecPiece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(if *seg == Seg::Path { ExecPiece::Path } else { ExecPiece::Vars });
                }
                other => render_seg(other, scope, &mut lit),
            }
        }
        if !lit.is_empty() {
            pieces.push(ExecPiece::Lit(lit));
        }
        pieces
    }

    /// The `{{user}}` variables this string names.
    pub(crate) fn users(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| if let Seg::User(n) = s { Some(n.as_str()) } else { None })
    }
}

fn render_seg(seg: &Seg, scope: &Scope<'_>, out: &mut String) {
    match seg {
        Seg::Lit(s) => out.push_str(s),
        // Every {{user}} is checked against the declarations at parse, and resolve gives each declared
        // variable a value, so the lookup cannot miss.
        Seg::User(name) => out.push_str(scope.vars.get(name).map(String::as_str).unwrap_or_default()),
        Seg::Timestamp => out.push_str(&scope.timestamp.to_string()),
        Seg::BuildName => out.push_str(scope.build_name),
        Seg::BuildType => out.push_str(crate::BUILDER_TYPE),
        Seg::Env(_) | Seg::Path | Seg::Vars => {}
    }
}

/// A piece of a rendered execute_command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecPiece {
    Lit(String),
    Path,
    Vars,
}

/// A declared variable: `None` default means required (`null` in the template).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VarDecl {
    pub name: String,
    pub default: Option<Tpl>,
}

/// Computes every variable's value: defaults (with `{{env}}` and `{{timestamp}}`), then var-files in order,
/// then `-var` in order. Names every missing required variable and every undeclared name set, at once.
pub(crate) fn resolve_variables(
    decls: &[VarDecl],
    vars: &[(String, String)],
    var_files: &[(String, serde_json::Value)],
    env: &dyn Fn(&str) -> Option<String>,
    timestamp: u64,
) -> Result<BTreeMap<String, String>, TemplateError> {
    let mut values: BTreeMap<String, Option<String>> = BTreeMap::new();
    for d in decls {
        let value = d.default.as_ref().map(|t| {
            let mut out = String::new();
            for seg in &t.segs {
                match seg {
                    // Packer gives an unset environment variable as the empty string.
                    Seg::Env(name) => out.push_str(&env(name).unwrap_or_default()),
                    Seg::Lit(s) => out.push_str(s),
                    Seg::Timestamp => out.push_str(&timestamp.to_string()),
                    _ => {}
                }
            }
            out
        });
        values.insert(d.name.clone(), value);
    }
    let mut unknown = Vec::new();
    for (label, file) in var_files {
        let Some(obj) = file.as_object() else {
            return Err(TemplateError::VarFile {
                file: label.clone(),
                message: "must be a JSON object of variable names to values".into(),
            });
        };
        for (name, v) in obj {
            let Some(text) = scalar_to_string(v) else {
                return Err(TemplateError::VarFile {
                    file: label.clone(),
                    message: format!("{name}: must be a string, number or boolean"),
                });
            };
            match values.get_mut(name) {
                Some(slot) => *slot = Some(text),
                None => unknown.push(UnknownVariable { name: name.clone(), origin: format!("var-file {label}") }),
            }
        }
    }
    for (name, value) in vars {
        match values.get_mut(name) {
            Some(slot) => *slot = Some(value.clone()),
            None => unknown.push(UnknownVariable { name: name.clone(), origin: "-var".into() }),
        }
    }
    // Declaration order, so the message reads like the template.
    let missing: Vec<String> =
        decls.iter().filter(|d| values.get(&d.name).is_some_and(Option::is_none)).map(|d| d.name.clone()).collect();
    if !missing.is_empty() || !unknown.is_empty() {
        return Err(TemplateError::Variables { missing, unknown });
    }
    Ok(values.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect())
}

/// Packer decodes variable values weakly: numbers and booleans become their text.
pub(crate) fn scalar_to_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn show(s: &str, ctx: Ctx) -> String {
        match parse(s, ctx) {
            Ok(segs) => format!("{s:?} -> {segs:?}"),
            Err(e) => format!("{s:?} -> error: {e}"),
        }
    }

    #[test]
    fn parses_expressions() {
        let v = Ctx::Value;
        let cases = [
            show("plain", v),
            show("a {{user `x`}} b", v),
            show("{{ user \"x\" }}{{timestamp}}", v),
            show("img-{{build_name}}-{{build_type}}", v),
            show("{{\"{{\"}}.Id{{`}}`}}", v),
            show("chmod +x {{ .Path }}; {{.Vars}} {{.Path}}", Ctx::ExecuteCommand),
            show("{{env `HOME`}}/x", Ctx::VariableDefault),
            show("{{env `HOME`}}", v),
            show("{{user `x`}}", Ctx::VariableDefault),
            show("{{ .Path }}", v),
            show("{{ .EnvVarFile }}", Ctx::ExecuteCommand),
            show("{{isotime \"2006\"}}", v),
            show("{{user}}", v),
            show("{{ user `x`", v),
            show("{{ }}", v),
            show("{{ - }}", v),
            show("{{ \"a\\qb\" }}", v),
            show("}} alone", v),
        ];
        expect![[r#"
            "plain" -> [Lit("plain")]
            "a {{user `x`}} b" -> [Lit("a "), User("x"), Lit(" b")]
            "{{ user \"x\" }}{{timestamp}}" -> [User("x"), Timestamp]
            "img-{{build_name}}-{{build_type}}" -> [Lit("img-"), BuildName, Lit("-"), BuildType]
            "{{\"{{\"}}.Id{{`}}`}}" -> [Lit("{{.Id}}")]
            "chmod +x {{ .Path }}; {{.Vars}} {{.Path}}" -> [Lit("chmod +x "), Path, Lit("; "), Vars, Lit(" "), Path]
            "{{env `HOME`}}/x" -> [Env("HOME"), Lit("/x")]
            "{{env `HOME`}}" -> error: {{env `HOME`}}: {{env}} is only allowed in variable defaults (as in Packer)
            "{{user `x`}}" -> error: {{user `x`}}: a variable's default cannot refer to another variable
            "{{ .Path }}" -> error: {{ .Path }}: .Path is only available in execute_command
            "{{ .EnvVarFile }}" -> error: {{ .EnvVarFile }}: unknown field .EnvVarFile (execute_command has .Path and .Vars)
            "{{isotime \"2006\"}}" -> error: {{isotime "2006"}}: unknown function "isotime" (galleon supports user, env (in variable defaults), timestamp, build_name, build_type)
            "{{user}}" -> error: {{user}}: wrong arguments to user
            "{{ user `x`" -> error: unterminated {{ in "{{ user `x`"
            "{{ }}" -> error: {{ }}: empty expression
            "{{ - }}" -> error: unexpected '-' in {{ - }}
            "{{ \"a\\qb\" }}" -> error: unsupported escape in a string in {{ "a\qb" }}
            "}} alone" -> [Lit("}} alone")]
        "#]]
        .assert_eq(&(cases.join("\n") + "\n"));
    }
}
