//! The service's secret keys: one for hashing verification codes, one for signing cancel links. In embedded mode
//! they live in a key file beside the data (mode 0600), created on first use; they are never logged or stored in
//! events, and their `Debug` is redacted.

use crate::core::verification::CodeKey;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use std::path::Path;

#[derive(Clone)]
pub struct Keys {
    pub code: CodeKey,
    link: [u8; 32],
}

impl fmt::Debug for Keys {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Keys(<redacted>)")
    }
}

impl Keys {
    /// Fresh random keys (the demo, tests).
    pub fn generate() -> Keys {
        let mut bytes = [0u8; 64];
        rand::rng().fill_bytes(&mut bytes);
        Keys::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8; 64]) -> Keys {
        let mut code = [0u8; 32];
        let mut link = [0u8; 32];
        code.copy_from_slice(&bytes[..32]);
        link.copy_from_slice(&bytes[32..]);
        Keys { code: CodeKey::from_bytes(code), link }
    }

    /// Reads the key file, or creates it (readable by the owner only) if it does not exist.
    pub fn load_or_create(path: &Path) -> std::io::Result<Keys> {
        if let Ok(text) = std::fs::read_to_string(path) {
            let bytes = hex::decode(text.trim())
                .ok()
                .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
                .ok_or_else(|| std::io::Error::other(format!("{} is not a 64-byte hex key file", path.display())))?;
            return Ok(Keys::from_bytes(&bytes));
        }
        let mut bytes = [0u8; 64];
        rand::rng().fill_bytes(&mut bytes);
        write_private(path, &hex::encode(bytes))?;
        Ok(Keys::from_bytes(&bytes))
    }

    /// The token in a cancel link for one case and one destination.
    pub fn cancel_token(&self, case_id: &str, destination_id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.link).expect("HMAC accepts a key of any length");
        mac.update(b"cancel\0");
        mac.update(case_id.as_bytes());
        mac.update(b"\0");
        mac.update(destination_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks a cancel token in constant time.
    pub fn cancel_token_valid(&self, case_id: &str, destination_id: &str, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.cancel_token(case_id, destination_id);
        expected.as_bytes().ct_eq(token.as_bytes()).into()
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
