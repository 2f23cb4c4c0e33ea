//! The SMTP notifier: sends each email message through a mail server (a relay or submission service) with lettre's
//! blocking transport, one connection per message. TLS is required except to this machine's own loopback.
//!
//! Delivery is at-least-once. When the connection drops after the server accepted a message but before its answer
//! arrived, `send` fails and the caller retries, so the message can arrive twice. Every attempt therefore carries the
//! same `Message-ID` header, derived only from the case and the message id, which lets receivers recognise the copy.
//! This module never logs, and no error it returns contains the body, which may hold a one-time code or cancel link.

use crate::core::account::{DestinationKind, mask_address};
use crate::core::ids::CaseId;
use crate::notify::{Message, Notifier, NotifyError, mask_codes};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, SmtpTransport, Transport};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// How long one network step (connect, each command, each answer) may take by default. `send` blocks its caller,
/// so a mail server that stops answering must not hold it for lettre's own default of a minute.
pub const SMTP_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Below this a healthy server on another continent would look down.
pub const SMTP_TIMEOUT_MS_MIN: u64 = 100;

/// Above this a hung server blocks the service's effects for longer than any person waits for a code.
pub const SMTP_TIMEOUT_MS_MAX: u64 = 60_000;

const _: () = assert!(SMTP_TIMEOUT_MS_MIN <= SMTP_TIMEOUT_MS_DEFAULT && SMTP_TIMEOUT_MS_DEFAULT <= SMTP_TIMEOUT_MS_MAX);

/// A configuration URL is a few hundred bytes; a longer one is a mistake, refused before it is looked at.
pub const SMTP_URL_BYTES_MAX: usize = 2_048;

/// RFC 5322 caps a header line at 998 characters. A readable `Message-ID` longer than this (only possible with very
/// long, escaped ids) is replaced by a hash of the same inputs, which is just as deterministic.
const MESSAGE_ID_HEADER_BYTES_MAX: usize = 900;

/// An error text containing a word of the body at least this long is taken to quote the message: a one-time code
/// has `CODE_DIGITS` digits, and a cancel link or its token is longer still. Shorter words are too common to tell.
const BODY_WORD_CHARS_QUOTED_MIN: usize = crate::core::limits::CODE_DIGITS;

/// How the connection to the mail server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS at all (`smtp://`). Allowed only to a loopback host, such as a local relay or a test server.
    Plaintext,
    /// A plain connection upgraded with STARTTLS before anything else is sent (`smtp+starttls://`, port 587). A
    /// server that does not offer STARTTLS gets nothing: there is no fallback to plaintext.
    StartTls,
    /// TLS from the first byte (`smtps://`, port 465).
    ImplicitTls,
}

impl SmtpSecurity {
    /// The port each kind of connection conventionally uses.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Plaintext => 25,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::ImplicitTls => 465,
        }
    }
}

/// Where and how to hand messages to a mail server. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// A host name or an IP address (IPv6 without brackets). Also the name the server's certificate must match.
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Username and password for AUTH, when the server asks for them.
    pub credentials: Option<SmtpCredentials>,
    /// The sender, `airlock@example.com` or `Airlock <airlock@example.com>`. Its domain also ends every Message-ID,
    /// so that ids from two deployments never collide at a receiver that both write to.
    pub from: String,
    /// The limit on each network step, not on the whole delivery (a server that answers slowly but steadily can
    /// take longer in total). Name resolution is not covered: it uses the system resolver's own timeouts.
    pub timeout: Duration,
}

/// Credentials for SMTP AUTH. The password is shown by no `Debug` and no error of this module.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SmtpCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SmtpCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("credentials", &self.credentials)
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a configuration was refused; each is fixed by changing the configuration, never by retrying. No variant
/// carries the password.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    /// `smtp://` to a host that is not loopback: choose `smtps://` or `smtp+starttls://`.
    #[error(
        "refusing plaintext SMTP to {host}: without TLS the codes, links and password cross the network readable; \
         use smtps:// (implicit TLS) or smtp+starttls://, or plaintext only to 127.0.0.1, ::1 or localhost"
    )]
    PlaintextToRemoteHost { host: String },
    /// The URL does not have the documented shape; the text names the part that is wrong.
    #[error(
        "invalid SMTP URL: {0} (expected smtp://, smtp+starttls:// or smtps://[user[:password]@]host[:port]?from=ADDRESS[&timeout_ms=N])"
    )]
    InvalidUrl(String),
    /// A field is out of range or malformed (host, port, timeout, user name, sender).
    #[error("invalid SMTP configuration: {0}")]
    Invalid(String),
    /// The TLS client could not be set up for this host (for example a host that is not a valid server name).
    #[error("cannot prepare TLS for {host}: {reason}")]
    Tls { host: String, reason: String },
}

impl SmtpConfig {
    /// A configuration with the conventional port of `security` and the default timeout, without credentials.
    pub fn new(host: impl Into<String>, security: SmtpSecurity, from: impl Into<String>) -> SmtpConfig {
        SmtpConfig {
            host: host.into(),
            port: security.default_port(),
            security,
            credentials: None,
            from: from.into(),
            timeout: Duration::from_millis(SMTP_TIMEOUT_MS_DEFAULT),
        }
    }

    /// Parses `scheme://[user[:password]@]host[:port][/]?from=ADDRESS[&timeout_ms=N]`, where the scheme is `smtp`
    /// (plaintext, loopback only), `smtp+starttls` or `smtps`. An IPv6 host goes in brackets. The user, password
    /// and sender may be percent-encoded. A password on a command line is visible to other local users, so prefer
    /// setting `credentials` from a file or the environment. Errors quote no part of the user information.
    pub fn parse(url: &str) -> Result<SmtpConfig, SmtpConfigError> {
        let invalid = |reason: &str| SmtpConfigError::InvalidUrl(reason.to_string());
        if url.len() > SMTP_URL_BYTES_MAX {
            return Err(invalid(&format!("longer than {SMTP_URL_BYTES_MAX} bytes")));
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let security = match scheme.to_ascii_lowercase().as_str() {
            "smtp" => SmtpSecurity::Plaintext,
            "smtp+starttls" => SmtpSecurity::StartTls,
            "smtps" => SmtpSecurity::ImplicitTls,
            other => return Err(invalid(&format!("unknown scheme {other:?}"))),
        };
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains('/') {
            return Err(invalid("a path is not allowed"));
        }
        let (user_information, host_and_port) = match authority.rsplit_once('@') {
            Some((user_information, host_and_port)) => (Some(user_information), host_and_port),
            None => (None, authority),
        };
        let (host, port) = split_host_and_port(host_and_port)?;
        let mut config = SmtpConfig::new(host, security, "");
        config.port = port.unwrap_or(security.default_port());
        if let Some(user_information) = user_information {
            let (username, password) = user_information.split_once(':').unwrap_or((user_information, ""));
            let username = percent_decode(username).ok_or_else(|| invalid("the user name is badly percent-encoded"))?;
            let password = percent_decode(password).ok_or_else(|| invalid("the password is badly percent-encoded"))?;
            config.credentials = Some(SmtpCredentials { username, password });
        }
        apply_query(&mut config, query)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks everything that can be checked without the network. `SmtpNotifier::new` calls it too, so a
    /// configuration built field by field is held to the same rules as a parsed one.
    pub fn validate(&self) -> Result<(), SmtpConfigError> {
        let invalid = |reason: String| Err(SmtpConfigError::Invalid(reason));
        if self.host.is_empty() || self.host.chars().any(|character| character.is_whitespace() || character == '/') {
            return invalid(format!("the host {:?} is empty or not a host name", self.host));
        }
        if self.port == 0 {
            return invalid("the port must not be 0".to_string());
        }
        let timeout_ms = self.timeout.as_millis();
        if timeout_ms < u128::from(SMTP_TIMEOUT_MS_MIN) || timeout_ms > u128::from(SMTP_TIMEOUT_MS_MAX) {
            return invalid(format!(
                "the timeout must be between {SMTP_TIMEOUT_MS_MIN} and {SMTP_TIMEOUT_MS_MAX} ms, not {timeout_ms} ms"
            ));
        }
        if self.credentials.as_ref().is_some_and(|credentials| credentials.username.is_empty()) {
            return invalid("the user name is empty".to_string());
        }
        if let Err(error) = self.from.parse::<Mailbox>() {
            return invalid(format!("the sender {:?} is not an email address ({error})", self.from));
        }
        match self.security {
            SmtpSecurity::Plaintext if !is_loopback(&self.host) => {
                Err(SmtpConfigError::PlaintextToRemoteHost { host: self.host.clone() })
            }
            SmtpSecurity::Plaintext | SmtpSecurity::StartTls | SmtpSecurity::ImplicitTls => Ok(()),
        }
    }
}

impl std::str::FromStr for SmtpConfig {
    type Err = SmtpConfigError;

    fn from_str(url: &str) -> Result<SmtpConfig, SmtpConfigError> {
        SmtpConfig::parse(url)
    }
}

/// Plaintext is allowed only to these, because traffic to them never leaves the machine.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|address| address.is_loopback())
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_and_port(text: &str) -> Result<(String, Option<u16>), SmtpConfigError> {
    let invalid = |reason: &str| SmtpConfigError::InvalidUrl(reason.to_string());
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(|| invalid("an unclosed '[' around the host"))?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(|| invalid("text after the ']' of the host"))?)),
        }
    } else if text.matches(':').count() > 1 {
        return Err(invalid("an IPv6 host must be written in brackets, like [::1]:2525"));
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let port = match port {
        Some(port) => Some(
            port.parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| invalid(&format!("the port {port:?} is not a number from 1 to 65535")))?,
        ),
        None => None,
    };
    Ok((host.to_string(), port))
}

/// `from` (required) and `timeout_ms`; anything else, or a repeat, is refused rather than ignored.
fn apply_query(config: &mut SmtpConfig, query: &str) -> Result<(), SmtpConfigError> {
    let invalid = |reason: String| SmtpConfigError::InvalidUrl(reason);
    let (mut from, mut timeout_ms) = (None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) =
            pair.split_once('=').ok_or_else(|| invalid(format!("the parameter {pair:?} has no value")))?;
        let slot = match key {
            "from" => &mut from,
            "timeout_ms" => &mut timeout_ms,
            other => return Err(invalid(format!("unknown parameter {other:?} (known: from, timeout_ms)"))),
        };
        if slot.is_some() {
            return Err(invalid(format!("the parameter {key:?} is given twice")));
        }
        *slot = Some(percent_decode(value).ok_or_else(|| invalid(format!("the parameter {key:?} is badly encoded")))?);
    }
    config.from = from.ok_or_else(|| invalid("no sender: add ?from=airlock@example.com".to_string()))?;
    if let Some(text) = timeout_ms {
        let milliseconds: u64 = text.parse().map_err(|_| invalid(format!("timeout_ms {text:?} is not a number")))?;
        config.timeout = Duration::from_millis(milliseconds);
    }
    Ok(())
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Sends email messages through one mail server. Holds no connection between messages.
pub struct SmtpNotifier {
    config: SmtpConfig,
    from: Mailbox,
    transport: SmtpTransport,
}

impl std::fmt::Debug for SmtpNotifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SmtpNotifier").field("config", &self.config).finish()
    }
}

impl SmtpNotifier {
    /// Checks the configuration and prepares TLS (loading the system's root certificates). Nothing is sent yet: a
    /// server that is down shows up on the first `send`.
    pub fn new(config: SmtpConfig) -> Result<SmtpNotifier, SmtpConfigError> {
        config.validate()?;
        let from: Mailbox = config.from.parse().expect("validate parsed the sender");
        let tls_parameters = || {
            TlsParameters::new(config.host.clone())
                .map_err(|error| SmtpConfigError::Tls { host: config.host.clone(), reason: error.to_string() })
        };
        let tls = match config.security {
            SmtpSecurity::Plaintext => Tls::None,
            SmtpSecurity::StartTls => Tls::Required(tls_parameters()?),
            SmtpSecurity::ImplicitTls => Tls::Wrapper(tls_parameters()?),
        };
        let mut builder = SmtpTransport::builder_dangerous(config.host.as_str())
            .port(config.port)
            .tls(tls)
            .timeout(Some(config.timeout));
        if let Some(credentials) = &config.credentials {
            builder = builder.credentials(Credentials::new(credentials.username.clone(), credentials.password.clone()));
        }
        Ok(SmtpNotifier { transport: builder.build(), from, config })
    }

    /// The email for one message, or why it cannot be one.
    fn email(&self, message: &Message) -> Result<lettre::Message, NotifyError> {
        let refuse = |reason: String| NotifyError::Unavailable(format!("message {}: {reason}", message.message_id));
        match message.kind {
            DestinationKind::Email => {}
            DestinationKind::Phone => {
                return Err(refuse("SMTP delivers only to email destinations, and this one is a phone".to_string()));
            }
        }
        let to: Address = message.address.parse().map_err(|_| {
            refuse(format!("{} is not a valid email address", mask_address(message.kind, &message.address)))
        })?;
        lettre::Message::builder()
            .message_id(Some(message_id_header(&message.case_id, &message.message_id, self.from.email.domain())))
            .date(SystemTime::UNIX_EPOCH + Duration::from_millis(message.sent_at.0))
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(single_line(&message.subject))
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.clone())
            .map_err(|error| refuse(format!("cannot build the email: {}", self.redact(&error.to_string(), message))))
    }

    /// An error text that is safe to log. A server's reply may quote the message (some rejections echo the
    /// content), so when the text contains the body or any long word of it, everything after the status is
    /// withheld; the password is removed and anything shaped like a one-time code is masked in any case.
    fn redact(&self, text: &str, message: &Message) -> String {
        let quotes_body = (!message.body.is_empty() && text.contains(&message.body))
            || message
                .body
                .split_whitespace()
                .any(|word| word.chars().count() >= BODY_WORD_CHARS_QUOTED_MIN && text.contains(word));
        let mut text = if quotes_body {
            // lettre writes `<kind> (<code>): <detail>`, so the head keeps the status and drops the quote.
            let head = text.split_once(": ").map_or("error", |(head, _)| head);
            format!("{head}: [the reply quoted the message and is withheld]")
        } else {
            text.to_string()
        };
        if let Some(credentials) =
            self.config.credentials.as_ref().filter(|credentials| !credentials.password.is_empty())
        {
            text = text.replace(&credentials.password, "[password]");
        }
        mask_codes(&text)
    }
}

impl Notifier for SmtpNotifier {
    /// One connection, one message. `Ok` means the server accepted it; a failure may still have been delivered (see
    /// the module comment), and a retry sends the same Message-ID.
    fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let email = self.email(message)?;
        self.transport.send(&email).map(|_| ()).map_err(|error| {
            let timed_out = if timed_out(&error) {
                format!(" (no answer within {} ms)", self.config.timeout.as_millis())
            } else {
                String::new()
            };
            NotifyError::Unavailable(format!(
                "message {}: SMTP delivery via {}:{} failed{timed_out}: {}",
                message.message_id,
                self.config.host,
                self.config.port,
                self.redact(&error.to_string(), message)
            ))
        })
    }
}

/// Whether a network step ran out of time. On Linux a socket read timeout surfaces as `WouldBlock` ("Resource
/// temporarily unavailable"), which lettre's own `is_timeout` does not recognise, so both kinds are looked for.
fn timed_out(error: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io_error) = cause.downcast_ref::<std::io::Error>() {
            return matches!(io_error.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock);
        }
        source = cause.source();
    }
    false
}

/// `<case.message@domain>`, with both ids escaped into the characters a Message-ID allows. The case is included
/// because message ids restart when a log is recreated; the domain is the sender's, so two deployments differ.
fn message_id_header(case_id: &CaseId, message_id: &str, domain: &str) -> String {
    // The service always names both; an empty one would make an invalid header, so it is a bug upstream.
    assert!(!case_id.as_str().is_empty() && !message_id.is_empty(), "a message has a case id and a message id");
    let readable = format!("<{}.{}@{domain}>", id_atom(case_id.as_str()), id_atom(message_id));
    if readable.len() <= MESSAGE_ID_HEADER_BYTES_MAX {
        return readable;
    }
    let mut hasher = Sha256::new();
    for part in [case_id.as_str(), message_id] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    format!("<sha256-{}@{domain}>", hex::encode(hasher.finalize()))
}

/// Keeps letters, digits, `-`, `_` and `/`; every other byte becomes `=XX`. Distinct ids stay distinct, and the
/// result never holds a `.`, so the `.` between the two ids in `message_id_header` is unambiguous.
fn id_atom(text: &str) -> String {
    let mut atom = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'/') {
            atom.push(char::from(byte));
        } else {
            atom.push_str(&format!("={byte:02X}"));
        }
    }
    atom
}

/// A subject is one header line: control characters (a line break could start a forged header) become spaces.
fn single_line(subject: &str) -> String {
    subject.chars().map(|character| if character.is_control() { ' ' } else { character }).collect()
}
