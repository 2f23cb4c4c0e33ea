//! Who is acting, and in which role. The role decides what a command may do (SPEC principle 1): it is taken from
//! the authenticated channel a command arrived on (a NATS subject bound by broker permissions, an API key), never
//! from anything the sender wrote.

use crate::ids::ActorId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The five roles of SPEC.md. The set is closed on purpose: a new role is a security review, not a config change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Support desks and AI agents: untrusted. They may open a case and attach context, nothing else.
    Intake,
    /// Whoever holds a code sent to a pre-existing destination, or a cancel link sent there.
    Owner,
    /// A person who approves or denies the exact action of a case in review.
    Reviewer,
    /// A person who cancels, rolls back and pulls the kill switch.
    Operator,
    /// airlock itself: timers and the executor.
    System,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Intake, Role::Owner, Role::Reviewer, Role::Operator, Role::System];

    pub fn name(self) -> &'static str {
        match self {
            Role::Intake => "intake",
            Role::Owner => "owner",
            Role::Reviewer => "reviewer",
            Role::Operator => "operator",
            Role::System => "system",
        }
    }

    /// The role `name` names (as `name` writes it).
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// An authenticated actor: a role plus the identity the channel proved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Actor {
    pub role: Role,
    pub id: ActorId,
}

impl Actor {
    pub fn new(role: Role, id: impl Into<String>) -> Self {
        Actor { role, id: ActorId::new(id) }
    }

    /// airlock's own timers and executor.
    pub fn system() -> Self {
        Actor::new(Role::System, "airlock")
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.role, self.id)
    }
}
