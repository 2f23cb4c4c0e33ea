//! The state machine as data: `state-machines/recovery.toml`, embedded in the binary. The CLI draws it
//! (`airlock fsm`), and tests prove that `transition::target` allows exactly what it lists.

use serde::Deserialize;

/// The table file, embedded at build time so the binary and the tests read the very same bytes.
pub const RECOVERY_TOML: &str = include_str!("../../../state-machines/recovery.toml");

/// `to = "same"` in the table: the event keeps the state it happened in.
const SAME: &str = "same";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub initial: String,
    pub states: Vec<String>,
    pub terminal: Vec<String>,
    #[serde(rename = "transition")]
    pub transitions: Vec<Row>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub from: Vec<String>,
    pub on: String,
    pub to: String,
    pub spec: String,
}

/// One expanded transition: from one state, on one event, to one state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Edge {
    pub from: String,
    pub on: String,
    pub to: String,
}

impl Table {
    pub fn parse(text: &str) -> Result<Table, String> {
        let table: Table = toml::from_str(text).map_err(|error| error.to_string())?;
        table.check()?;
        Ok(table)
    }

    /// The embedded table. It is checked by the test suite, so failing here is a build defect.
    pub fn embedded() -> Table {
        Table::parse(RECOVERY_TOML).expect("state-machines/recovery.toml is valid (checked by tests)")
    }

    fn check(&self) -> Result<(), String> {
        let known = |name: &str| self.states.iter().any(|state| state == name);
        if !known(&self.initial) {
            return Err(format!("initial state {} is not listed in states", self.initial));
        }
        for state in &self.terminal {
            if !known(state) {
                return Err(format!("terminal state {state} is not listed in states"));
            }
        }
        for row in &self.transitions {
            for from in &row.from {
                if !known(from) {
                    return Err(format!("transition on {} starts from unknown state {from}", row.on));
                }
            }
            if row.to != SAME && !known(&row.to) {
                return Err(format!("transition on {} leads to unknown state {}", row.on, row.to));
            }
        }
        Ok(())
    }

    /// Every transition, one edge per source state, with `same` resolved.
    pub fn edges(&self) -> Vec<Edge> {
        let mut edges: Vec<Edge> = self
            .transitions
            .iter()
            .flat_map(|row| {
                row.from.iter().map(|from| Edge {
                    from: from.clone(),
                    on: row.on.clone(),
                    to: if row.to == SAME { from.clone() } else { row.to.clone() },
                })
            })
            .collect();
        edges.sort();
        edges
    }

    /// The state `on` leads to from `from`, if the table lists that transition.
    pub fn target(&self, from: &str, on: &str) -> Option<String> {
        self.edges().into_iter().find(|edge| edge.from == from && edge.on == on).map(|edge| edge.to)
    }

    pub fn is_terminal(&self, state: &str) -> bool {
        self.terminal.iter().any(|terminal| terminal == state)
    }
}
