//! The kinds of command, by themselves: who may send each and in which states of a case it means something. Named by
//! rejections and the transition table without reaching for the commands' contents.

use crate::actor::Role;
use crate::status::Status;
use serde::{Deserialize, Serialize};

/// The command kinds, for the transition table, rejections and refusal records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommandKind {
    RequestRecovery,
    SubmitProof,
    ApproveReview,
    DenyReview,
    Cancel,
    Tick,
    ConfirmExecution,
    RollBack,
    /// The kill switch (`control` aggregate, not a case).
    Halt,
    Resume,
    ConfirmNotices,
    SetPassword,
    /// An operator's attested baseline of the directory's destinations (`control` aggregate, not a case).
    AttestBaseline,
    /// An operator acknowledges a campaign alert (`alerts` stream, not a case; issue 20).
    AcknowledgeAlert,
}

impl CommandKind {
    pub fn name(self) -> &'static str {
        match self {
            CommandKind::RequestRecovery => "request_recovery",
            CommandKind::SubmitProof => "submit_proof",
            CommandKind::ApproveReview => "approve_review",
            CommandKind::DenyReview => "deny_review",
            CommandKind::Cancel => "cancel",
            CommandKind::Tick => "tick",
            CommandKind::ConfirmExecution => "confirm_execution",
            CommandKind::RollBack => "roll_back",
            CommandKind::Halt => "halt",
            CommandKind::Resume => "resume",
            CommandKind::ConfirmNotices => "confirm_notices",
            CommandKind::SetPassword => "set_password",
            CommandKind::AttestBaseline => "attest_baseline",
            CommandKind::AcknowledgeAlert => "acknowledge_alert",
        }
    }

    /// The roles allowed to send this command (SPEC principle 1). Intake may only open cases.
    pub fn allowed_roles(self) -> &'static [Role] {
        match self {
            CommandKind::RequestRecovery => &[Role::Intake, Role::Owner],
            CommandKind::SubmitProof | CommandKind::SetPassword => &[Role::Owner],
            CommandKind::ApproveReview | CommandKind::DenyReview => &[Role::Reviewer],
            CommandKind::Cancel => &[Role::Owner, Role::Operator],
            CommandKind::Tick | CommandKind::ConfirmExecution | CommandKind::ConfirmNotices => &[Role::System],
            CommandKind::RollBack
            | CommandKind::Halt
            | CommandKind::Resume
            | CommandKind::AttestBaseline
            | CommandKind::AcknowledgeAlert => &[Role::Operator],
        }
    }

    /// The states of a case in which this command can change it. `decide` refuses the people's commands in any other
    /// state (`wrong_state`), and `airlock case show` lists a case's next steps from this; a timer tick or a delivery
    /// report elsewhere is accepted and changes nothing. The kill switch acts on no case.
    pub fn accepted_in(self) -> &'static [Status] {
        match self {
            CommandKind::RequestRecovery => &[Status::New],
            CommandKind::SubmitProof => &[Status::Requested],
            CommandKind::ApproveReview | CommandKind::DenyReview => &[Status::InReview],
            CommandKind::Cancel => &[Status::CoolingOff],
            CommandKind::Tick => &[Status::Requested, Status::InReview, Status::CoolingOff],
            CommandKind::ConfirmExecution => &[Status::Executing],
            CommandKind::RollBack | CommandKind::SetPassword => &[Status::Executed],
            CommandKind::ConfirmNotices => &[Status::CoolingOff, Status::Executed, Status::RolledBack],
            CommandKind::Halt | CommandKind::Resume | CommandKind::AttestBaseline | CommandKind::AcknowledgeAlert => {
                &[]
            }
        }
    }
}
