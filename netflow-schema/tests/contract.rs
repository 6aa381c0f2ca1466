//! The contract as checked in: the schema file is what the types generate,
//! it keeps what the published version promised, each version has its
//! compatibility note, and one hand-reviewed line per record kind reads
//! into the types and back unchanged, and validates.
use std::path::PathBuf;

use netflow_schema::{compat, schema_text, Line, VERSION};
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const REGENERATE: &str =
    "regenerate it: cargo run -q -p netflow-schema --example schema > schema/netflow.schema.json";

#[test]
fn the_checked_in_schema_is_what_the_types_generate() {
    let file = read("schema/netflow.schema.json");
    assert!(
        file == schema_text(),
        "schema/netflow.schema.json differs from the types: {REGENERATE} \
         (a rename, a removal or a change of type also bumps VERSION)"
    );
}

#[test]
fn the_schema_keeps_what_its_version_was_published_with() {
    let published = format!("schema/compat/v{VERSION}.schema.json");
    let old: Value = serde_json::from_str(&read(&published)).unwrap();
    let new: Value = serde_json::from_str(&schema_text()).unwrap();
    let breaks = compat::breaks(&old, &new);
    assert!(
        breaks.is_empty(),
        "the output changed incompatibly for readers of format v{VERSION} \
         ({published}):\n  {}\nBump netflow_schema::VERSION, copy the new schema to \
         schema/compat/v{}.schema.json and say what changed in schema/COMPAT.md",
        breaks.join("\n  "),
        VERSION + 1
    );
}

#[test]
fn every_version_has_its_compatibility_note() {
    let notes = read("schema/COMPAT.md");
    for v in 1..=VERSION {
        assert!(
            notes.lines().any(|l| l.starts_with(&format!("## v{v}"))),
            "schema/COMPAT.md has no `## v{v}` section"
        );
        assert!(repo(&format!("schema/compat/v{v}.schema.json")).exists());
    }
}

#[test]
fn one_golden_line_per_kind_reads_back_unchanged_and_validates() {
    let schema: Value = serde_json::from_str(&schema_text()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut kinds = Vec::new();
    for (i, text) in read("schema/examples.jsonl").lines().enumerate() {
        let value: Value = serde_json::from_str(text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "line {}: {errors:?}", i + 1);
        let line: Line =
            serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        assert_eq!(line.v, VERSION);
        assert_eq!(
            serde_json::to_value(&line).unwrap(),
            value,
            "line {} does not read back as written",
            i + 1
        );
        kinds.push(line.record.kind());
    }
    assert_eq!(kinds, ["start", "packet", "connection", "tcp", "stats"]);
}

#[test]
fn the_schema_refuses_what_is_not_a_line() {
    let schema: Value = serde_json::from_str(&schema_text()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let good: Value =
        serde_json::from_str(read("schema/examples.jsonl").lines().nth(1).unwrap()).unwrap();
    assert!(validator.is_valid(&good));
    for (key, bad) in [
        ("kind", Value::from("flow")),
        ("v", Value::from(0)),
        ("verdict", Value::from("lost")),
        ("hops", Value::from("rx")),
    ] {
        let mut v = good.clone();
        v[key] = bad.clone();
        assert!(!validator.is_valid(&v), "{key}: {bad} validates");
    }
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("time");
    assert!(!validator.is_valid(&v), "a line without time validates");
}

/// The replay goldens (`netflow-user/tests/recordings.rs` writes them from
/// the shipped recordings) hold to the schema too.
#[test]
fn the_replay_goldens_validate() {
    let schema: Value = serde_json::from_str(&schema_text()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for file in ["outcomes.jsonl", "layout1-outcomes.jsonl"] {
        let text = read(&format!("tests/fixtures/{file}"));
        assert!(text.lines().count() > 5, "{file}");
        golden_lines_validate(&validator, file, &text);
    }
}

fn golden_lines_validate(validator: &jsonschema::Validator, file: &str, text: &str) {
    for (i, l) in text.lines().enumerate() {
        let value: Value = serde_json::from_str(l).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{file} line {}: {errors:?}", i + 1);
        let line: Line = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&line).unwrap(),
            value,
            "{file} line {}",
            i + 1
        );
    }
}
