//! Bytes to a wire command. Size is checked before anything is parsed, the version before the fields, and every
//! serde_json error becomes a `WireError` whose message names the problem without repeating the sender's values:
//! serde's own messages can quote a value (`invalid type: integer 12345678`), and that value may be a code.

use crate::core::limits;
use crate::wire::COMMAND_VERSION_CURRENT;
use crate::wire::secret::looks_like_code;
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use std::fmt;

/// A field name from the input is echoed only if it is this short and plain; anything else is withheld, since a
/// sender controls it and it might be a pasted secret or an attempt to forge a log line.
const ECHOED_FIELD_BYTES_MAX: usize = 64;

/// Why bytes could not become a wire command. No variant carries a value the sender wrote, except a field name that
/// passed `shown_field_name`. Every variant is final for these bytes: the sender must fix the input, not retry it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input is over `limits::COMMAND_BYTES_MAX` and was not parsed. The usual culprit is a long summary.
    TooLarge { bytes: usize, bytes_max: usize },
    /// The input is not UTF-8 text; `valid_up_to` is the byte offset of the first invalid byte.
    NotUtf8 { valid_up_to: usize },
    /// The input is not JSON (bad syntax, or it ends early). `reason` is serde_json's fixed description.
    NotJson { reason: String, line: usize, column: usize },
    /// The input has a field this command does not define. Fields are never ignored: a field the sender thinks
    /// matters and airlock silently drops is how a request means one thing to a sender and another to airlock.
    UnknownField { field: String, line: usize, column: usize },
    /// A required field is absent.
    MissingField { field: String },
    /// A field appears twice; which one was meant is ambiguous, so neither is taken.
    DuplicateField { field: String },
    /// A value has the wrong type or is not one of the allowed values. `expected` describes what was expected.
    WrongType { expected: String, line: usize, column: usize },
    /// The command declares a version this build does not read. The sender should use a version listed in
    /// `schemas/`.
    UnsupportedVersion { version: u64 },
}

impl fmt::Display for WireError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::TooLarge { bytes, bytes_max } => {
                write!(formatter, "the command is {bytes} bytes, over the limit of {bytes_max} bytes; it was not read")
            }
            WireError::NotUtf8 { valid_up_to } => {
                write!(formatter, "the command is not UTF-8 text (invalid byte at offset {valid_up_to})")
            }
            WireError::NotJson { reason, line, column } => {
                write!(formatter, "the command is not valid JSON: {reason} at line {line} column {column}")
            }
            WireError::UnknownField { field, line, column } => {
                write!(formatter, "unknown field `{field}` at line {line} column {column}")
            }
            WireError::MissingField { field } => write!(formatter, "missing field `{field}`"),
            WireError::DuplicateField { field } => write!(formatter, "field `{field}` appears more than once"),
            WireError::WrongType { expected, line, column } => {
                write!(formatter, "wrong type or value at line {line} column {column}: expected {expected}")
            }
            WireError::UnsupportedVersion { version } => {
                write!(formatter, "unsupported version {version}: this airlock reads version {COMMAND_VERSION_CURRENT}")
            }
        }
    }
}

/// Parses one JSON command, in four steps so that each kind of problem gets its own answer:
///
/// 1. input over `limits::COMMAND_BYTES_MAX` is refused before anything is parsed;
/// 2. the text must be UTF-8 and JSON;
/// 3. the `version` is checked before the fields, because a command of another version may well have fields this one
///    does not know, and "unsupported version" is the useful answer then; when a version 2 exists, the upcast from
///    version 1 belongs here, next to this check;
/// 4. a list anywhere is refused: no command has a list field, and serde would otherwise accept a list in place of
///    an object (its positional form of a struct), a shape the schemas do not allow and nobody reviews.
///
/// Then the fields are read, refusing unknown, missing and duplicate fields and wrong types.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > limits::COMMAND_BYTES_MAX {
        return Err(WireError::TooLarge { bytes: bytes.len(), bytes_max: limits::COMMAND_BYTES_MAX });
    }
    let text = std::str::from_utf8(bytes).map_err(|error| WireError::NotUtf8 { valid_up_to: error.valid_up_to() })?;
    let document: serde_json::Value = serde_json::from_str(text).map_err(|error| wire_error(&error))?;
    // A version of the wrong type (a string, a negative number) is left to the typed parse, which says where it is.
    let other_version = document
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .filter(|version| *version != u64::from(COMMAND_VERSION_CURRENT));
    if let Some(version) = other_version {
        return Err(WireError::UnsupportedVersion { version });
    }
    if let Some((line, column)) = first_list_position(text) {
        let expected = "an object or a single value; no field of a command is a list".to_string();
        return Err(WireError::WrongType { expected, line, column });
    }
    serde_json::from_str(text).map_err(|error| wire_error(&error))
}

/// Where the first `[` outside a string is, as serde_json counts it (line from 1, column in bytes from 1). Only
/// called on text already known to be JSON, so every such `[` opens a list. Scanning bytes is safe in UTF-8: the
/// bytes `"`, `\`, `[` and a newline never occur inside a multi-byte character.
fn first_list_position(text: &str) -> Option<(usize, usize)> {
    let (mut line, mut column) = (1, 0);
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if byte == b'\n' {
            (line, column) = (line + 1, 0);
        } else {
            column += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if byte == b'"' {
            in_string = true;
        } else if byte == b'[' {
            return Some((line, column));
        }
    }
    None
}

fn wire_error(error: &serde_json::Error) -> WireError {
    let (line, column) = (error.line(), error.column());
    let full = error.to_string();
    let message = full.strip_suffix(&format!(" at line {line} column {column}")).unwrap_or(&full);
    match error.classify() {
        // Syntax and end-of-input messages are fixed strings in serde_json; the guard is for a future one that is not.
        Category::Io | Category::Syntax | Category::Eof => {
            let reason = if looks_like_code(message) { "malformed input" } else { message };
            WireError::NotJson { reason: reason.to_string(), line, column }
        }
        Category::Data => data_error(message, line, column),
    }
}

/// Sorts a serde data error by its (stable) message prefix, keeping only what is safe to repeat.
fn data_error(message: &str, line: usize, column: usize) -> WireError {
    if let Some(field) = quoted_after(message, "unknown field `") {
        return WireError::UnknownField { field: shown_field_name(field), line, column };
    }
    if let Some(field) = quoted_after(message, "missing field `") {
        return WireError::MissingField { field: shown_field_name(field) };
    }
    if let Some(field) = quoted_after(message, "duplicate field `") {
        return WireError::DuplicateField { field: shown_field_name(field) };
    }
    // serde writes "invalid type: <the value>, expected <what the type wants>" (and the same shape for invalid
    // values, lengths and unknown variants). Only the part after the last ", expected " comes from our types.
    let expected = match message.rsplit_once(", expected ") {
        Some((_, expected)) if !looks_like_code(expected) => expected,
        Some(_) | None => "a value that matches the command's schema",
    };
    WireError::WrongType { expected: expected.to_string(), line, column }
}

fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest.split_once('`').map_or(rest, |(name, _)| name))
}

fn shown_field_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= ECHOED_FIELD_BYTES_MAX
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        && !looks_like_code(name);
    if plain { name.to_string() } else { "(name withheld)".to_string() }
}

#[cfg(test)]
mod tests {
    use super::first_list_position;

    // Proves that the list scan finds a list at the top level and nested, where serde_json would report it.
    #[test]
    fn lists_are_found_with_their_position() {
        assert_eq!(first_list_position("[1]"), Some((1, 1)));
        assert_eq!(first_list_position("{\n  \"a\": [1]\n}"), Some((2, 8)));
    }

    // Proves that brackets inside strings, including after escaped quotes and backslashes, are not lists.
    #[test]
    fn brackets_inside_strings_are_not_lists() {
        assert_eq!(first_list_position(r#"{"a": "[x]", "b": 1}"#), None);
        assert_eq!(first_list_position(r#"{"a": "say \"[\" ok"}"#), None);
        assert_eq!(first_list_position(r#"{"a": "\\", "b": [2]}"#), Some((1, 18)));
        assert_eq!(first_list_position(r#"{"é": "ü[", "b": 1}"#), None);
    }
}
