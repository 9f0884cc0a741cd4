//! `--set`, `--add` and `--remove`, as `az`'s generic update: edits of a resource's flattened document,
//! checked against the resource's schema (the wire types' JSON Schema, `galleon_api::schema`).
//!
//! Paths are the flattened ones users know (`virtualMachineProfile.storageProfile.imageReference.id`,
//! `publishingProfile.excludeFromLatest`); segments match case-insensitively and come out in canonical
//! case; missing parent objects on a valid path are created; unknown paths, wrong types and read-only
//! fields are refused before anything is sent. `unflatten` puts the edited document back in ARM shape.

use serde_json::{Map, Value};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EditError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, EditError> {
    Err(EditError(msg.into()))
}

/// A schema node with `$ref`s, nullability and read-only markers resolved.
#[derive(Clone, Copy)]
struct Node<'a> {
    root: &'a Value,
    schema: &'a Value,
    read_only: bool,
}

enum Shape<'a> {
    Object(Node<'a>),
    Array(Node<'a>),
    String(Option<Vec<String>>),
    Integer,
    Number,
    Boolean,
    Any,
}

impl<'a> Node<'a> {
    fn new(root: &'a Value) -> Node<'a> {
        Node { root, schema: root, read_only: false }
    }

    /// Follows `$ref` and `anyOf: [X, null]` to the schema that says what the value is.
    fn resolve(self) -> Node<'a> {
        let read_only = self.read_only || self.schema.get("readOnly").and_then(Value::as_bool).unwrap_or(false);
        if let Some(r) = self.schema.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/$defs/");
            if let Some(target) = self.root.pointer(&format!("/$defs/{name}")) {
                return Node { schema: target, read_only, ..self }.resolve();
            }
        }
        if let Some(any) = self.schema.get("anyOf").and_then(Value::as_array) {
            let non_null: Vec<&Value> = any.iter().filter(|s| s.get("type") != Some(&Value::from("null"))).collect();
            if let [only] = non_null.as_slice() {
                return Node { schema: only, read_only, ..self }.resolve();
            }
        }
        Node { read_only, ..self }
    }

    fn types(&self) -> Vec<&'a str> {
        match self.schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
            _ => vec![],
        }
    }

    fn nullable(&self) -> bool {
        match self.schema.get("type") {
            Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
            _ => false,
        }
    }

    fn shape(self) -> Shape<'a> {
        let n = self.resolve();
        let enums = n
            .schema
            .get("enum")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(Value::as_str).map(String::from).collect::<Vec<_>>())
            .or_else(|| {
                n.schema.get("oneOf").and_then(Value::as_array).map(|alts| {
                    alts.iter()
                        .filter_map(|a| a.get("const").or_else(|| a.pointer("/enum/0")))
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
            });
        if let Some(e) = enums.filter(|e| !e.is_empty()) {
            return Shape::String(Some(e));
        }
        match n.types().first().copied() {
            Some("object") => Shape::Object(n),
            Some("array") => Shape::Array(n),
            Some("string") => Shape::String(None),
            Some("integer") => Shape::Integer,
            Some("number") => Shape::Number,
            Some("boolean") => Shape::Boolean,
            _ => Shape::Any,
        }
    }

    /// The declared properties of an object schema, `properties` (ARM's envelope) excluded.
    fn props(&self) -> Vec<(&'a str, &'a Value)> {
        self.schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter(|(k, _)| *k != "properties").map(|(k, v)| (k.as_str(), v)).collect())
            .unwrap_or_default()
    }

    /// The schema of ARM's `properties` envelope, if this object has one.
    fn envelope(&self) -> Option<Node<'a>> {
        let p = self.schema.pointer("/properties/properties")?;
        Some(Node { root: self.root, schema: p, read_only: false }.resolve())
    }

    /// A child of a (flattened) object: its canonical name and schema, looking through `properties`.
    fn child(&self, segment: &str) -> Option<(String, Node<'a>)> {
        let node = |schema: &'a Value| Node { root: self.root, schema, read_only: false };
        let find = |n: &Node<'a>| {
            n.props().into_iter().find(|(k, _)| k.eq_ignore_ascii_case(segment)).map(|(k, s)| (k.to_string(), node(s)))
        };
        if let Some(hit) = find(self) {
            return Some(hit);
        }
        if let Some(env) = self.envelope() {
            if let Some(hit) = find(&env) {
                return Some(hit);
            }
            // `typePropertiesType`: a `properties` key that collides with the envelope's, as az names it.
            let own = self.props();
            let collided = env.props().into_iter().find(|(k, _)| {
                own.iter().any(|(o, _)| o == k) && crate::output::collision_name(k).eq_ignore_ascii_case(segment)
            });
            if let Some((k, s)) = collided {
                return Some((crate::output::collision_name(k), node(s)));
            }
        }
        // A map (`tags`): any key, values of one schema.
        match self.schema.get("additionalProperties") {
            Some(s @ Value::Object(_)) => Some((String::new(), node(s))),
            _ => None,
        }
    }

    fn known(&self) -> Vec<&'a str> {
        let mut names: Vec<&str> = self.props().into_iter().map(|(k, _)| k).collect();
        if let Some(env) = self.envelope() {
            names.extend(env.props().into_iter().map(|(k, _)| k));
        }
        names.sort_unstable();
        names
    }
}

/// One step of a path: a property, optionally indexed (`extensions[0]`).
#[derive(Debug, PartialEq)]
struct Seg {
    name: String,
    index: Option<usize>,
}

fn parse_path(path: &str) -> Result<Vec<Seg>, EditError> {
    if path.is_empty() {
        return err("an empty path");
    }
    path.split('.')
        .map(|part| {
            let (name, index) = match part.split_once('[') {
                Some((name, rest)) => {
                    let idx = rest.strip_suffix(']').and_then(|i| i.parse::<usize>().ok());
                    match idx {
                        Some(i) => (name, Some(i)),
                        None => return err(format!("'{part}' in '{path}' has a malformed index (use name[0])")),
                    }
                }
                None => (part, None),
            };
            if name.is_empty() {
                return err(format!("'{path}' has an empty segment"));
            }
            Ok(Seg { name: name.to_string(), index })
        })
        .collect()
}

/// Parses a value as `az` does: JSON when it is JSON, else the literal string.
pub fn parse_value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// Makes `value` fit the leaf's schema, or says why it cannot.
fn coerce(value: Value, node: Node<'_>, path: &str, raw: &str) -> Result<Value, EditError> {
    let n = node.resolve();
    if value.is_null() && (n.nullable() || node.schema.get("anyOf").is_some()) {
        return Ok(Value::Null);
    }
    let wrong = |want: &str| err(format!("'{path}' takes {want}, not '{raw}'"));
    match n.shape() {
        Shape::String(Some(allowed)) => {
            let s = match &value {
                Value::String(s) => s.clone(),
                _ => raw.to_string(),
            };
            match allowed.iter().find(|a| a.eq_ignore_ascii_case(&s)) {
                Some(a) => Ok(Value::String(a.clone())),
                None => err(format!("'{path}' takes one of {}, not '{raw}'", allowed.join(", "))),
            }
        }
        Shape::String(None) => Ok(match value {
            Value::String(s) => Value::String(s),
            _ => Value::String(raw.to_string()),
        }),
        Shape::Integer => match &value {
            Value::Number(x) if x.is_i64() || x.is_u64() => Ok(value),
            _ => wrong("an integer"),
        },
        Shape::Number => match &value {
            Value::Number(_) => Ok(value),
            _ => wrong("a number"),
        },
        Shape::Boolean => match &value {
            Value::Bool(_) => Ok(value),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => wrong("true or false"),
        },
        Shape::Object(_) => match &value {
            Value::Object(_) => Ok(value),
            _ => wrong("a JSON object"),
        },
        Shape::Array(_) => match &value {
            Value::Array(_) => Ok(value),
            _ => wrong("a JSON list"),
        },
        Shape::Any => Ok(value),
    }
}

/// Walks `doc` along `segs`, creating missing objects, and returns the parent object of the last segment
/// with the last segment's canonical name and schema.
fn walk<'d, 's>(
    doc: &'d mut Value,
    schema: &'s Value,
    segs: &[Seg],
    path: &str,
    noun: &str,
) -> Result<(&'d mut Value, String, Node<'s>), EditError> {
    let mut node = Node::new(schema);
    let mut cur = doc;
    let mut walked = String::new();
    for (i, seg) in segs.iter().enumerate() {
        let Shape::Object(obj) = node.shape() else {
            return err(format!("'{walked}' of the {noun} is not an object, so '{path}' cannot be set"));
        };
        let Some((canon, child)) = obj.child(&seg.name) else {
            let here = if walked.is_empty() { format!("the {noun}") } else { format!("'{walked}'") };
            return err(format!(
                "'{path}' is not a property of the {noun}: {here} has no '{}' (it has: {})",
                seg.name,
                obj.known().join(", ")
            ));
        };
        let canon = if canon.is_empty() { seg.name.clone() } else { canon };
        walked = if walked.is_empty() { canon.clone() } else { format!("{walked}.{canon}") };
        let last = i + 1 == segs.len();
        if last && seg.index.is_none() {
            if child.resolve().read_only {
                return err(format!("'{path}' is read-only: galleon sets it"));
            }
            return Ok((cur, canon, child));
        }
        let Value::Object(map) = cur else {
            return err(format!("'{walked}' is not an object in the document"));
        };
        let next = map.entry(canon.clone()).or_insert_with(|| match seg.index {
            Some(_) => Value::Array(vec![]),
            None => Value::Object(Map::new()),
        });
        if next.is_null() {
            *next = if seg.index.is_some() { Value::Array(vec![]) } else { Value::Object(Map::new()) };
        }
        node = child;
        cur = next;
        if let Some(idx) = seg.index {
            let Shape::Array(arr) = node.shape() else {
                return err(format!("'{walked}' is not a list, so it cannot be indexed"));
            };
            let items = arr.schema.get("items").unwrap_or(&Value::Bool(true));
            let len = cur.as_array().map_or(0, Vec::len);
            let Some(item) = cur.as_array_mut().and_then(|a| a.get_mut(idx)) else {
                return err(format!("'{walked}[{idx}]' is out of range: the list has {len} element(s)"));
            };
            node = Node { root: schema, schema: items, read_only: false };
            walked = format!("{walked}[{idx}]");
            if last {
                return err(format!("'{path}' names a list element; set a property of it instead"));
            }
            cur = item;
        }
    }
    err(format!("'{path}' is empty"))
}

/// `--set PATH=VALUE`.
pub fn set(doc: &mut Value, schema: &Value, noun: &str, assignment: &str) -> Result<(), EditError> {
    let (path, raw) = assignment.split_once('=').unwrap_or((assignment, ""));
    let segs = parse_path(path).map_err(|e| EditError(format!("invalid --set path: {e}")))?;
    if !assignment.contains('=') {
        return err(format!("--set '{assignment}' must be PATH=VALUE"));
    }
    let (parent, name, node) = walk(doc, schema, &segs, path, noun)?;
    let value = coerce(parse_value(raw), node, path, raw)?;
    match parent {
        Value::Object(m) => {
            m.insert(name, value);
            Ok(())
        }
        _ => err(format!("the parent of '{path}' is not an object")),
    }
}

/// `--add PATH VALUE…`: appends to the list at PATH; each value is JSON or `key=value` pairs.
pub fn add(doc: &mut Value, schema: &Value, noun: &str, path: &str, values: &[String]) -> Result<(), EditError> {
    let segs = parse_path(path).map_err(|e| EditError(format!("invalid --add path: {e}")))?;
    let (parent, name, node) = walk(doc, schema, &segs, path, noun)?;
    let Shape::Array(arr) = node.shape() else { return err(format!("'{path}' is not a list: use --set")) };
    let items = arr.schema.get("items").cloned().unwrap_or(Value::Bool(true));
    let item_node = Node { root: schema, schema: &items, read_only: false };
    let mut value = Value::Object(Map::new());
    let mut pairs = false;
    for v in values {
        match v.split_once('=') {
            Some((k, val)) if !v.trim_start().starts_with('{') => {
                pairs = true;
                if let Value::Object(m) = &mut value {
                    m.insert(k.to_string(), parse_value(val));
                }
            }
            _ => value = parse_value(v),
        }
    }
    if values.is_empty() || (pairs && values.len() > 1 && !value.is_object()) {
        return err(format!("--add '{path}' needs a value: JSON, or key=value pairs"));
    }
    let value = coerce(value, item_node, path, &values.join(" "))?;
    let Value::Object(m) = parent else { return err(format!("the parent of '{path}' is not an object")) };
    match m.entry(name).or_insert_with(|| Value::Array(vec![])) {
        Value::Array(a) => {
            a.push(value);
            Ok(())
        }
        slot @ Value::Null => {
            *slot = Value::Array(vec![value]);
            Ok(())
        }
        _ => err(format!("'{path}' is not a list in the document")),
    }
}

/// `--remove PATH [INDEX]`: removes a property, or one element of a list.
pub fn remove(doc: &mut Value, schema: &Value, noun: &str, path: &str, index: Option<usize>) -> Result<(), EditError> {
    let segs = parse_path(path).map_err(|e| EditError(format!("invalid --remove path: {e}")))?;
    let (parent, name, _) = walk(doc, schema, &segs, path, noun)?;
    let Value::Object(m) = parent else { return err(format!("the parent of '{path}' is not an object")) };
    match index {
        None => {
            m.remove(&name);
            Ok(())
        }
        Some(i) => match m.get_mut(&name) {
            Some(Value::Array(a)) if i < a.len() => {
                a.remove(i);
                Ok(())
            }
            Some(Value::Array(a)) => err(format!("'{path}' has {} element(s); there is no element {i}", a.len())),
            _ => err(format!("'{path}' is not a list")),
        },
    }
}

/// Puts a flattened document back in ARM shape: keys that belong to an object's `properties` envelope
/// go back into it (deeply), and what `az` added for display (`resourceGroup`) is dropped.
pub fn unflatten(doc: &Value, schema: &Value) -> Value {
    fn go(v: &Value, node: Node<'_>) -> Value {
        match (v, node.shape()) {
            (Value::Object(m), Shape::Object(obj)) => {
                let own: Vec<&str> = obj.props().into_iter().map(|(k, _)| k).collect();
                let env = obj.envelope();
                let mut top = Map::new();
                let mut props = Map::new();
                for (k, val) in m {
                    if k == "resourceGroup" && !own.contains(&"resourceGroup") {
                        continue;
                    }
                    let collided = env.and_then(|e| {
                        e.props()
                            .into_iter()
                            .find(|(p, _)| crate::output::collision_name(p) == *k && own.contains(p))
                            .map(|(p, _)| p)
                    });
                    if let (Some(original), Some(env)) = (collided, env) {
                        let child = env.child(original).map(|(_, c)| c);
                        props.insert(original.to_string(), child.map_or(val.clone(), |c| go(val, c)));
                    } else if own.contains(&k.as_str()) {
                        let child = obj.child(k).map(|(_, c)| c);
                        top.insert(k.clone(), child.map_or(val.clone(), |c| go(val, c)));
                    } else if let Some(env) = env.filter(|e| e.props().iter().any(|(p, _)| p == k)) {
                        let child = env.child(k).map(|(_, c)| c);
                        props.insert(k.clone(), child.map_or(val.clone(), |c| go(val, c)));
                    } else if k == "properties" && val.is_object() {
                        if let (Value::Object(inner), Some(env)) = (go(val, env.unwrap_or(obj)), env) {
                            let _ = env;
                            props.extend(inner);
                        }
                    } else {
                        top.insert(k.clone(), val.clone());
                    }
                }
                if env.is_some() {
                    top.insert("properties".into(), Value::Object(props));
                }
                Value::Object(top)
            }
            (Value::Array(a), Shape::Array(arr)) => {
                let items = arr.schema.get("items").unwrap_or(&Value::Bool(true));
                Value::Array(
                    a.iter().map(|x| go(x, Node { root: node.root, schema: items, read_only: false })).collect(),
                )
            }
            (other, _) => other.clone(),
        }
    }
    go(doc, Node::new(schema))
}

#[cfg(test)]
mod tests;
