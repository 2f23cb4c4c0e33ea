//! `airlock fsm`: draws the state machine from the embedded table, as Mermaid or Graphviz dot.

use crate::cli::exit;
use crate::core::table::Table;

#[derive(Debug, clap::Args)]
pub struct FsmArgs {
    /// The diagram language.
    #[arg(long, value_enum, default_value_t = Format::Mermaid)]
    pub format: Format,
    /// Print the table as one JSON object instead (fields: initial, states, terminal, transitions[from, on, to]).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Mermaid,
    Dot,
}

pub fn run(args: FsmArgs) -> u8 {
    let table = Table::embedded();
    if args.json {
        let transitions: Vec<serde_json::Value> = table
            .edges()
            .into_iter()
            .map(|edge| serde_json::json!({ "from": edge.from, "on": edge.on, "to": edge.to }))
            .collect();
        let answer = serde_json::json!({
            "initial": table.initial, "states": table.states, "terminal": table.terminal, "transitions": transitions,
        });
        println!("{}", serde_json::to_string_pretty(&answer).expect("plain data serializes"));
        return exit::OK;
    }
    print!("{}", render(&table, args.format));
    exit::OK
}

/// Renders the table; the initial pseudo-state `none` is drawn as the start marker.
pub fn render(table: &Table, format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Mermaid => {
            out.push_str("stateDiagram-v2\n");
            for edge in table.edges() {
                let from = if edge.from == table.initial { "[*]".to_string() } else { edge.from.clone() };
                out.push_str(&format!("    {from} --> {}: {}\n", edge.to, edge.on));
            }
            for terminal in &table.terminal {
                out.push_str(&format!("    {terminal} --> [*]\n"));
            }
        }
        Format::Dot => {
            out.push_str("digraph recovery {\n    rankdir=LR;\n    node [shape=box, style=rounded];\n");
            out.push_str(&format!("    {} [shape=point];\n", table.initial));
            for terminal in &table.terminal {
                out.push_str(&format!("    {terminal} [peripheries=2];\n"));
            }
            for edge in table.edges() {
                out.push_str(&format!("    {} -> {} [label=\"{}\"];\n", edge.from, edge.to, edge.on));
            }
            out.push_str("}\n");
        }
    }
    out
}
