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
        if path.exists() {
            return Keys::load(path);
        }
        // Written whole to a private temporary file, then linked into place, which fails if another process got
        // there first: nobody ever reads a half-written key file, and two processes opening a fresh data directory
        // at once end up with the same keys.
        let mut bytes = [0u8; 64];
        rand::rng().fill_bytes(&mut bytes);
        let temporary = path.with_extension(format!("new-{}", std::process::id()));
        let _ = std::fs::remove_file(&temporary);
        write_private(&temporary, &hex::encode(bytes))?;
        let linked = std::fs::hard_link(&temporary, path);
        let _ = std::fs::remove_file(&temporary);
        match linked {
            Ok(()) => Ok(Keys::from_bytes(&bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Keys::load(path),
            Err(error) => Err(error),
        }
    }

    fn load(path: &Path) -> std::io::Result<Keys> {
        let text = std::fs::read_to_string(path)?;
        let bytes = hex::decode(text.trim())
            .ok()
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
            .ok_or_else(|| std::io::Error::other(format!("{} is not a 64-byte hex key file", path.display())))?;
        Ok(Keys::from_bytes(&bytes))
    }

    /// The token of a link for one purpose (`cancel`, `set-password`) and its parts, each after a NUL (no part holds
    /// one), so that no two lists of parts sign the same bytes.
    fn link_token(&self, purpose: &str, parts: &[&str]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.link).expect("HMAC accepts a key of any length");
        mac.update(purpose.as_bytes());
        for part in parts {
            mac.update(b"\0");
            mac.update(part.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }

    fn link_token_valid(&self, purpose: &str, parts: &[&str], token: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.link_token(purpose, parts).as_bytes().ct_eq(token.as_bytes()).into()
    }

    /// `payload` sealed for `purpose`: readable by anyone who holds it (base64url), changed by nobody without the link
    /// key. For state a browser carries between two requests (an OpenID Connect flow, what a sign-in proved).
    pub fn seal(&self, purpose: &str, payload: &[u8]) -> String {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
        let tag = self.link_token(purpose, &[&encoded]);
        format!("{encoded}.{tag}")
    }

    /// The payload of `sealed`, if it was sealed with this key for `purpose` (checked in constant time).
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        use base64::Engine;
        let (encoded, tag) = sealed.split_once('.')?;
        if !self.link_token_valid(purpose, &[encoded], tag) {
            return None;
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok()
    }

    /// The token in a cancel link for one case and one destination.
    pub fn cancel_token(&self, case_id: &str, destination_id: &str) -> String {
        self.link_token("cancel", &[case_id, destination_id])
    }

    /// Checks a cancel token in constant time.
    pub fn cancel_token_valid(&self, case_id: &str, destination_id: &str, token: &str) -> bool {
        self.link_token_valid("cancel", &[case_id, destination_id], token)
    }

    /// The token in a set-password link for one case and one destination, usable until `until_ms`.
    pub fn set_password_token(&self, case_id: &str, destination_id: &str, until_ms: u64) -> String {
        self.link_token("set-password", &[case_id, destination_id, &until_ms.to_string()])
    }

    /// Checks a set-password token in constant time.
    pub fn set_password_token_valid(&self, case_id: &str, destination_id: &str, until_ms: u64, token: &str) -> bool {
        self.link_token_valid("set-password", &[case_id, destination_id, &until_ms.to_string()], token)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
