//! Documentation that can rot is tested: the README's state-machine diagram may only show transitions the table has,
//! and the README must open with the two commands.

use airlock::core::table::Table;

// Proves every arrow in the README's mermaid diagram is a transition of state-machines/recovery.toml.
#[test]
fn readme_diagram_matches_the_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = Table::embedded();
    let edges = table.edges();
    let arrows: Vec<&str> = readme.lines().map(str::trim).filter(|line| line.contains(" --> ")).collect();
    assert!(arrows.len() >= 15, "the README shows the diagram");
    for arrow in arrows {
        let (from, rest) = arrow.split_once(" --> ").unwrap();
        let (to, on) = rest.split_once(": ").unwrap_or((rest, ""));
        let from = if from == "[*]" { table.initial.as_str() } else { from };
        let listed = edges.iter().any(|edge| edge.from == from && edge.to == to && edge.on == on);
        assert!(listed, "README shows {arrow:?}, which the table does not have");
    }
}

// Proves the README opens with the demo command and the test command that .ci/run runs.
#[test]
fn readme_opens_with_the_two_commands() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let ci = std::fs::read_to_string(format!("{root}/.ci/run")).unwrap();
    let first_block: String = readme.split("```").nth(1).unwrap().to_string();
    assert!(first_block.contains("cargo run --release -- demo"));
    assert!(first_block.contains("./scripts/test.sh"));
    assert!(ci.contains("scripts/test.sh"));
}
