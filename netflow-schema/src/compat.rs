//! Is a schema compatible with the one a version was published with? For a
//! reader written against the old one: every field it could rely on is
//! still there, with no type it did not expect, and no word it knew is
//! gone. New fields and new words are additions (readers ignore fields
//! they do not know, and accept words they do not know).
use serde_json::{Map, Value};

/// What breaks a reader of `old` when the output follows `new`; empty
/// when compatible.
pub fn breaks(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let cx = Cx { old, new };
    cx.node(old, new, "$", &mut out, 0);
    out
}

struct Cx<'a> {
    old: &'a Value,
    new: &'a Value,
}

/// A schema node with its `$ref` and `allOf` folded in.
fn resolve(node: &Value, root: &Value, depth: usize) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(obj) = node.as_object() else {
        return out;
    };
    if depth > 32 {
        return obj.clone();
    }
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        if let Some(target) = r
            .strip_prefix("#/")
            .and_then(|p| root.pointer(&format!("/{p}")))
        {
            merge(&mut out, resolve(target, root, depth + 1));
        }
    }
    if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
        for s in all {
            merge(&mut out, resolve(s, root, depth + 1));
        }
    }
    let own: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "$ref" | "allOf"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    merge(&mut out, own);
    out
}

fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (k.as_str(), into.get_mut(&k), v) {
            ("properties", Some(Value::Object(a)), Value::Object(b)) => a.extend(b),
            ("required", Some(Value::Array(a)), Value::Array(b)) => {
                for x in b {
                    if !a.contains(&x) {
                        a.push(x);
                    }
                }
            }
            (_, _, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn types(m: &Map<String, Value>) -> Option<Vec<String>> {
    match m.get("type")? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

fn strings(m: &Map<String, Value>, key: &str) -> Vec<Value> {
    m.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

impl Cx<'_> {
    fn node(&self, old: &Value, new: &Value, path: &str, out: &mut Vec<String>, depth: usize) {
        if depth > 24 {
            return;
        }
        let o = resolve(old, self.old, 0);
        let n = resolve(new, self.new, 0);

        // Alternatives (an enum of records, an optional object, a name or a
        // number): each the reader knew has a compatible one still.
        for key in ["oneOf", "anyOf"] {
            for (i, alt) in strings(&o, key).iter().enumerate() {
                let alts = strings(&n, key);
                let mut best: Option<Vec<String>> = None;
                for cand in alts.iter().chain(
                    // The alternatives may have folded into the node itself.
                    (!n.contains_key(key)).then_some(new),
                ) {
                    let mut e = Vec::new();
                    self.node(alt, cand, &format!("{path}/{key}[{i}]"), &mut e, depth + 1);
                    if best.as_ref().is_none_or(|b| e.len() < b.len()) {
                        best = Some(e);
                    }
                }
                match best {
                    Some(e) => out.extend(e),
                    None => out.push(format!("{path}: alternative {i} of {key} is gone")),
                }
            }
        }

        if let Some(c) = o.get("const") {
            if n.get("const").is_some_and(|nc| nc != c) {
                out.push(format!("{path}: value {c} is now {}", n["const"]));
            }
        }
        if let (Some(ot), Some(nt)) = (types(&o), types(&n)) {
            let added: Vec<&String> = nt.iter().filter(|t| !ot.contains(t)).collect();
            // An integer where a number was is still a number.
            let added: Vec<&&String> = added
                .iter()
                .filter(|t| !(t.as_str() == "integer" && ot.iter().any(|o| o == "number")))
                .collect();
            if !added.is_empty() {
                out.push(format!(
                    "{path}: type {} where it was {}",
                    nt.join("|"),
                    ot.join("|")
                ));
            }
        }
        let (oe, ne) = (strings(&o, "enum"), strings(&n, "enum"));
        if !oe.is_empty() && !ne.is_empty() {
            for w in oe.iter().filter(|w| !ne.contains(w)) {
                out.push(format!("{path}: the word {w} is gone"));
            }
        }

        let required_new = strings(&n, "required");
        for r in strings(&o, "required") {
            if !required_new.contains(&r) {
                out.push(format!(
                    "{path}.{}: no longer always present",
                    r.as_str().unwrap_or("?")
                ));
            }
        }
        if let Some(Value::Object(op)) = o.get("properties") {
            let np = n.get("properties").and_then(Value::as_object);
            for (name, os) in op {
                match np.and_then(|np| np.get(name)) {
                    Some(ns) => self.node(os, ns, &format!("{path}.{name}"), out, depth + 1),
                    None => out.push(format!("{path}.{name}: removed")),
                }
            }
        }
        if let (Some(oi), Some(ni)) = (o.get("items"), n.get("items")) {
            self.node(oi, ni, &format!("{path}[]"), out, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::breaks;

    fn schema(props: Value, required: &[&str]) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": props,
            "required": required,
            "$defs": {
                "Verdict": {"type": "string", "enum": ["forwarded", "dropped"]}
            }
        })
    }

    #[test]
    fn the_same_schema_and_additions_are_compatible() {
        let old = schema(
            json!({"v": {"type": "integer"}, "verdict": {"$ref": "#/$defs/Verdict"}}),
            &["v", "verdict"],
        );
        assert!(breaks(&old, &old).is_empty());
        let mut new = schema(
            json!({
                "v": {"type": "integer"},
                "verdict": {"$ref": "#/$defs/Verdict"},
                "time": {"type": ["string", "null"]}
            }),
            &["v", "verdict"],
        );
        new["$defs"]["Verdict"]["enum"] = json!(["forwarded", "dropped", "unclaimed"]);
        assert_eq!(breaks(&old, &new), Vec::<String>::new());
    }

    #[test]
    fn renames_removals_type_changes_and_lost_words_break() {
        let old = schema(
            json!({"v": {"type": "integer"}, "verdict": {"$ref": "#/$defs/Verdict"}}),
            &["v", "verdict"],
        );
        let renamed = schema(
            json!({"v": {"type": "integer"}, "outcome": {"$ref": "#/$defs/Verdict"}}),
            &["v", "outcome"],
        );
        let b = breaks(&old, &renamed);
        assert!(b.iter().any(|e| e.contains("$.verdict: removed")), "{b:?}");

        let retyped = schema(
            json!({"v": {"type": "string"}, "verdict": {"$ref": "#/$defs/Verdict"}}),
            &["v", "verdict"],
        );
        let b = breaks(&old, &retyped);
        assert!(b.iter().any(|e| e.contains("$.v: type string")), "{b:?}");

        let mut fewer = old.clone();
        fewer["$defs"]["Verdict"]["enum"] = json!(["forwarded"]);
        let b = breaks(&old, &fewer);
        assert!(b.iter().any(|e| e.contains("\"dropped\" is gone")), "{b:?}");

        let nullable = schema(
            json!({"v": {"type": ["integer", "null"]}, "verdict": {"$ref": "#/$defs/Verdict"}}),
            &["v"],
        );
        let b = breaks(&old, &nullable);
        assert!(
            b.iter().any(|e| e.contains("$.v: type integer|null")),
            "{b:?}"
        );
        assert!(
            b.iter()
                .any(|e| e.contains("$.verdict: no longer always present")),
            "{b:?}"
        );
    }

    #[test]
    fn a_kind_of_record_that_is_gone_breaks() {
        let variant = |k: &str| json!({"type": "object", "properties": {"kind": {"type": "string", "const": k}}, "required": ["kind"]});
        let old = json!({"oneOf": [variant("packet"), variant("flow")]});
        let new = json!({"oneOf": [variant("packet"), variant("connection")]});
        let b = breaks(&old, &new);
        assert!(b.iter().any(|e| e.contains("\"flow\" is now")), "{b:?}");
        let more = json!({"oneOf": [variant("packet"), variant("flow"), variant("start")]});
        assert!(breaks(&old, &more).is_empty());
    }
}
