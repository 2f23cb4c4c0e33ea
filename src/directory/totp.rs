//! Authenticator codes (TOTP, RFC 6238, over HOTP, RFC 4226, with HMAC-SHA1 as every authenticator app uses). The
//! secret lives in the directory and never leaves it: airlock's core only learns whether a typed code was valid.
//! A code is accepted once: the directory remembers the last time step it accepted for the account and refuses that
//! step and any earlier one (RFC 6238 section 5.2).

use crate::core::ids::UnixMs;
use crate::core::limits::{
    TOTP_DIGITS, TOTP_SECRET_BYTES_MAX, TOTP_SECRET_BYTES_MIN, TOTP_SKEW_STEPS_MAX, TOTP_STEP_MS,
};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// An authenticator's shared secret. `Debug` is redacted; there is no `Display` and no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TotpSecret(<redacted>)")
    }
}

impl TotpSecret {
    pub fn from_bytes(bytes: Vec<u8>) -> Result<TotpSecret, String> {
        if !(TOTP_SECRET_BYTES_MIN..=TOTP_SECRET_BYTES_MAX).contains(&bytes.len()) {
            return Err(format!(
                "an authenticator secret must be {TOTP_SECRET_BYTES_MIN} to {TOTP_SECRET_BYTES_MAX} bytes, not {}",
                bytes.len()
            ));
        }
        Ok(TotpSecret(bytes))
    }

    /// Reads the base32 text (RFC 4648, as in `otpauth://` links) an authenticator app was enrolled with. Spaces and
    /// padding are ignored, letters may be in either case. The error never repeats the text.
    pub fn from_base32(text: &str) -> Result<TotpSecret, String> {
        let mut bytes = Vec::with_capacity(text.len() * 5 / 8);
        let (mut buffer, mut bits) = (0u32, 0u32);
        for (position, character) in text.chars().enumerate() {
            let value = match character.to_ascii_uppercase() {
                letter @ 'A'..='Z' => letter as u32 - 'A' as u32,
                digit @ '2'..='7' => digit as u32 - '2' as u32 + 26,
                ' ' | '=' => continue,
                _ => return Err(format!("character {} is not base32 (A-Z, 2-7)", position + 1)),
            };
            buffer = (buffer << 5) | value;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                bytes.push((buffer >> bits) as u8);
                buffer &= (1 << bits) - 1;
            }
        }
        TotpSecret::from_bytes(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The HOTP value (RFC 4226 section 5.3) for `counter`, as `digits` decimal digits with leading zeros.
pub fn hotp(secret: &TotpSecret, counter: u64, digits: usize) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(&secret.0).expect("HMAC accepts a key of any length");
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[hash.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([hash[offset] & 0x7f, hash[offset + 1], hash[offset + 2], hash[offset + 3]]);
    let modulus = 10u64.pow(digits as u32);
    format!("{:0digits$}", u64::from(binary) % modulus)
}

/// The time step `at` falls in.
pub fn step_at(at: UnixMs) -> u64 {
    at.0 / TOTP_STEP_MS
}

/// The step whose code `typed` is, within `TOTP_SKEW_STEPS_MAX` of `now` and after `last_used_step`, if any. Every
/// candidate is compared, in constant time, so the time taken does not say which step (or how much) matched.
pub fn matching_step(secret: &TotpSecret, typed: &str, now: UnixMs, last_used_step: Option<u64>) -> Option<u64> {
    let digits: String = typed.chars().filter(|character| !character.is_whitespace()).collect();
    if digits.len() != TOTP_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let now_step = step_at(now);
    let mut found = None;
    for step in now_step.saturating_sub(TOTP_SKEW_STEPS_MAX)..=now_step + TOTP_SKEW_STEPS_MAX {
        let same: bool = hotp(secret, step, TOTP_DIGITS).as_bytes().ct_eq(digits.as_bytes()).into();
        let fresh = last_used_step.is_none_or(|last| step > last);
        if same && fresh && found.is_none() {
            found = Some(step);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec()).expect("20 bytes")
    }

    // Proves the HOTP/TOTP arithmetic against RFC 6238 appendix B (SHA-1 rows, 8 digits).
    #[test]
    fn rfc_6238_test_vectors() {
        for (seconds, expected) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(hotp(&rfc_secret(), step_at(UnixMs(seconds * 1000)), 8), expected, "at {seconds} s");
        }
    }

    // Proves codes are accepted within one step either side, refused further away, and never twice.
    #[test]
    fn window_and_single_use() {
        let secret = rfc_secret();
        let now = UnixMs(1_111_111_111_000);
        let code = |step: u64| hotp(&secret, step, TOTP_DIGITS);
        let current = step_at(now);
        assert_eq!(matching_step(&secret, &code(current), now, None), Some(current));
        assert_eq!(matching_step(&secret, &code(current - 1), now, None), Some(current - 1));
        assert_eq!(matching_step(&secret, &code(current + 1), now, None), Some(current + 1));
        assert_eq!(matching_step(&secret, &code(current - 2), now, None), None);
        assert_eq!(matching_step(&secret, &code(current), now, Some(current)), None, "a used step is refused");
        assert_eq!(matching_step(&secret, &code(current - 1), now, Some(current - 1)), None);
        assert_eq!(matching_step(&secret, "12345", now, None), None);
        assert_eq!(matching_step(&secret, "abcdef", now, None), None);
    }

    // Proves base32 decoding matches RFC 4648's example and that bad input is refused without being echoed.
    #[test]
    fn base32() {
        let secret = TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").expect("valid");
        assert_eq!(secret.as_bytes(), b"12345678901234567890");
        assert_eq!(TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").expect("valid"), secret);
        let error = TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1").expect_err("1 is not base32");
        assert!(error.contains("character 32") && !error.contains("GEZD"), "{error}");
        assert!(TotpSecret::from_base32("GEZDGNBV").is_err(), "too short a secret");
        assert_eq!(format!("{secret:?}"), "TotpSecret(<redacted>)");
    }
}
