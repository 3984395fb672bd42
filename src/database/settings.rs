//! The database settings, and the libpq URI they start from.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::config::{Host, SslMode};

use crate::secrets::SecretSetting;

/// What pulse needs to reach PostgreSQL; None in the config when
/// `PULSE_DATABASE_URL` is unset, and then the database routes are absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// `PULSE_DATABASE_URL`, read and parsed once at startup, with the
    /// `sslrootcert` file it names.
    pub connection: ParsedUrl,
    /// `PULSE_DATABASE_PASSWORD`: wins over the URL's password, and is
    /// re-read when its file changes, for the next new connection.
    pub password: Option<SecretSetting>,
    /// `PULSE_DATABASE_POOL_SIZE`: the most connections one pulse opens.
    pub pool_size: usize,
    /// `PULSE_DATABASE_TIMEOUT`: how long a request waits for a connection,
    /// and then for its query, before it is answered 503.
    pub timeout: Duration,
    /// `PULSE_DATABASE_READINESS`: whether `/readyz` follows the database
    /// after startup.
    pub readiness: Readiness,
    /// `PULSE_DATABASE_STATEMENTS`: prepared once per connection, or sent
    /// whole with every query.
    pub statements: Statements,
}

/// How queries reach PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statements {
    /// Each query is prepared once per connection (a named statement the
    /// pool keeps) and then only bound and executed: the least work per query.
    Prepared,
    /// Each query is sent whole, as an unnamed statement, with its
    /// parameters and their types, in one round trip. For a pooler in
    /// transaction mode (PgBouncer, Supavisor, and the poolers of managed
    /// databases), which hands each transaction to whichever server
    /// connection is free, so a statement prepared on one is missing on the
    /// next; the server then parses and plans the query every time.
    Unprepared,
}

/// When an unreachable database makes pulse unready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Only until the first connection and the migrations succeed. A later
    /// outage answers 503 on the database routes but keeps pulse in its load
    /// balancer: every replica failing its probe at once would turn a
    /// database blip into an outage of everything pulse serves.
    Startup,
    /// Whenever the last check failed.
    Always,
}

/// How the connection is encrypted: libpq's `sslmode` and `sslrootcert`,
/// which pulse reads itself (tokio-postgres knows only the first three
/// modes, and checks no certificate itself); `tls.rs` does what each means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    Disable,
    /// TLS if the server offers it, else plain; libpq's default.
    Prefer,
    /// TLS, with the server's certificate not checked.
    Require,
    /// TLS, with the certificate checked against `sslrootcert`'s CAs.
    VerifyCa(CaFile),
    /// As `VerifyCa`, and the certificate must name the host.
    VerifyFull(CaFile),
}

/// `sslrootcert`: the file, and the CA certificates read from it once, at
/// startup, so that a missing or unusable file is a bad setting (exit 2),
/// not a failure at the first connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    pub certificates: Vec<CertificateDer<'static>>,
}

impl CaFile {
    fn read(path: PathBuf) -> Result<CaFile, String> {
        let shown = path.display();
        let pem =
            std::fs::read(&path).map_err(|e| format!("sslrootcert={shown} cannot be read: {e}"))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("sslrootcert={shown} is not PEM certificates: {e}"))?;
        if certificates.is_empty() {
            return Err(format!("sslrootcert={shown} holds no certificate"));
        }
        let ca = CaFile { path, certificates };
        // What `tls.rs` will do with them, tried now.
        ca.roots()?;
        Ok(ca)
    }

    /// The certificates as the trust anchors rustls checks a server against.
    pub fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        for certificate in &self.certificates {
            roots.add(certificate.clone()).map_err(|e| {
                let shown = self.path.display();
                format!("sslrootcert={shown} holds a certificate that cannot be a CA: {e}")
            })?;
        }
        Ok(roots)
    }
}

/// A parsed `PULSE_DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    pub config: tokio_postgres::Config,
    pub tls: Tls,
}

/// Parses a libpq URI. The error says what is wrong without quoting the
/// URL, which may hold a password.
pub fn parse_url(url: &[u8]) -> Result<ParsedUrl, String> {
    let url = std::str::from_utf8(url).map_err(|_| "it is not UTF-8".to_owned())?;
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut sslmode = None;
    let mut root_cert = None;
    let mut passed_on = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("sslmode", mode) => sslmode = Some(mode),
            ("sslrootcert", path) => root_cert = Some(PathBuf::from(path)),
            _ => passed_on.push(pair),
        }
    }
    let tls = match (sslmode.unwrap_or("prefer"), root_cert) {
        ("disable", _) => Tls::Disable,
        ("prefer", _) => Tls::Prefer,
        ("require", _) => Tls::Require,
        ("verify-ca", Some(path)) => Tls::VerifyCa(CaFile::read(path)?),
        ("verify-full", Some(path)) => Tls::VerifyFull(CaFile::read(path)?),
        ("verify-ca" | "verify-full", None) => {
            return Err("sslmode=verify-ca and verify-full need sslrootcert=FILE, the CA certificates (PEM) to trust".to_owned());
        }
        (other, _) => {
            return Err(format!(
                "sslmode={other:?} is unknown: use disable, prefer, require, verify-ca or verify-full"
            ));
        }
    };
    let rebuilt = if passed_on.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", passed_on.join("&"))
    };
    // tokio-postgres's own message can quote the URL: only its kind is kept.
    let mut config = tokio_postgres::Config::from_str(&rebuilt).map_err(|_| {
        "it is not a libpq URI that tokio-postgres accepts (check the parameters after ?)"
            .to_owned()
    })?;
    if config.get_hosts().is_empty() {
        return Err("it names no host".to_owned());
    }
    if config
        .get_hosts()
        .iter()
        .any(|host| !matches!(host, Host::Tcp(_)))
        && matches!(tls, Tls::VerifyFull(_))
    {
        return Err("sslmode=verify-full needs a host name, not a Unix socket".to_owned());
    }
    if config.get_user().is_none_or(str::is_empty) {
        return Err("it names no user (postgres://USER@HOST/DATABASE)".to_owned());
    }
    if config.get_dbname().is_none() {
        return Err("it names no database (postgres://USER@HOST/DATABASE)".to_owned());
    }
    // pulse chooses TLS itself (see `Tls`); tokio-postgres only asks for it.
    // Over Unix sockets PostgreSQL offers no TLS, and libpq ignores sslmode
    // there: so does pulse, or `require` could never connect.
    let unix_only = config
        .get_hosts()
        .iter()
        .all(|host| !matches!(host, Host::Tcp(_)));
    config.ssl_mode(match tls {
        Tls::Disable => SslMode::Disable,
        _ if unix_only => SslMode::Disable,
        Tls::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    if config.get_application_name().is_none() {
        config.application_name("pulse");
    }
    Ok(ParsedUrl { config, tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_libpq_uri_gives_its_parts_and_tls_mode() {
        let parsed = parse_url(
            // pragma: allowlist nextline secret (a test value)
            b"postgres://pulse:pw@db.example:6432/notes?sslmode=disable&connect_timeout=3",
        ) // pragma: allowlist secret (a test value)
        .unwrap();
        assert_eq!(parsed.config.get_user(), Some("pulse"));
        assert_eq!(parsed.config.get_dbname(), Some("notes"));
        assert_eq!(parsed.config.get_ports(), &[6432]);
        assert_eq!(
            parsed.config.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        assert_eq!(parsed.tls, Tls::Disable);
        assert_eq!(parsed.config.get_application_name(), Some("pulse"));
        let default = parse_url(b"postgresql://u@localhost/db").unwrap();
        assert_eq!(default.tls, Tls::Prefer);
        assert_eq!(default.config.get_ssl_mode(), SslMode::Prefer);
    }

    #[test]
    fn sslmode_is_ignored_over_unix_sockets_as_libpq_does() {
        for mode in ["prefer", "require"] {
            let url = format!("postgresql://u@/db?host=/run/postgresql&sslmode={mode}");
            let parsed = parse_url(url.as_bytes()).unwrap();
            assert_eq!(parsed.config.get_ssl_mode(), SslMode::Disable, "{mode}");
        }
        // With a TCP host in the list as well, TLS stays asked for.
        let mixed = parse_url(b"postgresql://u@db.example/db?host=/run/postgresql&sslmode=require")
            .unwrap();
        assert_eq!(mixed.config.get_hosts().len(), 2);
        assert_eq!(mixed.config.get_ssl_mode(), SslMode::Require);
    }

    #[test]
    fn a_bad_url_says_what_is_wrong_without_quoting_it() {
        for (url, expected) in [
            (
                // pragma: allowlist nextline secret (a test value)
                &b"postgres://u:hunter2@h/db?sslmode=verify-full"[..],
                "sslrootcert",
            ), // pragma: allowlist secret (a test value)
            (b"postgres://u:hunter2@h/db?sslmode=allow", "unknown"), // pragma: allowlist secret (a test value)
            (b"postgres://u:hunter2@h/db?bogus=1", "libpq URI"), // pragma: allowlist secret (a test value)
            (b"postgres://:hunter2@h/db", "no user"), // pragma: allowlist secret (a test value)
            (b"postgres://u:hunter2@h", "no database"), // pragma: allowlist secret (a test value)
        ] {
            let error = parse_url(url).unwrap_err();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn a_missing_or_unusable_ca_file_is_refused_when_the_url_is_read() {
        let missing =
            parse_url(b"postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
                .unwrap_err();
        assert!(
            missing.contains("sslrootcert=/nonexistent/ca.pem cannot be read"),
            "{missing}"
        );
        let file = std::env::temp_dir().join(format!("pulse-not-a-ca-{}.pem", std::process::id()));
        std::fs::write(&file, "not a certificate\n").unwrap();
        let url = format!(
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert={}",
            file.display()
        );
        let empty = parse_url(url.as_bytes()).unwrap_err();
        std::fs::remove_file(&file).unwrap();
        assert!(empty.contains("holds no certificate"), "{empty}");
    }
}
