//! The JSON shape of a Packer template with one `"type": "galleon"` builder: which keys exist, their types,
//! and which combinations are allowed.
//!
//! Owns [`parse`]: JSON text in, a [`Template`] out, or every shape problem found, each with its JSON path
//! (`provisioners[1].inlin: unknown key (did you mean "inline"?)`). Every `{{ }}` expression is parsed here
//! too, so a bad or undeclared reference is a parse error. Keys Packer has but galleon cannot honour are
//! refused by name with the reason, never ignored. Does not substitute variables or look at the file
//! system (`plan.rs` does the first, `run.rs` the second).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::{Problem, TemplateError};
use crate::vars::{self, Ctx, Tpl, VarDecl};

/// A parsed, shape-checked template. Variables are not substituted yet: see [`crate::resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub(crate) variables: Vec<VarDecl>,
    pub(crate) sensitive: Vec<String>,
    pub(crate) builder: Builder,
    pub(crate) provisioners: Vec<Provisioner>,
}

impl Template {
    /// The declared variables in template order, with whether each is required (`null` default).
    pub fn variables(&self) -> impl Iterator<Item = (&str, bool)> {
        self.variables.iter().map(|v| (v.name.as_str(), v.default.is_none()))
    }

    /// The builder's `name` (Packer's build name), `galleon` unless set.
    pub fn builder_name(&self) -> &str {
        &self.builder.name
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Builder {
    pub name: String,
    pub source: SourceTpl,
    pub managed_image: Option<ManagedImageTpl>,
    pub gallery: Option<GalleryTpl>,
    pub entrypoint: Option<Tpl>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SourceTpl {
    None,
    Dir(Tpl),
    ManagedImage(Tpl),
    GalleryVersion(Tpl),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ManagedImageTpl {
    pub name: Tpl,
    pub resource_group: Option<Tpl>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GalleryTpl {
    pub resource_group: Tpl,
    pub gallery_name: Tpl,
    pub image_name: Tpl,
    pub image_version: Tpl,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Provisioner {
    /// `provisioners[i]`, for messages.
    pub path: String,
    pub name: Option<String>,
    pub kind: ProvisionerKind,
    pub only: Vec<String>,
    pub except: Vec<String>,
    pub pause_before: Option<Duration>,
    pub max_retries: u32,
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ProvisionerKind {
    Shell(ShellTpl),
    File(FileTpl),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShellTpl {
    pub body: ShellBody,
    pub environment_vars: Vec<Tpl>,
    pub env: Vec<(String, Tpl)>,
    pub execute_command: Option<Tpl>,
    pub inline_shebang: Option<Tpl>,
    pub valid_exit_codes: Vec<i32>,
    pub pause_after: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ShellBody {
    Inline(Vec<Tpl>),
    /// `script` (one) or `scripts` (several): host paths.
    Scripts(Vec<Tpl>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileTpl {
    pub sources: FileSources,
    pub destination: Tpl,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileSources {
    /// `source` (one) or `sources` (several): host paths.
    Paths(Vec<Tpl>),
    Content(Tpl),
}

/// Parses and shape-checks a template. All problems are reported together.
pub fn parse(json: &str) -> Result<Template, TemplateError> {
    let value: Value = serde_json::from_str(json).map_err(|e| TemplateError::Json(e.to_string()))?;
    let mut r = Reader::default();
    let template = read_template(&mut r, &value);
    match template {
        Some(t) if r.problems.is_empty() => Ok(t),
        _ => Err(TemplateError::Invalid(r.problems)),
    }
}

const TOP_KEYS: &[&str] =
    &["variables", "sensitive-variables", "builders", "provisioners", "description", "min_packer_version"];
const TOP_UNSUPPORTED: &[(&str, &str)] = &[
    ("post-processors", "galleon has no post-processors; the builder's outputs publish the image"),
    ("push", "Atlas push is not part of galleon"),
];

fn read_template(r: &mut Reader, value: &Value) -> Option<Template> {
    let mut top = r.obj(value, "")?;
    // Packer ignores root keys that start with an underscore: that is how JSON templates carry comments.
    top.ignore_prefixed("_");
    let variables = match top.get("variables") {
        Some((v, path)) => read_variables(r, v, &path),
        None => Vec::new(),
    };
    r.declared = variables.iter().map(|v| v.name.clone()).collect();
    let sensitive = match top.get("sensitive-variables") {
        Some((v, path)) => {
            let names = r.string_list(v, &path).unwrap_or_default();
            for (i, n) in names.iter().enumerate() {
                if !r.declared.contains(n) {
                    r.problem(format!("{path}[{i}]"), format!("{n:?} is not declared in variables"));
                }
            }
            names
        }
        None => Vec::new(),
    };
    if let Some((v, path)) = top.get("description") {
        r.string(v, &path);
    }
    if let Some((v, path)) = top.get("min_packer_version") {
        r.string(v, &path);
    }
    let builder = match top.get("builders") {
        Some((v, path)) => read_builders(r, v, &path),
        None => {
            r.problem("builders", "required: one builder with \"type\": \"galleon\"");
            None
        }
    };
    let builder_name = builder.as_ref().map(|b: &Builder| b.name.clone());
    let provisioners = match top.get("provisioners") {
        Some((v, path)) => read_provisioners(r, v, &path, builder_name.as_deref()),
        None => Vec::new(),
    };
    top.finish(r, TOP_KEYS, TOP_UNSUPPORTED);
    Some(Template { variables, sensitive, builder: builder?, provisioners })
}

fn read_variables(r: &mut Reader, v: &Value, path: &str) -> Vec<VarDecl> {
    let Some(map) = v.as_object() else {
        r.problem(path, "must be an object of variable names to default values (null = required)");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, value) in map {
        let vpath = format!("{path}.{name}");
        if name.is_empty() {
            r.problem(&vpath, "a variable needs a name");
            continue;
        }
        let default = match value {
            Value::Null => None,
            Value::String(s) => match vars::parse(s, Ctx::VariableDefault) {
                Ok(segs) => Some(Tpl { path: vpath, segs }),
                Err(e) => {
                    r.problem(&vpath, e);
                    continue;
                }
            },
            other => match vars::scalar_to_string(other) {
                Some(s) => Some(Tpl { path: vpath, segs: vec![vars::Seg::Lit(s)] }),
                None => {
                    r.problem(&vpath, "a default must be a string, number, boolean or null (required)");
                    continue;
                }
            },
        };
        out.push(VarDecl { name: name.clone(), default });
    }
    out
}

const BUILDER_KEYS: &[&str] = &[
    "type",
    "name",
    "source_dir",
    "source_image",
    "source_image_version",
    "managed_image_name",
    "managed_image_resource_group_name",
    "shared_image_gallery_destination",
    "entrypoint",
];
const AZURE_KEY: &str = "an azure-arm setting the galleon builder does not use";
const BUILDER_UNSUPPORTED: &[(&str, &str)] = &[
    ("client_id", AZURE_KEY),
    ("client_secret", AZURE_KEY),
    ("subscription_id", AZURE_KEY),
    ("tenant_id", AZURE_KEY),
    ("location", AZURE_KEY),
    ("vm_size", AZURE_KEY),
    ("os_type", AZURE_KEY),
    ("communicator", AZURE_KEY),
    ("ssh_username", AZURE_KEY),
    ("azure_tags", AZURE_KEY),
    ("build_resource_group_name", AZURE_KEY),
    ("image_publisher", "marketplace images are not available; use source_dir, source_image or source_image_version"),
    ("image_offer", "marketplace images are not available; use source_dir, source_image or source_image_version"),
    ("image_sku", "marketplace images are not available; use source_dir, source_image or source_image_version"),
    ("image_version", "marketplace images are not available; use source_dir, source_image or source_image_version"),
    ("shared_image_gallery", "to start from a gallery version use \"source_image_version\": \"GALLERY/IMAGE/VERSION\""),
    ("custom_managed_image_name", "to start from a managed image use \"source_image\""),
    ("custom_managed_image_resource_group_name", "to start from a managed image use \"source_image\""),
];
const GALLERY_KEYS: &[&str] = &["resource_group", "gallery_name", "image_name", "image_version"];
const GALLERY_UNSUPPORTED: &[(&str, &str)] = &[
    ("subscription", "galleon has one subscription"),
    ("replication_regions", "galleon has one region"),
    ("storage_account_type", "galleon stores images in its own content-addressed store"),
];

fn read_builders(r: &mut Reader, v: &Value, path: &str) -> Option<Builder> {
    let Some(list) = v.as_array() else {
        r.problem(path, "must be a list with one builder");
        return None;
    };
    match list.len() {
        0 => {
            r.problem(path, "needs one builder with \"type\": \"galleon\"; found none");
            return None;
        }
        1 => {}
        n => {
            r.problem(path, format!("galleon builds with exactly one builder; found {n}"));
            return None;
        }
    }
    let bpath = format!("{path}[0]");
    let mut b = r.obj(&list[0], &bpath)?;
    let ty = match b.get("type") {
        Some((v, p)) => r.string(v, &p)?,
        None => {
            r.problem(&bpath, "missing \"type\" (galleon builds with \"type\": \"galleon\")");
            return None;
        }
    };
    if ty != crate::BUILDER_TYPE {
        // The rest of an azure-arm builder would only add noise: say the one thing that matters.
        r.problem(
            format!("{bpath}.type"),
            format!("unknown builder type {ty:?} (galleon builds with \"type\": \"galleon\")"),
        );
        return None;
    }
    let name = match b.get("name") {
        Some((v, p)) => r.string(v, &p).unwrap_or_default(),
        None => crate::BUILDER_TYPE.to_string(),
    };
    let mut sources = Vec::new();
    for key in ["source_dir", "source_image", "source_image_version"] {
        if let Some((v, p)) = b.get(key)
            && let Some(t) = r.tpl(v, &p, Ctx::Value)
        {
            sources.push((key, t));
        }
    }
    let source = match sources.len() {
        0 => SourceTpl::None,
        1 => match sources.pop() {
            Some(("source_dir", t)) => SourceTpl::Dir(t),
            Some(("source_image", t)) => SourceTpl::ManagedImage(t),
            Some((_, t)) => SourceTpl::GalleryVersion(t),
            None => SourceTpl::None,
        },
        _ => {
            let keys: Vec<&str> = sources.iter().map(|(k, _)| *k).collect();
            r.problem(
                &bpath,
                format!("{} are exclusive: give one source, or none to start from an empty root", keys.join(" and ")),
            );
            SourceTpl::None
        }
    };
    let mi_name = b.get("managed_image_name").and_then(|(v, p)| r.tpl(v, &p, Ctx::Value));
    let mi_rg = b.get("managed_image_resource_group_name").and_then(|(v, p)| r.tpl(v, &p, Ctx::Value));
    let managed_image = match (mi_name, mi_rg) {
        (Some(name), resource_group) => Some(ManagedImageTpl { name, resource_group }),
        (None, Some(rg)) => {
            r.problem(&rg.path, "needs managed_image_name (it names the managed image's resource group)");
            None
        }
        (None, None) => None,
    };
    let gallery = match b.get("shared_image_gallery_destination") {
        Some((v, p)) => read_gallery(r, v, &p),
        None => None,
    };
    let entrypoint = b.get("entrypoint").and_then(|(v, p)| r.tpl(v, &p, Ctx::Value));
    if managed_image.is_none() && gallery.is_none() && !b.has("shared_image_gallery_destination") {
        r.problem(&bpath, "no output: set managed_image_name and/or shared_image_gallery_destination");
    }
    b.finish(r, BUILDER_KEYS, BUILDER_UNSUPPORTED);
    Some(Builder { name, source, managed_image, gallery, entrypoint })
}

fn read_gallery(r: &mut Reader, v: &Value, path: &str) -> Option<GalleryTpl> {
    let mut g = r.obj(v, path)?;
    let mut field = |r: &mut Reader, key: &'static str| match g.get(key) {
        Some((v, p)) => r.tpl(v, &p, Ctx::Value),
        None => {
            r.problem(path, format!("missing {key:?}"));
            None
        }
    };
    let resource_group = field(r, "resource_group");
    let gallery_name = field(r, "gallery_name");
    let image_name = field(r, "image_name");
    let image_version = field(r, "image_version");
    g.finish(r, GALLERY_KEYS, GALLERY_UNSUPPORTED);
    Some(GalleryTpl {
        resource_group: resource_group?,
        gallery_name: gallery_name?,
        image_name: image_name?,
        image_version: image_version?,
    })
}

const COMMON_KEYS: &[&str] = &["type", "name", "only", "except", "pause_before", "max_retries", "timeout"];
const SHELL_KEYS: &[&str] = &[
    "inline",
    "script",
    "scripts",
    "environment_vars",
    "env",
    "execute_command",
    "inline_shebang",
    "valid_exit_codes",
    "pause_after",
];
const FILE_KEYS: &[&str] = &["source", "sources", "content", "destination", "direction"];
const COMMON_UNSUPPORTED: &[(&str, &str)] =
    &[("override", "a galleon template has one builder, so there is nothing to override per builder")];
const SHELL_UNSUPPORTED: &[(&str, &str)] = &[
    ("remote_folder", "scripts always go to the sandbox's private /tmp"),
    ("remote_file", "scripts always go to the sandbox's private /tmp"),
    ("remote_path", "scripts always go to the sandbox's private /tmp"),
    ("skip_clean", "scripts live in the build's private /tmp, which is removed after the build"),
    ("expect_disconnect", "galleon provisioners run on this machine and cannot reboot it"),
    ("start_retry_timeout", "there is no remote machine to reconnect to; use max_retries"),
    ("use_env_var_file", "environment_vars are passed with {{.Vars}} and in the environment"),
    ("env_var_format", "environment_vars are passed with {{.Vars}} and in the environment"),
    ("binary", "scripts are uploaded as they are"),
];
const FILE_UNSUPPORTED: &[(&str, &str)] =
    &[("generated", "file sources must exist before the build starts (they are checked before any step runs)")];

fn read_provisioners(r: &mut Reader, v: &Value, path: &str, builder: Option<&str>) -> Vec<Provisioner> {
    let Some(list) = v.as_array() else {
        r.problem(path, "must be a list of provisioners");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        if let Some(p) = read_provisioner(r, item, &format!("{path}[{i}]"), builder) {
            out.push(p);
        }
    }
    out
}

fn read_provisioner(r: &mut Reader, v: &Value, path: &str, builder: Option<&str>) -> Option<Provisioner> {
    let mut o = r.obj(v, path)?;
    let ty = match o.get("type") {
        Some((v, p)) => r.string(v, &p)?,
        None => {
            r.problem(path, "missing \"type\" (galleon runs \"shell\" and \"file\" provisioners)");
            return None;
        }
    };
    let (kind_keys, kind_unsupported) = match ty.as_str() {
        "shell" => (SHELL_KEYS, SHELL_UNSUPPORTED),
        "file" => (FILE_KEYS, FILE_UNSUPPORTED),
        other => {
            r.problem(
                format!("{path}.type"),
                format!("unknown provisioner type {other:?} (galleon runs \"shell\" and \"file\")"),
            );
            return None;
        }
    };
    let name = o.get("name").and_then(|(v, p)| r.string(v, &p));
    let mut builder_list = |r: &mut Reader, key: &'static str| -> Vec<String> {
        let Some((v, p)) = o.get(key) else { return Vec::new() };
        let names = r.string_list(v, &p).unwrap_or_default();
        for (i, n) in names.iter().enumerate() {
            if let Some(b) = builder
                && n != b
            {
                r.problem(format!("{p}[{i}]"), format!("no builder named {n:?} (this template's builder is {b:?})"));
            }
        }
        names
    };
    let only = builder_list(r, "only");
    let except = builder_list(r, "except");
    let pause_before = o.get("pause_before").and_then(|(v, p)| r.duration(v, &p));
    let max_retries = o.get("max_retries").and_then(|(v, p)| r.count(v, &p)).unwrap_or(0);
    let timeout = o.get("timeout").and_then(|(v, p)| r.duration(v, &p));
    let kind = if ty == "shell" {
        read_shell(r, &mut o, path).map(ProvisionerKind::Shell)
    } else {
        read_file(r, &mut o, path).map(ProvisionerKind::File)
    };
    let known: Vec<&str> = COMMON_KEYS.iter().chain(kind_keys).copied().collect();
    let unsupported: Vec<(&str, &str)> = COMMON_UNSUPPORTED.iter().chain(kind_unsupported).copied().collect();
    o.finish(r, &known, &unsupported);
    Some(Provisioner { path: path.to_string(), name, kind: kind?, only, except, pause_before, max_retries, timeout })
}

fn read_shell(r: &mut Reader, o: &mut Obj<'_>, path: &str) -> Option<ShellTpl> {
    let inline = o.get("inline").map(|(v, p)| (r.tpl_list(v, &p, Ctx::Value), p));
    let script = o.get("script").map(|(v, p)| (r.tpl(v, &p, Ctx::Value).map(|t| vec![t]), p));
    let scripts = o.get("scripts").map(|(v, p)| (r.tpl_list(v, &p, Ctx::Value), p));
    let present: Vec<&str> =
        [("inline", inline.is_some()), ("script", script.is_some()), ("scripts", scripts.is_some())]
            .iter()
            .filter(|(_, here)| *here)
            .map(|(k, _)| *k)
            .collect();
    let body = match (inline, script, scripts) {
        (Some((list, p)), None, None) => {
            let list = list?;
            if list.is_empty() {
                r.problem(p, "must not be empty");
                return None;
            }
            Some(ShellBody::Inline(list))
        }
        (None, Some((list, _)), None) => Some(ShellBody::Scripts(list?)),
        (None, None, Some((list, p))) => {
            let list = list?;
            if list.is_empty() {
                r.problem(p, "must not be empty");
                return None;
            }
            Some(ShellBody::Scripts(list))
        }
        (None, None, None) => {
            r.problem(path, "a shell provisioner needs one of inline, script or scripts");
            None
        }
        _ => {
            r.problem(path, format!("{} are exclusive: give only one", present.join(" and ")));
            None
        }
    };
    let environment_vars =
        o.get("environment_vars").and_then(|(v, p)| r.tpl_list(v, &p, Ctx::Value)).unwrap_or_default();
    let env = match o.get("env") {
        Some((v, p)) => match v.as_object() {
            Some(map) => map
                .iter()
                .filter_map(|(k, v)| r.tpl(v, &format!("{p}.{k}"), Ctx::Value).map(|t| (k.clone(), t)))
                .collect(),
            None => {
                r.problem(p, "must be an object of variable names to values");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let execute_command = o.get("execute_command").and_then(|(v, p)| r.tpl(v, &p, Ctx::ExecuteCommand));
    let inline_shebang = o.get("inline_shebang").and_then(|(v, p)| r.tpl(v, &p, Ctx::Value));
    let valid_exit_codes = match o.get("valid_exit_codes") {
        Some((v, p)) => r.int_list(v, &p).unwrap_or_default(),
        None => vec![0],
    };
    let pause_after = o.get("pause_after").and_then(|(v, p)| r.duration(v, &p));
    Some(ShellTpl {
        body: body?,
        environment_vars,
        env,
        execute_command,
        inline_shebang,
        valid_exit_codes,
        pause_after,
    })
}

fn read_file(r: &mut Reader, o: &mut Obj<'_>, path: &str) -> Option<FileTpl> {
    let source = o.get("source").map(|(v, p)| r.tpl(v, &p, Ctx::Value).map(|t| vec![t]));
    let sources = o.get("sources").map(|(v, p)| (r.tpl_list(v, &p, Ctx::Value), p));
    let content = o.get("content").map(|(v, p)| r.tpl(v, &p, Ctx::Value));
    let destination = match o.get("destination") {
        Some((v, p)) => r.tpl(v, &p, Ctx::Value),
        None => {
            r.problem(path, "missing \"destination\" (a path in the image root)");
            None
        }
    };
    if let Some((v, p)) = o.get("direction") {
        match r.string(v, &p).as_deref() {
            Some("upload") | None => {}
            Some("download") => r.problem(p, "download is not supported: a build only writes into the image root"),
            Some(other) => r.problem(p, format!("{other:?} is not a direction (upload or download)")),
        }
    }
    let sources = match (source, sources, content) {
        (Some(one), None, None) => FileSources::Paths(one?),
        (None, Some((many, p)), None) => {
            let many = many?;
            if many.is_empty() {
                r.problem(p, "must not be empty");
                return None;
            }
            FileSources::Paths(many)
        }
        (None, None, Some(content)) => FileSources::Content(content?),
        (None, None, None) => {
            r.problem(path, "a file provisioner needs one of source, sources or content");
            return None;
        }
        (a, b, c) => {
            let present: Vec<&str> = [("source", a.is_some()), ("sources", b.is_some()), ("content", c.is_some())]
                .iter()
                .filter(|(_, here)| *here)
                .map(|(k, _)| *k)
                .collect();
            r.problem(path, format!("{} are exclusive: give only one", present.join(" and ")));
            return None;
        }
    };
    Some(FileTpl { sources, destination: destination? })
}

/// Collects problems while walking the JSON.
#[derive(Default)]
struct Reader {
    problems: Vec<Problem>,
    /// Declared variable names, for checking `{{user}}` references.
    declared: BTreeSet<String>,
}

impl Reader {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn obj<'v>(&mut self, v: &'v Value, path: &str) -> Option<Obj<'v>> {
        match v.as_object() {
            Some(map) => Some(Obj { path: path.to_string(), map, ignored_prefix: None }),
            None => {
                let what = if path.is_empty() { "the template" } else { path };
                self.problem(path, format!("{what} must be a JSON object, not {}", kind_of(v)));
                None
            }
        }
    }

    fn string(&mut self, v: &Value, path: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(path, format!("must be a string, not {}", kind_of(other)));
                None
            }
        }
    }

    fn string_list(&mut self, v: &Value, path: &str) -> Option<Vec<String>> {
        let Some(list) = v.as_array() else {
            self.problem(path, format!("must be a list of strings, not {}", kind_of(v)));
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            out.push(self.string(item, &format!("{path}[{i}]"))?);
        }
        Some(out)
    }

    /// A string that may hold `{{ }}` expressions; `{{user}}` must name a declared variable.
    fn tpl(&mut self, v: &Value, path: &str, ctx: Ctx) -> Option<Tpl> {
        let s = self.string(v, path)?;
        let segs = match vars::parse(&s, ctx) {
            Ok(segs) => segs,
            Err(e) => {
                self.problem(path, e);
                return None;
            }
        };
        let t = Tpl { path: path.to_string(), segs };
        let undeclared: Vec<String> = t.users().filter(|n| !self.declared.contains(*n)).map(String::from).collect();
        for n in &undeclared {
            self.problem(path, format!("{{{{user `{n}`}}}}: variable {n:?} is not declared in variables"));
        }
        undeclared.is_empty().then_some(t)
    }

    fn tpl_list(&mut self, v: &Value, path: &str, ctx: Ctx) -> Option<Vec<Tpl>> {
        let Some(list) = v.as_array() else {
            self.problem(path, format!("must be a list of strings, not {}", kind_of(v)));
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in list.iter().enumerate() {
            match self.tpl(item, &format!("{path}[{i}]"), ctx) {
                Some(t) => out.push(t),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn duration(&mut self, v: &Value, path: &str) -> Option<Duration> {
        let s = self.string(v, path)?;
        match crate::duration::parse(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(path, e);
                None
            }
        }
    }

    /// A non-negative count; Packer decodes weakly, so `"3"` is accepted as well as `3`.
    fn count(&mut self, v: &Value, path: &str) -> Option<u32> {
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n.and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                self.problem(path, format!("must be a non-negative whole number, not {v}"));
                None
            }
        }
    }

    fn int_list(&mut self, v: &Value, path: &str) -> Option<Vec<i32>> {
        let list = v.as_array().and_then(|l| {
            l.iter().map(|x| x.as_i64().and_then(|n| i32::try_from(n).ok())).collect::<Option<Vec<i32>>>()
        });
        if list.is_none() {
            self.problem(path, format!("must be a list of whole numbers, not {v}"));
        }
        list
    }
}

/// One JSON object being read; remembers nothing but its path, so [`Obj::finish`] can name unknown keys.
struct Obj<'v> {
    path: String,
    map: &'v Map<String, Value>,
    ignored_prefix: Option<&'static str>,
}

impl<'v> Obj<'v> {
    /// The value at `key` (null counts as absent) and its path.
    fn get(&mut self, key: &str) -> Option<(&'v Value, String)> {
        let v = self.map.get(key).filter(|v| !v.is_null())?;
        let path = if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) };
        Some((v, path))
    }

    fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    fn ignore_prefixed(&mut self, prefix: &'static str) {
        self.ignored_prefix = Some(prefix);
    }

    /// Reports every key that is not in `known`: refused with a reason when galleon knows it from Packer,
    /// else unknown with the closest known key as a hint.
    fn finish(self, r: &mut Reader, known: &[&str], unsupported: &[(&str, &str)]) {
        for key in self.map.keys() {
            if known.contains(&key.as_str()) || self.ignored_prefix.is_some_and(|p| key.starts_with(p)) {
                continue;
            }
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            if let Some((_, why)) = unsupported.iter().find(|(k, _)| k == key) {
                r.problem(path, format!("not supported by galleon: {why}"));
            } else {
                match closest(key, known) {
                    Some(hint) => r.problem(path, format!("unknown key (did you mean {hint:?}?)")),
                    None => r.problem(path, format!("unknown key (known keys: {})", known.join(", "))),
                }
            }
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The known key within edit distance 2 of `key`, if any.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known.iter().map(|k| (edit_distance(key, k), *k)).filter(|(d, _)| *d <= 2).min_by_key(|(d, _)| *d).map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
