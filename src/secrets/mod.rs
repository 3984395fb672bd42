//! Secret settings: where each value comes from, and what makes one valid.
//!
//! A secret setting `NAME` is read, in order, from:
//! - `NAME_FILE=/path`: the file's contents without trailing newlines, as
//!   the official postgres image reads its `_FILE` variables;
//! - `NAME` itself;
//! - `$CREDENTIALS_DIRECTORY/NAME`, systemd's credentials (`LoadCredential=`).
//!
//! Setting both `NAME` and `NAME_FILE` is an error. A value read from a file
//! is re-read when the file changes ([`rotating`]), so a rotated secret
//! takes effect without a restart; one from the environment never changes.
//!
//! SECURITY: a value never reaches a log line, an error message, `Debug`
//! output or `/metrics`. Errors name the variable and the file, never what
//! it holds; [`Redacted`] prints as `<redacted>`.

pub mod rotating;

use std::fmt;
use std::path::{Path, PathBuf};

use hyper::header::{HeaderName, HeaderValue};

use crate::hex::percent_decode;

/// The secret settings pulse reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// `PULSE_METRICS_TOKEN`: the bearer token `/metrics` requires.
    MetricsToken,
    /// `OTEL_EXPORTER_OTLP_HEADERS`: headers sent with every span export.
    OtlpHeaders,
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`: the same for traces only; wins
    /// over the general one, as the OpenTelemetry spec says.
    OtlpTracesHeaders,
    /// `PULSE_DATABASE_URL`: the PostgreSQL URL; it may hold a password.
    DatabaseUrl,
    /// `PULSE_DATABASE_PASSWORD`: the database password, when it is kept
    /// apart from the URL (a compose secret, a Kubernetes Secret key).
    DatabasePassword,
}

impl SecretKind {
    pub const ALL: [SecretKind; 5] = [
        SecretKind::MetricsToken,
        SecretKind::OtlpHeaders,
        SecretKind::OtlpTracesHeaders,
        SecretKind::DatabaseUrl,
        SecretKind::DatabasePassword,
    ];

    /// The variable, and the `secret` label of its metrics.
    pub fn name(self) -> &'static str {
        match self {
            SecretKind::MetricsToken => "PULSE_METRICS_TOKEN",
            SecretKind::OtlpHeaders => "OTEL_EXPORTER_OTLP_HEADERS",
            SecretKind::OtlpTracesHeaders => "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            SecretKind::DatabaseUrl => "PULSE_DATABASE_URL",
            // pragma: allowlist nextline secret (a variable name, not a value)
            SecretKind::DatabasePassword => "PULSE_DATABASE_PASSWORD",
        }
    }

    /// The variable that names a file holding the value.
    pub fn file_name(self) -> &'static str {
        match self {
            SecretKind::MetricsToken => "PULSE_METRICS_TOKEN_FILE",
            SecretKind::OtlpHeaders => "OTEL_EXPORTER_OTLP_HEADERS_FILE",
            SecretKind::OtlpTracesHeaders => "OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE",
            SecretKind::DatabaseUrl => "PULSE_DATABASE_URL_FILE",
            // pragma: allowlist nextline secret (a variable name, not a value)
            SecretKind::DatabasePassword => "PULSE_DATABASE_PASSWORD_FILE",
        }
    }

    /// What a value must be; the same words go into the error.
    pub fn allowed(self) -> &'static str {
        match self {
            SecretKind::MetricsToken => METRICS_TOKEN_ALLOWED,
            SecretKind::OtlpHeaders | SecretKind::OtlpTracesHeaders => OTLP_HEADERS_ALLOWED,
            SecretKind::DatabaseUrl => DATABASE_URL_ALLOWED,
            SecretKind::DatabasePassword => DATABASE_PASSWORD_ALLOWED,
        }
    }

    /// Checks a value, already stripped of trailing newlines.
    pub fn validate(self, value: &[u8]) -> Result<(), SecretError> {
        let valid = match self {
            SecretKind::MetricsToken => is_valid_token(value),
            SecretKind::OtlpHeaders | SecretKind::OtlpTracesHeaders => {
                otlp_headers(value).is_some()
            }
            // The URL's parts are checked where it is parsed
            // (`database::settings`), with the same rule for what is shown.
            SecretKind::DatabaseUrl => {
                value.starts_with(b"postgres://") || value.starts_with(b"postgresql://")
            }
            SecretKind::DatabasePassword => {
                (1..=1024).contains(&value.len())
                    && std::str::from_utf8(value).is_ok_and(|text| !text.contains(char::is_control))
            }
        };
        if valid {
            Ok(())
        } else {
            Err(SecretError::Invalid { kind: self })
        }
    }
}

const METRICS_TOKEN_ALLOWED: &str =
    "16 to 4096 visible ASCII characters, no spaces (e.g. from `openssl rand -hex 32`)";
const OTLP_HEADERS_ALLOWED: &str =
    "comma-separated key=value pairs, values percent-encoded, e.g. api-key=abc123,x-tenant=blue";

const DATABASE_URL_ALLOWED: &str = "a libpq URI, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require|verify-ca|verify-full&sslrootcert=FILE]";
const DATABASE_PASSWORD_ALLOWED: &str = "1 to 1024 bytes of UTF-8 text without control characters";

fn is_valid_token(value: &[u8]) -> bool {
    (16..=4096).contains(&value.len()) && value.iter().all(|b| b.is_ascii_graphic())
}

/// The headers of an `OTEL_EXPORTER_OTLP_HEADERS` value, or None if any
/// pair is malformed. Empty means none. Every value is marked sensitive, so
/// `Debug` hides it and HTTP/2 would not index it.
pub fn otlp_headers(value: &[u8]) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let text = std::str::from_utf8(value).ok()?;
    let mut headers = Vec::new();
    for pair in text.split(',').filter(|pair| !pair.trim().is_empty()) {
        let (key, value) = pair.split_once('=')?;
        let name = HeaderName::from_bytes(key.trim().as_bytes()).ok()?;
        let mut value = HeaderValue::from_bytes(&percent_decode(value.trim())?).ok()?;
        value.set_sensitive(true);
        headers.push((name, value));
    }
    Some(headers)
}

/// A secret value held in memory: compared, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub Vec<u8>);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a secret setting's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The environment or `.env`: fixed for the process's life.
    Value(Redacted),
    /// A file (`NAME_FILE`, or systemd's credentials directory), re-read
    /// when it changes.
    File(PathBuf),
}

/// One configured secret setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSetting {
    pub kind: SecretKind,
    pub source: SecretSource,
    /// The value read and checked at startup.
    pub value: Redacted,
}

/// Why a secret setting cannot be used. Names the variable and the file;
/// never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// Both `NAME` and `NAME_FILE` are set.
    Twice { kind: SecretKind },
    /// The value (from wherever it came) is not what the setting allows.
    Invalid { kind: SecretKind },
    /// The value is of the right form, but its parts are not usable; the
    /// reason never quotes it.
    Rejected { kind: SecretKind, reason: String },
    /// The file cannot be read.
    Unreadable {
        kind: SecretKind,
        path: PathBuf,
        reason: String,
    },
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Twice { kind } => write!(
                f,
                "{} and {} are both set: set one (the value itself, or the file that holds it)",
                kind.name(),
                kind.file_name()
            ),
            SecretError::Invalid { kind } => write!(
                f,
                "{} is not valid (its value is a secret and not shown): expected {}",
                kind.name(),
                kind.allowed()
            ),
            SecretError::Rejected { kind, reason } => write!(
                f,
                "{} is not valid (its value is a secret and not shown): {reason}",
                kind.name()
            ),
            SecretError::Unreadable { kind, path, reason } => write!(
                f,
                "{} cannot be read from {}: {reason}",
                kind.name(),
                path.display()
            ),
        }
    }
}

impl std::error::Error for SecretError {}

/// Finds and checks the secret setting `kind` through `get` (the
/// environment, then `.env`). Reads a file now, so that a missing or bad
/// file stops pulse at startup instead of at its first use.
pub fn lookup(
    kind: SecretKind,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<SecretSetting>, SecretError> {
    let non_empty = |name: &str| get(name).filter(|value| !value.is_empty());
    let source = match (non_empty(kind.name()), non_empty(kind.file_name())) {
        (Some(_), Some(_)) => return Err(SecretError::Twice { kind }),
        (None, Some(path)) => SecretSource::File(PathBuf::from(path)),
        (Some(value), None) => SecretSource::Value(Redacted(value.into_bytes())),
        (None, None) => match non_empty("CREDENTIALS_DIRECTORY") {
            Some(dir) if Path::new(&dir).join(kind.name()).is_file() => {
                SecretSource::File(Path::new(&dir).join(kind.name()))
            }
            _ => return Ok(None),
        },
    };
    let value = match &source {
        SecretSource::Value(value) => value.0.clone(),
        SecretSource::File(path) => read(path).map_err(|e| SecretError::Unreadable {
            kind,
            path: path.clone(),
            reason: e.to_string(),
        })?,
    };
    kind.validate(&value)?;
    Ok(Some(SecretSetting {
        kind,
        source,
        value: Redacted(value),
    }))
}

/// A secret file's contents without trailing newlines (`\n` or `\r\n`):
/// `echo token > file` and editors add one.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut value = std::fs::read(path)?;
    while value.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        value.pop();
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup_in(vars: &[(&str, &str)]) -> Result<Option<SecretSetting>, SecretError> {
        lookup(SecretKind::MetricsToken, |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pulse-secret-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("PULSE_METRICS_TOKEN");
        std::fs::write(&path, contents).unwrap();
        path
    }

    const TOKEN: &str = "0123456789abcdef0123"; // pragma: allowlist secret (a test value)

    #[test]
    fn a_file_is_read_without_its_trailing_newline() {
        let path = temp_file("newline", &format!("{TOKEN}\r\n\n"));
        let setting = lookup_in(&[("PULSE_METRICS_TOKEN_FILE", path.to_str().unwrap())])
            .unwrap()
            .unwrap();
        assert_eq!(setting.source, SecretSource::File(path.clone()));
        assert_eq!(read(&path).unwrap(), TOKEN.as_bytes());
    }

    #[test]
    fn the_value_and_its_file_together_are_an_error_naming_both() {
        let path = temp_file("twice", TOKEN);
        let error = lookup_in(&[
            ("PULSE_METRICS_TOKEN", TOKEN),
            ("PULSE_METRICS_TOKEN_FILE", path.to_str().unwrap()),
        ])
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("PULSE_METRICS_TOKEN and PULSE_METRICS_TOKEN_FILE"),
            "{message}"
        );
    }

    #[test]
    fn systemd_credentials_are_read_when_nothing_else_is_set() {
        let path = temp_file("credentials", TOKEN);
        let dir = path.parent().unwrap().to_str().unwrap();
        let setting = lookup_in(&[("CREDENTIALS_DIRECTORY", dir)])
            .unwrap()
            .unwrap();
        assert_eq!(setting.source, SecretSource::File(path.clone()));
        // The variable wins over the directory.
        let setting = lookup_in(&[
            ("CREDENTIALS_DIRECTORY", dir),
            ("PULSE_METRICS_TOKEN", TOKEN),
        ])
        .unwrap()
        .unwrap();
        assert!(matches!(setting.source, SecretSource::Value(_)));
        assert_eq!(lookup_in(&[]).unwrap(), None);
    }

    #[test]
    fn errors_name_the_variable_and_file_but_never_the_value() {
        let weak = "short token";
        let path = temp_file("weak", weak);
        for error in [
            lookup_in(&[("PULSE_METRICS_TOKEN", weak)]).unwrap_err(),
            lookup_in(&[("PULSE_METRICS_TOKEN_FILE", path.to_str().unwrap())]).unwrap_err(),
        ] {
            let shown = format!("{error} {error:?}");
            assert!(shown.contains("PULSE_METRICS_TOKEN"), "{shown}");
            assert!(!shown.contains("short"), "{shown}");
        }
        let missing = lookup_in(&[("PULSE_METRICS_TOKEN_FILE", "/nonexistent/token")]).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/token"),
            "{missing}"
        );
        let setting = SecretSource::Value(Redacted(TOKEN.into()));
        assert!(!format!("{setting:?}").contains(TOKEN));
    }

    #[test]
    fn otlp_headers_are_pairs_with_percent_encoded_values() {
        let headers = otlp_headers(b"api-key=a%2Cb%3D, x-tenant = blue").unwrap();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0].0, "api-key");
        assert_eq!(headers[0].1, "a,b=");
        assert_eq!(headers[1].1, "blue");
        assert!(!format!("{headers:?}").contains("blue"));
        assert_eq!(otlp_headers(b"").unwrap(), Vec::new());
        for bad in [&b"novalue"[..], b"bad key=1", b"k=%zz", b"k=a\nb"] {
            assert!(
                otlp_headers(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_metrics_token_is_long_visible_ascii() {
        assert!(is_valid_token(TOKEN.as_bytes()));
        assert!(!is_valid_token(b"short"));
        assert!(!is_valid_token(b"0123456789 abcdef0123"));
        assert!(!is_valid_token("0123456789abcdef01é".as_bytes()));
    }
}
