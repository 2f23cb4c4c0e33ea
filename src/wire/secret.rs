//! Spotting a verification code pasted where it does not belong. The 2026 attack worked because a code read out in
//! a chat was as good as a code typed at the verification page; airlock refuses free text that looks like it
//! carries one, before the text is stored anywhere (THREATS 1, 12).

use crate::core::limits;

/// Consecutive digits that make a text look like it carries a code. Codes are `CODE_DIGITS` (8) long; six also
/// catches a partial paste and most other services' one-time codes, at the price of refusing long numbers such as
/// dates and phone numbers in free text, which a recovery summary does not need.
pub const CODE_LIKE_DIGITS_MIN: usize = 6;

const _: () = assert!(CODE_LIKE_DIGITS_MIN <= limits::CODE_DIGITS);

/// True when `text` holds a run of at least `CODE_LIKE_DIGITS_MIN` ASCII digits, where single spaces or dashes
/// between digits do not break the run (`1234 5678`, `12-34-56`). Two separators in a row, or any other character,
/// end the run.
pub fn looks_like_code(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut run_digits = 0;
    for (index, byte) in bytes.iter().enumerate() {
        if byte.is_ascii_digit() {
            run_digits += 1;
            if run_digits >= CODE_LIKE_DIGITS_MIN {
                return true;
            }
            continue;
        }
        let previous_is_digit = index > 0 && bytes[index - 1].is_ascii_digit();
        let next_is_digit = bytes.get(index + 1).is_some_and(u8::is_ascii_digit);
        let joins_digits = (*byte == b' ' || *byte == b'-') && previous_is_digit && next_is_digit;
        if !joins_digits {
            run_digits = 0;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::looks_like_code;

    // Proves that a whole code, a partial paste and a six-digit code from elsewhere are all caught.
    #[test]
    fn plain_digit_runs_of_six_or_more_are_codes() {
        assert!(looks_like_code("12345678"));
        assert!(looks_like_code("the code is 123456, please hurry"));
        assert!(looks_like_code("code:0000001"));
    }

    // Proves that single spaces or dashes between digits do not hide a code.
    #[test]
    fn single_separators_do_not_break_a_run() {
        assert!(looks_like_code("1234 5678"));
        assert!(looks_like_code("12-34-56"));
        assert!(looks_like_code("1 2 3 4 5 6"));
        assert!(looks_like_code("it was 123-456"));
    }

    // Proves that short numbers, and digits separated by more than one separator or by letters, are allowed.
    #[test]
    fn short_or_broken_runs_are_not_codes() {
        assert!(!looks_like_code(""));
        assert!(!looks_like_code("order 12345 from AS13335"));
        assert!(!looks_like_code("123  456"));
        assert!(!looks_like_code("123 - 456"));
        assert!(!looks_like_code("123a456"));
        assert!(!looks_like_code("12345 "));
        assert!(!looks_like_code("-12345-"));
    }

    // Proves that a separator at either end of a run is not counted and does not join a run to other text.
    #[test]
    fn separators_count_only_between_digits() {
        assert!(!looks_like_code("12345- 6"));
        assert!(!looks_like_code(" 12345 -6"));
        assert!(looks_like_code("-123456-"));
    }

    // Proves that only ASCII digits count: other scripts' digits are not what airlock sends.
    #[test]
    fn only_ascii_digits_count() {
        assert!(!looks_like_code("١٢٣٤٥٦٧٨"));
        assert!(looks_like_code("é123456"));
    }
}
