//! How results are printed: `--query` (JMESPath) then `-o json|jsonc|tsv|table|yaml|none`, as `az` does.
//!
//! Pure functions from a JSON value to text, so they are tested without a daemon. Like `az`, objects are
//! printed with their keys sorted, except those a JMESPath multi-select hash made (`{name: name, id: id}`),
//! which keep the order the expression gives (az keeps them in an ordered dict).

use std::fmt::Write as _;

use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Jsonc,
    Tsv,
    Table,
    Yaml,
    None,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid --query '{query}': {why}")]
pub struct QueryError {
    pub query: String,
    pub why: String,
}

/// A result ready to print: the value, and the key orders its multi-select hashes asked for.
pub struct Shaped {
    pub value: Value,
    hashes: Vec<Vec<String>>,
}

impl Shaped {
    pub fn plain(value: Value) -> Shaped {
        Shaped { value, hashes: vec![] }
    }
}

/// Applies a JMESPath expression.
pub fn query(value: &Value, expr: &str) -> Result<Shaped, QueryError> {
    let err = |why: String| QueryError { query: expr.to_string(), why };
    let compiled = jmespath::compile(expr).map_err(|e| err(e.to_string()))?;
    let found = compiled.search(value).map_err(|e| err(e.to_string()))?;
    let value = serde_json::to_value(&*found).map_err(|e| err(e.to_string()))?;
    let mut hashes = vec![];
    collect_hash_keys(compiled.as_ast(), &mut hashes);
    Ok(Shaped { value, hashes })
}

fn collect_hash_keys(ast: &jmespath::ast::Ast, out: &mut Vec<Vec<String>>) {
    use jmespath::ast::Ast;
    match ast {
        Ast::MultiHash { elements, .. } => {
            out.push(elements.iter().map(|kv| kv.key.clone()).collect());
            elements.iter().for_each(|kv| collect_hash_keys(&kv.value, out));
        }
        Ast::Projection { lhs, rhs, .. }
        | Ast::Subexpr { lhs, rhs, .. }
        | Ast::And { lhs, rhs, .. }
        | Ast::Or { lhs, rhs, .. }
        | Ast::Comparison { lhs, rhs, .. } => {
            collect_hash_keys(lhs, out);
            collect_hash_keys(rhs, out);
        }
        Ast::Condition { predicate, then, .. } => {
            collect_hash_keys(predicate, out);
            collect_hash_keys(then, out);
        }
        Ast::Flatten { node, .. }
        | Ast::ObjectValues { node, .. }
        | Ast::Not { node, .. }
        | Ast::Expref { ast: node, .. } => collect_hash_keys(node, out),
        Ast::MultiList { elements, .. } => elements.iter().for_each(|e| collect_hash_keys(e, out)),
        Ast::Function { args, .. } => args.iter().for_each(|e| collect_hash_keys(e, out)),
        _ => {}
    }
}

/// Sorts every object's keys, but keeps a multi-select hash's objects in the expression's order.
fn order(value: Value, hashes: &[Vec<String>]) -> Value {
    match value {
        Value::Object(m) => {
            let keys: Vec<&String> = m.keys().collect();
            let hash = hashes.iter().find(|h| h.len() == keys.len() && h.iter().all(|k| m.contains_key(k)));
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            match hash {
                Some(h) => entries.sort_by_key(|(k, _)| h.iter().position(|x| x == k)),
                None => entries.sort_by(|a, b| a.0.cmp(&b.0)),
            }
            Value::Object(entries.into_iter().map(|(k, v)| (k, order(v, hashes))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|v| order(v, hashes)).collect()),
        other => other,
    }
}

/// Renders a result in `format`.
pub fn render(shaped: Shaped, format: Format) -> String {
    let value = &order(shaped.value, &shaped.hashes);
    match format {
        Format::Json => pretty(value) + "\n",
        Format::Jsonc => colored(value) + "\n",
        Format::Tsv => tsv(value),
        Format::Table => table(value),
        Format::Yaml => yaml(value),
        Format::None => String::new(),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn colored(value: &Value) -> String {
    fn walk(v: &Value, indent: usize, out: &mut String) {
        let pad = "  ".repeat(indent);
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push_str("{\n");
                for (i, (k, val)) in m.iter().enumerate() {
                    let _ = write!(out, "{pad}  \x1b[94m{}\x1b[0m: ", Value::String(k.clone()));
                    walk(val, indent + 1, out);
                    out.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
                }
                let _ = write!(out, "{pad}}}");
            }
            Value::Array(a) if !a.is_empty() => {
                out.push_str("[\n");
                for (i, val) in a.iter().enumerate() {
                    let _ = write!(out, "{pad}  ");
                    walk(val, indent + 1, out);
                    out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
                }
                let _ = write!(out, "{pad}]");
            }
            Value::String(_) => {
                let _ = write!(out, "\x1b[32m{v}\x1b[0m");
            }
            Value::Number(_) | Value::Bool(_) => {
                let _ = write!(out, "\x1b[36m{v}\x1b[0m");
            }
            Value::Null => out.push_str("\x1b[90mnull\x1b[0m"),
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    walk(value, 0, &mut out);
    out
}

/// A scalar as `az` prints it in tsv and table cells: strings bare, null empty.
fn cell(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(_) | Value::Array(_) => None,
    }
}

/// One line per list element; an object's values tab-separated in key order; as `az`, a nested object
/// is an empty field and a nested list its length, so columns line up across rows.
fn tsv(value: &Value) -> String {
    fn field(v: &Value) -> String {
        match v {
            Value::Array(a) => a.len().to_string(),
            other => cell(other).unwrap_or_default(),
        }
    }
    fn row(v: &Value) -> String {
        match v {
            Value::Object(m) => m.values().map(field).collect::<Vec<_>>().join("\t"),
            Value::Array(a) => a.iter().map(field).collect::<Vec<_>>().join("\t"),
            other => field(other),
        }
    }
    let mut out = String::new();
    match value {
        Value::Array(items) => {
            for item in items {
                out.push_str(&row(item));
                out.push('\n');
            }
        }
        other => {
            out.push_str(&row(other));
            out.push('\n');
        }
    }
    out
}

/// `az`'s table: a header of the scalar keys (first letter upper-cased), a dashed rule, a row each.
fn table(value: &Value) -> String {
    let rows: Vec<Map<String, Value>> = match value {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Object(m) => m.clone(),
                other => Map::from_iter([("Result".to_string(), other.clone())]),
            })
            .collect(),
        Value::Object(m) => vec![m.clone()],
        Value::Null => vec![],
        other => vec![Map::from_iter([("Result".to_string(), other.clone())])],
    };
    let mut columns: Vec<String> = vec![];
    for r in &rows {
        for (k, v) in r {
            if cell(v).is_some() && !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    if columns.is_empty() {
        return String::new();
    }
    let header: Vec<String> = columns
        .iter()
        .map(|c| {
            let mut chars = c.chars();
            chars.next().map(|f| f.to_uppercase().chain(chars).collect()).unwrap_or_default()
        })
        .collect();
    let cells: Vec<Vec<String>> =
        rows.iter().map(|r| columns.iter().map(|c| r.get(c).and_then(cell).unwrap_or_default()).collect()).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| cells.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |vals: &[String]| {
        vals.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    let mut out = line(&header) + "\n";
    out += &(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  ") + "\n");
    for r in &cells {
        out += &(line(r) + "\n");
    }
    out
}

/// Block-style YAML, quoting strings that would otherwise read as something else.
fn yaml(value: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => {
                let plain = !s.is_empty()
                    && !s.starts_with(|c: char| " -?:,[]{}#&*!|>'\"%@`~".contains(c) || c.is_ascii_digit())
                    && !s.ends_with(' ')
                    && !s.contains(": ")
                    && !s.contains(" #")
                    && !s.contains('\n')
                    && !["true", "false", "null", "yes", "no", "on", "off", "~"]
                        .contains(&s.to_ascii_lowercase().as_str());
                if plain { s.clone() } else { Value::String(s.clone()).to_string() }
            }
            Value::Array(a) if a.is_empty() => "[]".into(),
            Value::Object(m) if m.is_empty() => "{}".into(),
            _ => String::new(),
        }
    }
    fn is_block(v: &Value) -> bool {
        matches!(v, Value::Array(a) if !a.is_empty()) || matches!(v, Value::Object(m) if !m.is_empty())
    }
    fn walk(v: &Value, indent: usize, out: &mut String) {
        let pad = "  ".repeat(indent);
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, val) in m {
                    let key = scalar(&Value::String(k.clone()));
                    if is_block(val) {
                        let _ = writeln!(out, "{pad}{key}:");
                        walk(val, if val.is_array() { indent } else { indent + 1 }, out);
                    } else {
                        let _ = writeln!(out, "{pad}{key}: {}", scalar(val));
                    }
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for val in a {
                    if is_block(val) {
                        let mut inner = String::new();
                        walk(val, indent + 1, &mut inner);
                        let inner = inner.trim_start();
                        let _ = write!(out, "{pad}- {inner}");
                    } else {
                        let _ = writeln!(out, "{pad}- {}", scalar(val));
                    }
                }
            }
            other => {
                let _ = writeln!(out, "{pad}{}", scalar(other));
            }
        }
    }
    let mut out = String::new();
    walk(value, 0, &mut out);
    out
}

/// The name the SDK gives a `properties` key that collides with one of the envelope's: an extension's
/// `properties.type` beside its resource `type` becomes `typePropertiesType`.
pub fn collision_name(key: &str) -> String {
    let mut c = key.chars();
    let cap: String = c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default();
    format!("{key}Properties{cap}")
}

/// The SDK's flattening, as `az` prints resources: every object's `properties` lifted into it (deeply;
/// a key that collides with the envelope's is renamed as the SDK does, `collision_name`), and
/// `resourceGroup` added to every object whose `id` names one (az's `_add_resource_group`).
pub fn flatten(value: Value) -> Value {
    match value {
        Value::Object(mut m) => {
            if let Some(Value::Object(props)) = m.remove("properties") {
                for (k, v) in props {
                    if m.contains_key(&k) {
                        m.insert(collision_name(&k), v);
                    } else {
                        m.insert(k, v);
                    }
                }
            }
            if !m.keys().any(|k| k.eq_ignore_ascii_case("resourceGroup"))
                && let Some(g) = m.get("id").and_then(Value::as_str).and_then(group_of)
            {
                let g = g.to_string();
                m.insert("resourceGroup".into(), Value::String(g));
            }
            Value::Object(m.into_iter().map(|(k, v)| (k, flatten(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(flatten).collect()),
        other => other,
    }
}

fn group_of(id: &str) -> Option<&str> {
    let mut parts = id.split('/');
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case("resourceGroups") {
            return parts.next();
        }
    }
    None
}

#[cfg(test)]
mod tests;
