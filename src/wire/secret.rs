//! Spotting a verification code pasted where it does not belong. The 2026 attack worked because a code read out in
//! a chat was as good as a code typed at the verification page; airlock refuses free text that looks like it
//! carries one, before the text is stored anywhere (THREATS 1, 12).

use crate::core::limits;

/// Consecutive digits that make a text look like it carries a code. Codes are `CODE_DIGITS` (8) long; six also
/// catches a partial paste and most other services' one-time codes, at the price of refusing long numbers such as
/// dates and phone numbers in free text, which a recovery summary does not need.
pub const CODE_LIKE_DIGITS_MIN: usize = 6;

const _: () = assert!(CODE_LIKE_DIGITS_MIN <= limits::CODE_DIGITS);

/// Characters that join digits into one run when they stand alone between two digits: spaces (also no-break and
/// thin ones), dashes, dots, slashes and underscores (`1234 5678`, `4821.3377`, `48-15-16-23`).
fn joins_digits(character: char) -> bool {
    matches!(character, ' ' | '-' | '.' | '/' | '_' | '\u{a0}' | '\u{2009}' | '\u{202f}' | '\u{2010}' | '\u{2011}')
}

/// Any numeric character: ASCII digits, and the same digits in other spellings (fullwidth `４８２１`, other scripts,
/// circled, superscript), which a person reads as the same code.
fn digit(character: char) -> bool {
    character.is_numeric()
}

/// Words that say a number is something else: an order, a ticket, an invoice... A labelled number is not a code,
/// unless a code word stands close before it.
const LABELS: [&str; 16] = [
    "order",
    "orders",
    "invoice",
    "ticket",
    "tracking",
    "case",
    "ref",
    "reference",
    "po",
    "account",
    "acct",
    "member",
    "customer",
    "booking",
    "confirmation",
    "serial",
];

/// Words that say a number is a code, whatever label it also has.
const CODE_WORDS: [&str; 10] =
    ["code", "codes", "otp", "pin", "passcode", "one-time", "2fa", "token", "verification", "sms"];

/// Words after an amount.
const CURRENCIES: [&str; 10] = ["usd", "eur", "gbp", "jpy", "chf", "dollars", "euros", "pounds", "yen", "francs"];

/// How many words before a labelled number are searched for a code word.
const CODE_WORD_REACH_WORDS: usize = 4;

/// A run of digits as found in a text: where it starts and ends (character indices) and its digits.
struct Run {
    start: usize,
    end: usize,
    digits: usize,
}

/// True when `text` holds what reads as a one-time code: a run of at least `CODE_LIKE_DIGITS_MIN` digits (in any
/// spelling), where single spaces, dashes, dots, slashes or underscores between digits do not break the run and
/// invisible characters are ignored, unless the run has the shape or context of another number (issue 15, item 18):
/// a calendar date (`1987-05-13`, `13.05.1987`, `05/13/1987`), an amount (`$1234.56`, `1234.56 EUR`), an
/// international phone number (`+44 20 7946 0958`), or a number labelled as an order, ticket, invoice and the like
/// (`order 12345678`, `#12345678`) with no code word (`code`, `otp`, `pin`...) just before it.
pub fn looks_like_code(text: &str) -> bool {
    let characters: Vec<char> = text.chars().filter(|character| !crate::core::text::invisible(*character)).collect();
    runs(&characters).into_iter().any(|run| run.digits >= CODE_LIKE_DIGITS_MIN && !other_number(&characters, &run))
}

fn runs(characters: &[char]) -> Vec<Run> {
    let mut found = Vec::new();
    let mut index = 0;
    while index < characters.len() {
        if !digit(characters[index]) {
            index += 1;
            continue;
        }
        let start = index;
        let mut digits = 0;
        let mut end = index;
        while index < characters.len() {
            if digit(characters[index]) {
                digits += 1;
                index += 1;
                end = index;
            } else if joins_digits(characters[index]) && characters.get(index + 1).is_some_and(|next| digit(*next)) {
                index += 1;
            } else {
                break;
            }
        }
        found.push(Run { start, end, digits });
        index = end.max(start + 1);
    }
    found
}

fn other_number(characters: &[char], run: &Run) -> bool {
    let group: String = characters[run.start..run.end].iter().collect();
    let before: String = characters[..run.start].iter().collect();
    let after: String = characters[run.end..].iter().collect();
    let exactly_a_code = run.digits == limits::CODE_DIGITS && run.end - run.start == run.digits;
    date(&group)
        || amount(&before, &after)
        || phone(&before, run)
        || labelled(&before)
        || (prefixed(&before) && !exactly_a_code)
}

/// An identifier with a capital-letter prefix glued to the number (`INV-2026-000123`, `PO1234567`, `AS13335`), the
/// way invoices, purchase orders and networks are numbered; a code word as the prefix (`OTP-123456`) does not count,
/// and neither does a prefix on exactly eight plain digits (`AS48151623`), the shape of airlock's own codes.
fn prefixed(before: &str) -> bool {
    let word = before.rsplit(char::is_whitespace).next().unwrap_or_default();
    let prefix = word.strip_suffix('-').unwrap_or(word);
    (2..=6).contains(&prefix.len())
        && prefix.bytes().all(|byte| byte.is_ascii_uppercase())
        && !CODE_WORDS.contains(&prefix.to_lowercase().as_str())
}

/// `YYYY-MM-DD`, `DD-MM-YYYY` or `MM-DD-YYYY`, with one kind of separator among `-`, `/`, `.`, a year from 1900 to
/// 2099 and a month and day that exist.
fn date(group: &str) -> bool {
    let Some(separator) = group.chars().find(|character| matches!(character, '-' | '/' | '.')) else { return false };
    let parts: Vec<&str> = group.split(separator).collect();
    let number = |part: &str| {
        (part.len() <= 4 && part.bytes().all(|byte| byte.is_ascii_digit())).then(|| part.parse::<u32>().ok()).flatten()
    };
    let [first, second, third] = parts.as_slice() else { return false };
    let (Some(a), Some(b), Some(c)) = (number(first), number(second), number(third)) else { return false };
    let year = |value: u32, part: &str| part.len() == 4 && (1900..=2099).contains(&value);
    let month_day = |month: u32, day: u32| (1..=12).contains(&month) && (1..=31).contains(&day);
    (year(a, first) && second.len() <= 2 && third.len() <= 2 && month_day(b, c))
        || (year(c, third) && first.len() <= 2 && second.len() <= 2 && (month_day(a, b) || month_day(b, a)))
}

/// A currency sign just before the number, or a currency word just after it.
fn amount(before: &str, after: &str) -> bool {
    let sign = before.trim_end().chars().next_back().is_some_and(|character| "$€£¥₹₽₩".contains(character));
    let word =
        after.split_whitespace().next().map(|word| word.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase());
    sign || word.is_some_and(|word| CURRENCIES.contains(&word.as_str()))
}

/// An international phone number: `+` right before a run of 10 to 15 digits (longer than any code).
fn phone(before: &str, run: &Run) -> bool {
    before.ends_with('+') && (10..=15).contains(&run.digits)
}

/// A label word (or `#`) right before the number, and no code word among the few words before that.
fn labelled(before: &str) -> bool {
    let words: Vec<String> = before
        .split_whitespace()
        .map(|word| word.trim_matches(|c: char| !c.is_alphanumeric() && c != '-').to_lowercase())
        .filter(|word| !word.is_empty())
        .collect();
    let hash =
        before.trim_end().ends_with('#') || before.trim_end().ends_with("no.") || before.trim_end().ends_with("nr.");
    let label = hash || words.last().is_some_and(|word| LABELS.contains(&word.as_str()));
    let reach = words.len().saturating_sub(CODE_WORD_REACH_WORDS + 1);
    let code_word = words[reach..].iter().any(|word| CODE_WORDS.contains(&word.as_str()));
    label && !code_word
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

    // Proves (issue 15, item 13) a code is a code in any spelling: fullwidth or other scripts' digits, dots, slashes
    // or underscores between digits, invisible characters inside it.
    #[test]
    fn other_spellings_of_a_code_are_codes() {
        assert!(looks_like_code("١٢٣٤٥٦٧٨"));
        assert!(looks_like_code("４８２１３３７７"));
        assert!(looks_like_code("é123456"));
        assert!(looks_like_code("4821.3377"));
        assert!(looks_like_code("4821/3377"));
        assert!(looks_like_code("48_15_16_23"));
        assert!(looks_like_code("4821\u{200b}3377"));
        assert!(looks_like_code("48\u{a0}21\u{a0}33\u{a0}77"));
    }

    // Proves (issue 15, item 18) other numbers are told from codes by their shape and context: dates, amounts,
    // international phone numbers and labelled order numbers pass; a code word before a labelled number, or a date
    // that cannot exist, does not.
    #[test]
    fn dates_amounts_phones_and_order_numbers_are_not_codes() {
        for honest in [
            "born 1987-05-13",
            "since 13.05.1987",
            "on 05/13/1987 and 2024/12/31",
            "paid $1234.56 last week",
            "refund of 123456.78 EUR",
            "my old number +44 20 7946 0958",
            "order 12345678 never arrived",
            "ticket #98765432",
            "invoice no. 20240001",
            "invoice INV-2026-000123",
            "PO1234567 from AS13335",
        ] {
            assert!(!looks_like_code(honest), "{honest}");
        }
        for code in [
            "order code 48151623",
            "born 1987-13-45",
            "+48151623",
            "pin for order 12345678",
            "the code 123456 $",
            "OTP-123456",
        ] {
            assert!(looks_like_code(code), "{code}");
        }
    }
}
