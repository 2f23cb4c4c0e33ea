//! The JSON Schemas in `schemas/` are what the code generates, byte for byte, so that what outside systems validate
//! against is exactly what airlock parses. Run with `AIRLOCK_WRITE_SCHEMAS=1` to regenerate them after changing a
//! wire type.

use std::path::{Path, PathBuf};

/// The environment variable that turns the comparison into a regeneration.
const WRITE_VARIABLE: &str = "AIRLOCK_WRITE_SCHEMAS";

fn schemas_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// Pretty JSON with a trailing newline: the committed form, easy to diff and to read.
fn rendered(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema is plain JSON");
    text.push('\n');
    text
}

// Proves that every committed schema file equals the generated schema (or, with AIRLOCK_WRITE_SCHEMAS=1, writes
// them), and that `schemas/` holds no stale schema of a command that no longer exists.
#[test]
fn committed_schemas_match_the_wire_types() {
    let directory = schemas_directory();
    let generated = airlock::wire::schemas();
    if std::env::var_os(WRITE_VARIABLE).is_some() {
        std::fs::create_dir_all(&directory).expect("create schemas/");
        for (name, schema) in &generated {
            std::fs::write(directory.join(name), rendered(schema)).expect("write a schema file");
        }
    }
    let regenerate = format!("regenerate with: {WRITE_VARIABLE}=1 cargo test --test core schemas::");
    for (name, schema) in &generated {
        let path = directory.join(name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}; {regenerate}", path.display()));
        // Compared as JSON values, not text: key order depends on serde_json's `preserve_order` feature, which any
        // dependency may switch on, and it carries no meaning in a schema.
        let committed: serde_json::Value = serde_json::from_str(&committed)
            .unwrap_or_else(|error| panic!("{} is not JSON: {error}; {regenerate}", path.display()));
        assert!(&committed == schema, "{} differs from the wire types; {regenerate}", path.display());
    }
    let expected_names: Vec<&str> = generated.iter().map(|(name, _)| *name).collect();
    for entry in std::fs::read_dir(&directory).expect("read schemas/") {
        let name = entry.expect("a directory entry").file_name().to_string_lossy().into_owned();
        if name.ends_with(".schema.json") {
            assert!(expected_names.contains(&name.as_str()), "schemas/{name} matches no wire type; delete it");
        }
    }
}

// Proves that the schemas are distinct, named by the `<command>.v<version>.schema.json` convention, and that each
// refuses unknown fields and pins its version, as the parser does.
#[test]
fn every_schema_is_strict_and_versioned() {
    let generated = airlock::wire::schemas();
    // One schema per command type, and one document that is not a command (the directory import file).
    let documents = ["directory_import.v1.schema.json"];
    let commands = generated.iter().filter(|(name, _)| !documents.contains(name)).count();
    assert_eq!(commands, airlock::intake::CommandType::ALL.len(), "one schema per command");
    for (name, schema) in &generated {
        assert!(name.ends_with(".v1.schema.json"), "{name} is not named <command>.v1.schema.json");
        assert_eq!(schema["additionalProperties"], serde_json::json!(false), "{name} allows unknown fields");
        assert_eq!(schema["properties"]["version"]["const"], serde_json::json!(1), "{name} does not pin version 1");
        let required = schema["required"].as_array().expect("a required list");
        assert!(required.contains(&serde_json::json!("version")), "{name} does not require version");
        if !documents.contains(name) {
            assert!(required.contains(&serde_json::json!("command_id")), "{name} does not require command_id");
        }
    }
    let mut names: Vec<&str> = generated.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), generated.len(), "two commands share a schema file name");
}

// Proves that the schema states the approval rule the parser enforces: `action_hash` is required when approving.
#[test]
fn review_decision_schema_requires_an_action_hash_to_approve() {
    let generated = airlock::wire::schemas();
    let (_, schema) = generated.iter().find(|(name, _)| *name == "review_decision.v1.schema.json").expect("listed");
    assert_eq!(schema["if"]["properties"]["decision"]["const"], serde_json::json!("approve"));
    assert_eq!(schema["then"]["required"], serde_json::json!(["action_hash"]));
}
