//! Untrusted text and the checks every outside value passes before it becomes part of a command. Free text is kept
//! verbatim (reviewers must see exactly what was said) but it is bounded, and no decision ever reads it.

use crate::limits;
use crate::rejection::Rejection;
use serde::{Deserialize, Serialize};

/// Text written by someone airlock does not trust (a requester's summary of a conversation). It is data to show a
/// reviewer, escaped, never an instruction; the type has no accessor that a decision could branch on besides
/// `as_untrusted_str`, whose name says what it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UntrustedText(String);

impl UntrustedText {
    pub fn new(field: &'static str, value: &str, bytes_max: usize) -> Result<Self, Rejection> {
        check_length(field, value, bytes_max)?;
        Ok(UntrustedText(value.to_string()))
    }

    pub fn as_untrusted_str(&self) -> &str {
        &self.0
    }

    /// The text made safe to print on a terminal or in a log line: control characters (which could rewrite what
    /// a reviewer sees) are shown as escapes.
    pub fn escaped(&self) -> String {
        for_terminal(&self.0)
    }
}

/// Any outside text made safe to print on a terminal or in a log line: control characters, bidirectional overrides
/// and other invisible format characters (which could rewrite or reorder what a reviewer sees) are shown as escapes.
pub fn for_terminal(text: &str) -> String {
    text.chars().flat_map(char::escape_debug).collect::<String>().replace("\\'", "'").replace("\\\"", "\"")
}

/// Characters a reader does not see: zero-width and joiner characters, bidirectional marks, overrides and isolates,
/// invisible operators, soft hyphens, variation selectors and byte-order marks. Text written with them is a trick
/// when it stands for a code, an address or a name, never an honest spelling of one.
pub fn invisible(character: char) -> bool {
    matches!(
        character,
        '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{180e}' | '\u{feff}' | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{fe00}'..='\u{fe0f}'
    )
}

pub fn check_length(field: &'static str, value: &str, bytes_max: usize) -> Result<(), Rejection> {
    if value.len() > bytes_max {
        return Err(Rejection::TooLong { field: field.to_string(), bytes_max });
    }
    Ok(())
}

/// Identifiers: non-empty, bounded, printable ASCII without spaces, so they are safe in subjects, logs and paths.
pub fn check_identifier(field: &'static str, value: &str) -> Result<(), Rejection> {
    check_length(field, value, limits::ID_BYTES_MAX)?;
    let valid = !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_.@+".contains(&byte));
    if !valid {
        return Err(Rejection::InvalidValue {
            field: field.to_string(),
            expected: "1 to 128 characters from A-Z a-z 0-9 - _ . @ +".to_string(),
        });
    }
    Ok(())
}
