//! The kill switch as its own tiny decider (SPEC principle 11). It is not a case: one control history holds every
//! halt and resume, and the case decider is told `halted` in its context. Resuming is an explicit, recorded act.
//! The same history records an operator's attested baseline of a directory's destinations (issue 18, item 4).

use crate::actor::Actor;
use crate::command::CommandKind;
use crate::ids::{CommandId, UnixMs};
use crate::rejection::Rejection;
use crate::text::UntrustedText;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlCommand {
    Halt {
        reason: UntrustedText,
    },
    Resume {
        reason: UntrustedText,
    },
    /// An operator vouches that every destination the directory holds now is the owners' own, so that airlock dates
    /// them as old enough from now on instead of from when it first saw them (adopting airlock on a directory that
    /// keeps no age per destination). `dated_to` is the time they are dated to.
    AttestBaseline {
        reason: UntrustedText,
        dated_to: UnixMs,
    },
}

impl ControlCommand {
    pub fn kind(&self) -> CommandKind {
        match self {
            ControlCommand::Halt { .. } => CommandKind::Halt,
            ControlCommand::Resume { .. } => CommandKind::Resume,
            ControlCommand::AttestBaseline { .. } => CommandKind::AttestBaseline,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlEvent {
    pub at: UnixMs,
    pub actor: Actor,
    pub command_id: CommandId,
    pub body: ControlEventBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlEventBody {
    AutomationHalted {
        reason: UntrustedText,
    },
    AutomationResumed {
        reason: UntrustedText,
    },
    /// An operator attested the directory's destinations as they are at `at`; they are dated to `dated_to`.
    BaselineAttested {
        reason: UntrustedText,
        dated_to: UnixMs,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlState {
    pub halted: bool,
    /// Control commands that changed the switch, by who sent them (a command id means something only with its
    /// sender).
    pub seen_commands: BTreeMap<(Actor, CommandId), CommandKind>,
    /// Every attested baseline, oldest first: when, by whom, why, and the time its destinations are dated to.
    pub baselines: Vec<Baseline>,
}

/// One attested baseline, as decisions that relied on it show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Baseline {
    pub at: UnixMs,
    pub by: Actor,
    pub command_id: CommandId,
    pub reason: UntrustedText,
    pub dated_to: UnixMs,
}

pub fn decide_control(
    command_id: &CommandId,
    actor: &Actor,
    command: &ControlCommand,
    state: &ControlState,
    now: UnixMs,
) -> Result<Vec<ControlEvent>, Rejection> {
    let kind = command.kind();
    if !kind.allowed_roles().contains(&actor.role) {
        return Err(Rejection::RoleNotAllowed { role: actor.role, command: kind });
    }
    match state.seen_commands.get(&(actor.clone(), command_id.clone())) {
        // A command id means one command (issue 15, item 13): a resume under the id of a halt is refused, not
        // taken for a retry of the halt.
        Some(seen) if *seen != kind => return Err(Rejection::CommandIdReused),
        Some(_) => return Ok(Vec::new()),
        None => {}
    }
    let body = match command {
        ControlCommand::Halt { .. } if state.halted => return Err(Rejection::KillSwitchUnchanged { halted: true }),
        ControlCommand::Resume { .. } if !state.halted => {
            return Err(Rejection::KillSwitchUnchanged { halted: false });
        }
        // No vouching during an incident: the switch is pulled because something may be wrong.
        ControlCommand::AttestBaseline { .. } if state.halted => return Err(Rejection::Halted),
        ControlCommand::Halt { reason } => ControlEventBody::AutomationHalted { reason: reason.clone() },
        ControlCommand::Resume { reason } => ControlEventBody::AutomationResumed { reason: reason.clone() },
        // A baseline dates destinations no later than now: never into the future.
        ControlCommand::AttestBaseline { reason, dated_to } => {
            ControlEventBody::BaselineAttested { reason: reason.clone(), dated_to: UnixMs(dated_to.0.min(now.0)) }
        }
    };
    Ok(vec![ControlEvent { at: now, actor: actor.clone(), command_id: command_id.clone(), body }])
}

pub fn evolve_control(mut state: ControlState, event: &ControlEvent) -> ControlState {
    let kind = match &event.body {
        ControlEventBody::AutomationHalted { .. } => {
            state.halted = true;
            CommandKind::Halt
        }
        ControlEventBody::AutomationResumed { .. } => {
            state.halted = false;
            CommandKind::Resume
        }
        ControlEventBody::BaselineAttested { reason, dated_to } => {
            let baseline = Baseline {
                at: event.at,
                by: event.actor.clone(),
                command_id: event.command_id.clone(),
                reason: reason.clone(),
                dated_to: *dated_to,
            };
            state.baselines.push(baseline);
            CommandKind::AttestBaseline
        }
    };
    state.seen_commands.insert((event.actor.clone(), event.command_id.clone()), kind);
    state
}
