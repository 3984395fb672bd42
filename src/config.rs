//! Settings: read from the environment plus an optional `.env` file, checked
//! once at startup, then immutable.
//!
//! Every setting is listed in [`SETTINGS`], which also feeds `pulse --help`,
//! so the documentation cannot drift from the parser. A bad value is a
//! [`ConfigError`] whose message names the variable, the value and what is
//! allowed; the binary prints it and exits with code 2 before binding.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use crate::database::{DatabaseSettings, Readiness, Statements};
use crate::dotenv;
pub use crate::logging::LogFormat;
use crate::secrets::{self, SecretError, SecretKind, SecretSetting};
use crate::span_export::{self, ExportSettings, OtlpEndpoint};
use crate::trace_context::Sampler;

/// The whole configuration of one pulse process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub host: IpAddr,
    /// 0 asks the OS for a free port; the log names the one bound.
    pub port: u16,
    /// An env_logger filter such as `info` or `info,pulse::access=warn`.
    pub log_filter: String,
    pub log_format: LogFormat,
    /// How long pulse keeps serving after SIGTERM while `/readyz` says
    /// draining, so that load balancers stop sending new traffic first.
    pub drain_delay: Duration,
    /// How long in-flight requests may take to finish once pulse stops accepting.
    pub shutdown_timeout: Duration,
    /// A client must send a complete request head within this time, both on
    /// a new connection and between requests on a keep-alive one.
    pub header_read_timeout: Duration,
    /// Connections beyond this wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Enables `/delay/{ms}`, `/status/{code}` and `/panic`. Off by default.
    pub fault_injection: bool,
    /// Serves h2c (HTTP/2 with prior knowledge) beside HTTP/1.1. Off, every
    /// connection is HTTP/1 and its first bytes are not inspected.
    pub h2c: bool,
    /// Threads that serve requests; None (the default) is one per CPU the
    /// process may use, as tokio would choose.
    pub worker_threads: Option<NonZeroUsize>,
    /// Where spans are exported; None (the default) exports none.
    pub span_export: Option<ExportSettings>,
    /// Which new spans are recorded while spans are exported.
    pub sampler: Sampler,
    /// The bearer token `/metrics` requires; None (the default) requires none.
    pub metrics_token: Option<SecretSetting>,
    /// How long the previous value of a rotated secret still works.
    pub secret_grace: Duration,
    /// How often secret files are re-read even without a change event.
    pub secret_poll: Duration,
    /// PostgreSQL for the `/notes` routes; None (the default) serves none.
    pub database: Option<DatabaseSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 8080,
            log_filter: "info".to_owned(),
            log_format: LogFormat::Text,
            drain_delay: Duration::from_secs(3),
            shutdown_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            fault_injection: false,
            h2c: true,
            worker_threads: None,
            span_export: None,
            sampler: Sampler::default(),
            metrics_token: None,
            secret_grace: Duration::from_secs(60),
            secret_poll: Duration::from_secs(10),
            database: None,
        }
    }
}

/// One documented setting.
pub struct Setting {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Every setting pulse reads, in the order `--help` and the README list them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "PORT",
        default: "8080",
        meaning: "TCP port (0 picks a free one; the log names it)",
    },
    Setting {
        name: "HOST",
        default: "0.0.0.0",
        meaning: "IP address to listen on (:: for IPv6 and IPv4)",
    },
    Setting {
        name: "RUST_LOG",
        default: "info",
        meaning: "log filter in env_logger syntax, e.g. info,pulse::access=warn",
    },
    Setting {
        name: "PULSE_LOG_FORMAT",
        default: "text",
        meaning: "text for people, json for one object per line (the image sets json)",
    },
    Setting {
        name: "PULSE_DRAIN_DELAY",
        default: "3s",
        meaning: "after SIGTERM, keep serving this long while /readyz says draining",
    },
    Setting {
        name: "PULSE_SHUTDOWN_TIMEOUT",
        default: "5s",
        meaning: "then give in-flight requests this long to finish",
    },
    Setting {
        name: "PULSE_HEADER_READ_TIMEOUT",
        default: "10s",
        meaning: "time to send a request head, and how long a connection with no request in flight stays open",
    },
    Setting {
        name: "PULSE_MAX_CONNECTIONS",
        default: "1024",
        meaning: "open connections at most; at the cap, the connection idle longest is closed to make room (see Limits)",
    },
    Setting {
        name: "PULSE_FAULT_INJECTION",
        default: "false",
        meaning: "true enables /delay/{ms}, /status/{code} and /panic",
    },
    Setting {
        name: "PULSE_H2C",
        default: "true",
        meaning: "false serves HTTP/1.1 only, with no protocol detection",
    },
    Setting {
        name: "TOKIO_WORKER_THREADS",
        default: "",
        meaning: "serving threads, 1 to 1024; unset, one per CPU its cgroup allows; 1 runs tokio's current-thread scheduler",
    },
    Setting {
        name: "PULSE_METRICS_TOKEN",
        default: "",
        meaning: "/metrics then requires Authorization: Bearer with it (a secret)",
    },
    Setting {
        name: "PULSE_SECRET_GRACE",
        default: "60s",
        meaning: "a rotated metrics token's old value still works this long",
    },
    Setting {
        name: "PULSE_SECRET_POLL_INTERVAL",
        default: "10s",
        meaning: "secret files are re-read this often, and on change events",
    },
    Setting {
        name: "PULSE_DATABASE_URL",
        default: "",
        meaning: "postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=...]; serves /notes from it (a secret)",
    },
    Setting {
        name: "PULSE_DATABASE_PASSWORD",
        default: "",
        meaning: "the database password, apart from the URL; a changed file is used for new connections (a secret)",
    },
    Setting {
        name: "PULSE_DATABASE_POOL_SIZE",
        default: "8",
        meaning: "the most database connections, 1 to 1000",
    },
    Setting {
        name: "PULSE_DATABASE_TIMEOUT",
        default: "2s",
        meaning: "a request waits this long for a connection, then for its query, before a 503",
    },
    Setting {
        name: "PULSE_DATABASE_READINESS",
        default: "startup",
        meaning: "startup: /readyz waits for the first connection and migrations; always: also fails while the database is down",
    },
    Setting {
        name: "PULSE_DATABASE_STATEMENTS",
        default: "prepared",
        meaning: "unprepared behind a transaction-mode pooler (PgBouncer)",
    },
    Setting {
        name: "OTEL_EXPORTER_OTLP_ENDPOINT",
        default: "",
        meaning: "http://HOST:PORT of an OTLP/HTTP collector; setting it exports spans to /v1/traces there",
    },
    Setting {
        name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        default: "",
        meaning: "the full http:// URL for spans, used as it is; wins over OTEL_EXPORTER_OTLP_ENDPOINT",
    },
    Setting {
        name: "OTEL_EXPORTER_OTLP_PROTOCOL",
        default: "http/json",
        meaning: "http/json, the only encoding pulse sends; grpc or http/protobuf is refused",
    },
    Setting {
        name: "OTEL_EXPORTER_OTLP_HEADERS",
        default: "",
        meaning: "key=value,... headers sent with each export, values percent-encoded (a secret)",
    },
    Setting {
        name: "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        default: "",
        meaning: "the same, for spans only; wins over the one above (a secret)",
    },
    Setting {
        name: "OTEL_TRACES_EXPORTER",
        default: "otlp",
        meaning: "otlp, or none to export nothing even with an endpoint set",
    },
    Setting {
        name: "OTEL_SERVICE_NAME",
        default: "pulse",
        meaning: "service.name of the exported spans",
    },
    Setting {
        name: "OTEL_RESOURCE_ATTRIBUTES",
        default: "",
        meaning: "key=value,... added to the spans' resource, values percent-encoded",
    },
    Setting {
        name: "OTEL_TRACES_SAMPLER",
        default: "parentbased_always_on",
        meaning: "always_on, always_off, traceidratio, or parentbased_ with one of them",
    },
    Setting {
        name: "OTEL_TRACES_SAMPLER_ARG",
        default: "1.0",
        meaning: "the share of new traces the traceidratio samplers keep, 0 to 1",
    },
    Setting {
        name: "OTEL_EXPORTER_OTLP_TIMEOUT",
        default: "10000",
        meaning: "milliseconds one export request may take",
    },
    Setting {
        name: "OTEL_BSP_SCHEDULE_DELAY",
        default: "5000",
        meaning: "milliseconds a span waits at most before its batch is sent",
    },
    Setting {
        name: "OTEL_BSP_MAX_QUEUE_SIZE",
        default: "2048",
        meaning: "spans waiting at most; more are dropped and counted",
    },
    Setting {
        name: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        default: "512",
        meaning: "spans per export request at most; left at its default, it shrinks to a smaller queue",
    },
];

/// The longest duration any setting accepts.
const MAX_DURATION: Duration = Duration::from_secs(3600);
const MAX_CONNECTIONS: usize = 1_000_000;
/// More threads than this is a typo, not a tuning: each reserves a stack.
const MAX_WORKER_THREADS: usize = 1024;

/// A setting or `.env` line that pulse refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A variable holds a value outside what it allows.
    InvalidValue {
        name: &'static str,
        value: String,
        allowed: &'static str,
    },
    /// A line of the `.env` file is malformed.
    DotEnv {
        path: String,
        error: dotenv::DotEnvError,
    },
    /// The `.env` file exists but cannot be read.
    DotEnvUnreadable { path: String, reason: String },
    /// A secret setting is set twice, unreadable or invalid; the message
    /// never holds its value.
    Secret(SecretError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::InvalidValue {
                name,
                value,
                allowed,
            } => write!(f, "{name}={value:?} is not valid: expected {allowed}"),
            ConfigError::DotEnv { path, error } => write!(f, "{path} {error}"),
            ConfigError::DotEnvUnreadable { path, reason } => {
                write!(f, "{path} cannot be read: {reason}")
            }
            ConfigError::Secret(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Builds a config from a lookup function, so tests can pass a map instead
    /// of touching the process environment. Unset variables take their default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let get = |name: &'static str| lookup(name).map(|value| (name, value));
        let non_empty = empty_as_unset(&get);
        let secret = |kind| secrets::lookup(kind, &lookup).map_err(ConfigError::Secret);
        // The traces-only headers win over the general ones, as the
        // OpenTelemetry spec says.
        let otlp_headers = match secret(SecretKind::OtlpTracesHeaders)? {
            Some(headers) => Some(headers),
            None => secret(SecretKind::OtlpHeaders)?,
        };
        Ok(Config {
            host: get("HOST").map_or(Ok(defaults.host), |(n, v)| {
                parse_host(&v).ok_or_else(|| invalid(n, v, "an IP address such as 0.0.0.0, 127.0.0.1 or ::"))
            })?,
            port: get("PORT").map_or(Ok(defaults.port), |(n, v)| {
                v.trim()
                    .parse::<u16>()
                    .map_err(|_| invalid(n, v, "a port number from 0 to 65535"))
            })?,
            // An empty RUST_LOG would mean errors only to env_logger, which
            // nobody setting `RUST_LOG=` means: it is the default here.
            log_filter: non_empty("RUST_LOG").map_or(Ok(defaults.log_filter), |(n, v)| {
                if is_valid_log_filter(&v) {
                    Ok(v)
                } else {
                    Err(invalid(
                        n,
                        v,
                        "comma-separated directives LEVEL or TARGET[=LEVEL], with LEVEL one of off, error, warn, info, debug, trace",
                    ))
                }
            })?,
            log_format: word_setting(
                &get,
                "PULSE_LOG_FORMAT",
                defaults.log_format,
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
                "text or json",
            )?,
            drain_delay: duration_setting(&get, "PULSE_DRAIN_DELAY", defaults.drain_delay)?,
            shutdown_timeout: duration_setting(
                &get,
                "PULSE_SHUTDOWN_TIMEOUT",
                defaults.shutdown_timeout,
            )?,
            header_read_timeout: nonzero(
                "PULSE_HEADER_READ_TIMEOUT",
                duration_setting(&get, "PULSE_HEADER_READ_TIMEOUT", defaults.header_read_timeout)?,
            )?,
            max_connections: get("PULSE_MAX_CONNECTIONS").map_or(
                Ok(defaults.max_connections),
                |(n, v)| match v.trim().parse::<usize>() {
                    Ok(count @ 1..=MAX_CONNECTIONS) => Ok(count),
                    _ => Err(invalid(n, v, "a whole number from 1 to 1000000")),
                },
            )?,
            fault_injection: get("PULSE_FAULT_INJECTION").map_or(
                Ok(defaults.fault_injection),
                |(n, v)| parse_bool(&v).ok_or_else(|| invalid(n, v, BOOLEAN_WORDS)),
            )?,
            h2c: get("PULSE_H2C").map_or(Ok(defaults.h2c), |(n, v)| {
                parse_bool(&v).ok_or_else(|| invalid(n, v, BOOLEAN_WORDS))
            })?,
            // tokio reads this variable itself and panics on a bad value;
            // pulse checks it here, hands tokio the number, and treats an
            // empty value as unset, like RUST_LOG's.
            worker_threads: non_empty("TOKIO_WORKER_THREADS")
                .map(|(n, v)| match v.trim().parse::<NonZeroUsize>() {
                    Ok(count) if count.get() <= MAX_WORKER_THREADS => Ok(count),
                    _ => Err(invalid(n, v, "a whole number from 1 to 1024, or unset for one per CPU")),
                })
                .transpose()?,
            span_export: span_export_settings(&non_empty, otlp_headers)?,
            sampler: sampler_setting(&non_empty)?,
            metrics_token: secret(SecretKind::MetricsToken)?,
            secret_grace: duration_setting(&get, "PULSE_SECRET_GRACE", defaults.secret_grace)?,
            secret_poll: nonzero(
                "PULSE_SECRET_POLL_INTERVAL",
                duration_setting(&get, "PULSE_SECRET_POLL_INTERVAL", defaults.secret_poll)?,
            )?,
            database: database_settings(&get, &secret)?,
        })
    }

    /// Reads the process environment plus `dir/.env` if it exists. The real
    /// environment wins over the file.
    pub fn from_env_and_dotenv(dir: &Path) -> Result<Config, ConfigError> {
        Config::load(dir).map(|(config, _)| config)
    }

    /// Like [`Config::from_env_and_dotenv`], with a warning for every name in
    /// `.env` that looks like a mistyped setting, for the caller to log once
    /// logging is up.
    pub fn load(dir: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let path = dir.join(".env");
        let from_file = match std::fs::read_to_string(&path) {
            Ok(text) => dotenv::parse(&text).map_err(|error| ConfigError::DotEnv {
                path: ".env".to_owned(),
                error,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(ConfigError::DotEnvUnreadable {
                    path: ".env".to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        let warnings = from_file
            .iter()
            .filter_map(|(name, _)| unknown_setting_warning(name))
            .collect();
        let file_values: HashMap<String, String> = from_file.into_iter().collect();
        let config = Config::from_lookup(|name| {
            std::env::var(name)
                .ok()
                .or_else(|| file_values.get(name).cloned())
        })?;
        Ok((config, warnings))
    }
}

/// The variables `compose.yaml` and its replicas overlay read from the same
/// `.env` (ports, images, the collector's address, the replica count):
/// compose's, not pulse's, so they pass quietly although some start with
/// `PULSE_`. A test keeps the list equal to what the two files interpolate.
pub const COMPOSE_VARIABLES: &[&str] = &[
    "ALERTMANAGER_IMAGE",
    "ALERTMANAGER_PORT",
    "GRAFANA_ADMIN_PASSWORD",
    "GRAFANA_IMAGE",
    "GRAFANA_PORT",
    "HAPROXY_IMAGE",
    "HAPROXY_STATS_PORT",
    "JAEGER_IMAGE",
    "JAEGER_PORT",
    "MONITORING_BIND",
    "POSTGRES_IMAGE",
    "PROMETHEUS_IMAGE",
    "PROMETHEUS_PORT",
    "PULSE_BIND",
    "PULSE_IMAGE",
    "PULSE_OTLP_ENDPOINT",
    "PULSE_PORT",
    "PULSE_REPLICAS",
];

/// A warning for a `.env` name that neither pulse nor compose reads: always
/// for a `PULSE_` name (a typo such as `PULSE_DRAIN_DLEAY` would otherwise
/// be ignored without a word), and for another name only when it is one or
/// two edits from a setting (`RUST_LOGG`), since a `.env` often holds other
/// tools' variables too. A setting within two edits is named as the likely
/// one; further off, a guess would mislead more than help.
pub fn unknown_setting_warning(name: &str) -> Option<String> {
    let is_secret_file = SecretKind::ALL.iter().any(|kind| kind.file_name() == name);
    if SETTINGS.iter().any(|s| s.name == name)
        || COMPOSE_VARIABLES.contains(&name)
        || is_secret_file
    {
        return None;
    }
    let (distance, closest) = SETTINGS
        .iter()
        .map(|s| (edit_distance(name, s.name), s.name))
        .min()?;
    let prefixed = name.starts_with("PULSE_");
    if !prefixed && distance > 2 {
        return None;
    }
    let hint = if distance <= 2 {
        format!("; did you mean {closest}?")
    } else {
        String::new()
    };
    Some(format!(
        ".env sets {name}, which is not a pulse setting{hint}"
    ))
}

/// Levenshtein distance between two short ASCII names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.as_bytes().iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

fn invalid(name: &'static str, value: String, allowed: &'static str) -> ConfigError {
    ConfigError::InvalidValue {
        name,
        value,
        allowed,
    }
}

/// A setting that is one of a few `words`, in any case; `default` when unset.
fn word_setting<T: Copy>(
    get: &impl Fn(&'static str) -> Option<(&'static str, String)>,
    name: &'static str,
    default: T,
    words: &[(&str, T)],
    allowed: &'static str,
) -> Result<T, ConfigError> {
    let Some((name, value)) = get(name) else {
        return Ok(default);
    };
    let word = value.trim().to_ascii_lowercase();
    match words.iter().find(|(candidate, _)| *candidate == word) {
        Some((_, chosen)) => Ok(*chosen),
        None => Err(invalid(name, value, allowed)),
    }
}

fn duration_setting(
    get: &impl Fn(&'static str) -> Option<(&'static str, String)>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some((name, value)) => parse_duration(&value)
            .filter(|d| *d <= MAX_DURATION)
            .ok_or_else(|| {
                invalid(
                    name,
                    value,
                    "a duration such as 5s, 250ms or 2 (seconds), at most 3600s",
                )
            }),
    }
}

/// The lookup in which a variable set to an empty value counts as unset:
/// OpenTelemetry's rule for its variables, and pulse's for `RUST_LOG` and
/// `TOKIO_WORKER_THREADS`.
fn empty_as_unset(
    get: &impl Fn(&'static str) -> Option<(&'static str, String)>,
) -> impl Fn(&'static str) -> Option<(&'static str, String)> + '_ {
    move |name| get(name).filter(|(_, value)| !value.trim().is_empty())
}

/// The `PULSE_DATABASE_*` settings; None without a URL. The others are
/// checked either way.
fn database_settings(
    get: &impl Fn(&'static str) -> Option<(&'static str, String)>,
    secret: &impl Fn(SecretKind) -> Result<Option<SecretSetting>, ConfigError>,
) -> Result<Option<DatabaseSettings>, ConfigError> {
    let pool_size = get("PULSE_DATABASE_POOL_SIZE").map_or(Ok(8), |(n, v)| {
        match v.trim().parse::<usize>() {
            Ok(size @ 1..=1000) => Ok(size),
            _ => Err(invalid(n, v, "a whole number from 1 to 1000")),
        }
    })?;
    let timeout = nonzero(
        "PULSE_DATABASE_TIMEOUT",
        duration_setting(get, "PULSE_DATABASE_TIMEOUT", Duration::from_secs(2))?,
    )?;
    let readiness = word_setting(
        get,
        "PULSE_DATABASE_READINESS",
        Readiness::Startup,
        &[
            ("startup", Readiness::Startup),
            ("always", Readiness::Always),
        ],
        "startup (ready once migrated; the default) or always (unready while the database is down)",
    )?;
    let statements = word_setting(
        get,
        "PULSE_DATABASE_STATEMENTS",
        Statements::Prepared,
        &[
            ("prepared", Statements::Prepared),
            ("unprepared", Statements::Unprepared),
        ],
        "prepared (the default) or unprepared (behind a pooler in transaction mode, such as PgBouncer's)",
    )?;
    let password = secret(SecretKind::DatabasePassword)?;
    let Some(url) = secret(SecretKind::DatabaseUrl)? else {
        return Ok(None);
    };
    let connection = crate::database::settings::parse_url(&url.value.0).map_err(|reason| {
        ConfigError::Secret(SecretError::Rejected {
            kind: SecretKind::DatabaseUrl,
            reason,
        })
    })?;
    Ok(Some(DatabaseSettings {
        connection,
        password,
        pool_size,
        timeout,
        readiness,
        statements,
    }))
}

/// The `OTEL_*` export settings; None when no endpoint is set or
/// `OTEL_TRACES_EXPORTER=none`. Every value is checked either way.
fn span_export_settings(
    get: &impl Fn(&'static str) -> Option<(&'static str, String)>,
    headers: Option<SecretSetting>,
) -> Result<Option<ExportSettings>, ConfigError> {
    const URL: &str = "an http:// URL such as http://localhost:4318 (span export has no TLS: send to a collector on the same host or network)";
    let endpoint = match get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Some((n, v)) => Some(OtlpEndpoint::parse(&v, "").ok_or_else(|| invalid(n, v, URL))?),
        None => None,
    };
    let endpoint = match (endpoint, get("OTEL_EXPORTER_OTLP_ENDPOINT")) {
        (Some(endpoint), _) => Some(endpoint),
        (None, Some((n, v))) => {
            Some(OtlpEndpoint::parse(&v, "/v1/traces").ok_or_else(|| invalid(n, v, URL))?)
        }
        (None, None) => None,
    };
    if let Some((n, v)) = get("OTEL_EXPORTER_OTLP_PROTOCOL") {
        if v.trim() != "http/json" {
            return Err(invalid(
                n,
                v,
                "http/json (pulse sends OTLP over HTTP as JSON; grpc and http/protobuf are not supported)",
            ));
        }
    }
    let enabled = match get("OTEL_TRACES_EXPORTER") {
        None => true,
        Some((n, v)) => match v.trim() {
            "otlp" => true,
            "none" => false,
            _ => return Err(invalid(n, v, "otlp or none")),
        },
    };
    let service_name = match get("OTEL_SERVICE_NAME") {
        None => "pulse".to_owned(),
        Some((n, v)) => {
            if v.chars().any(char::is_control) {
                return Err(invalid(n, v, "a name without control characters"));
            }
            v.trim().to_owned()
        }
    };
    let resource_attributes = match get("OTEL_RESOURCE_ATTRIBUTES") {
        None => Vec::new(),
        Some((n, v)) => span_export::parse_resource_attributes(&v).ok_or_else(|| {
            invalid(
                n,
                v,
                "comma-separated key=value pairs, values percent-encoded, such as deployment.environment=prod",
            )
        })?,
    };
    let millis = |name: &'static str, default: u64| match get(name) {
        None => Ok(Duration::from_millis(default)),
        Some((n, v)) => match v.trim().parse::<u64>() {
            Ok(ms @ 1..=3_600_000) => Ok(Duration::from_millis(ms)),
            _ => Err(invalid(
                n,
                v,
                "whole milliseconds from 1 to 3600000, as OpenTelemetry specifies",
            )),
        },
    };
    let count = |name: &'static str, default: usize| match get(name) {
        None => Ok(default),
        Some((n, v)) => match v.trim().parse::<usize>() {
            Ok(count @ 1..=1_000_000) => Ok(count),
            _ => Err(invalid(n, v, "a whole number from 1 to 1000000")),
        },
    };
    let timeout = millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?;
    let schedule_delay = millis("OTEL_BSP_SCHEDULE_DELAY", 5_000)?;
    let max_queue_size = count("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?;
    // As OpenTelemetry's SDKs do, a batch left at its default shrinks to fit
    // a smaller queue; only two settings that contradict each other are an
    // error.
    let max_batch_size = count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512.min(max_queue_size))?;
    if max_batch_size > max_queue_size {
        return Err(ConfigError::InvalidValue {
            name: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            value: max_batch_size.to_string(),
            allowed: "no more than OTEL_BSP_MAX_QUEUE_SIZE",
        });
    }
    Ok(endpoint.filter(|_| enabled).map(|endpoint| ExportSettings {
        endpoint,
        service_name,
        resource_attributes,
        timeout,
        schedule_delay,
        max_queue_size,
        max_batch_size,
        headers,
    }))
}

fn sampler_setting(
    get: &impl Fn(&'static str) -> Option<(&'static str, String)>,
) -> Result<Sampler, ConfigError> {
    let ratio = match get("OTEL_TRACES_SAMPLER_ARG") {
        None => 1.0,
        Some((n, v)) => match v.trim().parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
            _ => return Err(invalid(n, v, "a ratio from 0 to 1, such as 0.25")),
        },
    };
    match get("OTEL_TRACES_SAMPLER") {
        None => Ok(Sampler::default()),
        Some((n, v)) => {
            Sampler::from_name(v.trim(), ratio).ok_or_else(|| invalid(n, v, Sampler::NAMES))
        }
    }
}

fn nonzero(name: &'static str, duration: Duration) -> Result<Duration, ConfigError> {
    if duration.is_zero() {
        Err(invalid(name, "0".to_owned(), "a duration above zero"))
    } else {
        Ok(duration)
    }
}

/// Parses `250ms`, `5s` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, millis_per_unit) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1000)
    } else {
        (text, 1000)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let count: u64 = digits.parse().ok()?;
    Some(Duration::from_millis(count.checked_mul(millis_per_unit)?))
}

fn parse_host(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    // Accept the bracketed IPv6 form people copy from URLs.
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse().ok()
}

/// What a boolean setting accepts, in any case, as the error says.
const BOOLEAN_WORDS: &str = "true or false (also 1 or 0, yes or no, on or off)";

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Checks an env_logger filter with env_logger's own parser (env_filter):
/// env_logger itself only warns about a bad directive and carries on with a
/// different filter than the one asked for. A target must also look like a
/// module path (`pulse::access`): env_filter takes any text as a target,
/// and a typo such as `pulse:access` would silently match nothing.
pub fn is_valid_log_filter(filter: &str) -> bool {
    if env_filter::Builder::new().try_parse(filter).is_err() {
        return false;
    }
    let directives = filter.split('/').next().unwrap_or_default();
    directives.split(',').map(str::trim).all(|directive| {
        let target = directive
            .split_once('=')
            .map_or(directive, |(target, _)| target)
            .trim();
        directive.is_empty() || target.parse::<log::LevelFilter>().is_ok() || is_log_target(target)
    })
}

/// A module path such as `pulse` or `pulse::access`.
fn is_log_target(text: &str) -> bool {
    !text.is_empty()
        && text.split("::").all(|part| {
            let mut bytes = part.bytes();
            matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_are_safe_and_fit_podmans_stop_timeout() {
        let c = config(&[]).unwrap();
        assert_eq!(c.host, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(c.port, 8080);
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(!c.fault_injection);
        assert!(c.h2c);
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.span_export, None);
        assert_eq!(c.drain_delay, Duration::from_secs(3));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert!(c.drain_delay + c.shutdown_timeout < Duration::from_secs(10));
    }

    #[test]
    fn reads_every_setting() {
        let c = config(&[
            ("PORT", "9000"),
            ("HOST", "[::1]"),
            ("RUST_LOG", "warn,pulse::access=info"),
            ("PULSE_LOG_FORMAT", "JSON"),
            ("PULSE_DRAIN_DELAY", "0"),
            ("PULSE_SHUTDOWN_TIMEOUT", "250ms"),
            ("PULSE_HEADER_READ_TIMEOUT", "2s"),
            ("PULSE_MAX_CONNECTIONS", "10"),
            ("PULSE_FAULT_INJECTION", "true"),
            ("PULSE_H2C", "false"),
            ("TOKIO_WORKER_THREADS", " 3 "),
        ])
        .unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.host, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.drain_delay, Duration::ZERO);
        assert_eq!(c.shutdown_timeout, Duration::from_millis(250));
        assert_eq!(c.header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.max_connections, 10);
        assert!(c.fault_injection);
        assert!(!c.h2c);
        assert_eq!(c.worker_threads, NonZeroUsize::new(3));
        // Empty is unset: one thread per CPU.
        let c = config(&[("TOKIO_WORKER_THREADS", "")]).unwrap();
        assert_eq!(c.worker_threads, None);
    }

    #[test]
    fn a_bad_value_names_variable_value_and_what_is_allowed() {
        let message = config(&[("PORT", "80a")]).unwrap_err().to_string();
        assert_eq!(
            message,
            "PORT=\"80a\" is not valid: expected a port number from 0 to 65535"
        );
        for (name, value) in [
            ("HOST", "localhost:80"),
            ("RUST_LOG", "info,pulse=loud"),
            ("PULSE_LOG_FORMAT", "xml"),
            ("PULSE_DRAIN_DELAY", "5 minutes"),
            ("PULSE_SHUTDOWN_TIMEOUT", "-1s"),
            ("PULSE_HEADER_READ_TIMEOUT", "0"),
            ("PULSE_HEADER_READ_TIMEOUT", "7200s"),
            ("PULSE_MAX_CONNECTIONS", "0"),
            ("PULSE_FAULT_INJECTION", "maybe"),
            ("TOKIO_WORKER_THREADS", "0"),
            ("TOKIO_WORKER_THREADS", "1025"),
            ("TOKIO_WORKER_THREADS", "two"),
        ] {
            let message = config(&[(name, value)]).unwrap_err().to_string();
            assert!(message.starts_with(&format!("{name}=")), "{message}");
            assert!(message.contains("expected"), "{message}");
        }
    }

    #[test]
    fn the_database_settings_take_their_words_and_refuse_others() {
        let url = ("PULSE_DATABASE_URL", "postgres://pulse@db.example/notes");
        let database =
            |vars: &[(&str, &str)]| config(&[&[url], vars].concat()).map(|c| c.database.unwrap());
        let defaults = database(&[]).unwrap();
        assert_eq!(defaults.statements, Statements::Prepared);
        assert_eq!(defaults.readiness, Readiness::Startup);
        let behind_a_pooler = database(&[
            ("PULSE_DATABASE_STATEMENTS", "Unprepared"),
            ("PULSE_DATABASE_READINESS", "always"),
        ])
        .unwrap();
        assert_eq!(behind_a_pooler.statements, Statements::Unprepared);
        assert_eq!(behind_a_pooler.readiness, Readiness::Always);
        for (name, value) in [
            ("PULSE_DATABASE_STATEMENTS", "simple"),
            ("PULSE_DATABASE_READINESS", "never"),
            ("PULSE_DATABASE_POOL_SIZE", "0"),
        ] {
            let message = database(&[(name, value)]).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("{name}=\"{value}\"")),
                "{message}"
            );
            assert!(message.contains("expected"), "{message}");
        }
    }

    #[test]
    fn span_export_follows_the_opentelemetry_variables() {
        assert_eq!(config(&[]).unwrap().span_export, None);
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SERVICE_NAME", "checkout"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored,env=prod"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ])
        .unwrap();
        let export = c.span_export.expect("an endpoint turns export on");
        assert_eq!(
            export.endpoint.to_string(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(export.service_name, "checkout");
        assert_eq!(export.schedule_delay, Duration::from_millis(200));
        assert_eq!(export.resource_attributes.len(), 2);
        assert_eq!(
            c.sampler,
            Sampler::from_name("parentbased_traceidratio", 0.5).unwrap()
        );

        // The traces-only URL wins and is used as it is; `none` and an
        // empty endpoint turn export off.
        let traces = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:9999/spans"),
        ])
        .unwrap();
        assert_eq!(
            traces.span_export.unwrap().endpoint.to_string(),
            "http://b:9999/spans"
        );
        for off in [
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ][..],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "")],
        ] {
            assert_eq!(config(off).unwrap().span_export, None);
        }

        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_EXPORTER", "jaeger"),
            ("OTEL_TRACES_SAMPLER", "always"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_TRACES_SAMPLER_ARG", "NaN"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5s"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ] {
            let message = config(&[(name, value)]).unwrap_err().to_string();
            assert!(message.starts_with(&format!("{name}=")), "{message}");
        }
        // A smaller queue alone lowers the default batch to fit, as the
        // OpenTelemetry SDKs do; only an explicit, larger batch is refused.
        let export = |pairs: &[(&'static str, &str)]| {
            let mut pairs = pairs.to_vec();
            pairs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"));
            config(&pairs).map(|c| c.span_export.expect("export is on"))
        };
        let small = export(&[("OTEL_BSP_MAX_QUEUE_SIZE", "100")]).unwrap();
        assert_eq!((small.max_queue_size, small.max_batch_size), (100, 100));
        let default = export(&[]).unwrap();
        assert_eq!(
            (default.max_queue_size, default.max_batch_size),
            (2048, 512)
        );
        let message = config(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "20"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("no more than OTEL_BSP_MAX_QUEUE_SIZE"),
            "{message}"
        );
    }

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("99999999999999999999s"), None);
    }

    #[test]
    fn dotenv_typos_are_named_with_the_closest_setting() {
        let warning = unknown_setting_warning("PULSE_DRAIN_DLEAY").expect("a PULSE_ typo warns");
        assert!(
            warning.contains("PULSE_DRAIN_DLEAY")
                && warning.contains("did you mean PULSE_DRAIN_DELAY?"),
            "{warning}"
        );
        assert!(
            unknown_setting_warning("RUST_LOGG")
                .expect("near a setting")
                .contains("RUST_LOG")
        );
        assert!(unknown_setting_warning("PULSE_SOMETHING_ELSE_ENTIRELY").is_some());
        assert_eq!(unknown_setting_warning("GRAFANA_ADMIN_PASSWORD"), None);
        assert_eq!(unknown_setting_warning("PULSE_DRAIN_DELAY"), None);
        // Three edits from PULSE_H2C: still warned of, but no wrong guess.
        let warning = unknown_setting_warning("PULSE_FOO").expect("a PULSE_ name warns");
        assert!(!warning.contains("did you mean"), "{warning}");
    }

    /// compose.yaml and deploy/compose/replicas.yaml read their own
    /// variables from the same `.env`; each passes quietly, and the list is
    /// exactly what the two files read.
    #[test]
    fn compose_variables_pass_quietly_and_match_compose_yaml() {
        let compose = [
            include_str!("../compose.yaml"),
            include_str!("../deploy/compose/replicas.yaml"),
        ]
        .concat();
        let mut interpolated: Vec<&str> = compose
            .split("${")
            .skip(1)
            .map(|rest| rest.split([':', '}', '-']).next().unwrap_or_default())
            .filter(|name| SETTINGS.iter().all(|s| s.name != *name))
            .collect();
        interpolated.sort_unstable();
        interpolated.dedup();
        assert_eq!(interpolated, COMPOSE_VARIABLES);
        for name in COMPOSE_VARIABLES {
            assert_eq!(unknown_setting_warning(name), None, "{name}");
        }
    }

    /// The input rules the README's Configuration section states.
    #[test]
    fn durations_and_empty_values_follow_the_documented_rules() {
        for ok in ["3600s", "3600", "250ms", "0"] {
            assert!(config(&[("PULSE_DRAIN_DELAY", ok)]).is_ok(), "{ok}");
        }
        for bad in ["3601s", "0.5s", "5m"] {
            assert!(config(&[("PULSE_DRAIN_DELAY", bad)]).is_err(), "{bad}");
        }
        for name in [
            "PORT",
            "HOST",
            "PULSE_H2C",
            "PULSE_DRAIN_DELAY",
            "PULSE_LOG_FORMAT",
        ] {
            let error = config(&[(name, "")]).unwrap_err().to_string();
            assert!(error.starts_with(name), "{error}");
        }
        for name in [
            "RUST_LOG",
            "TOKIO_WORKER_THREADS",
            "OTEL_SERVICE_NAME",
            "OTEL_BSP_MAX_QUEUE_SIZE",
        ] {
            assert_eq!(config(&[(name, "")]).unwrap(), Config::default(), "{name}");
        }
    }

    #[test]
    fn boolean_settings_name_every_word_they_accept() {
        for word in ["true", "TRUE", "1", "yes", "On", "false", "0", "no", "off"] {
            assert!(config(&[("PULSE_H2C", word)]).is_ok(), "{word}");
        }
        let message = config(&[("PULSE_H2C", "enabled")]).unwrap_err().to_string();
        for word in ["true", "false", "1", "0", "yes", "no", "on", "off"] {
            assert!(message.contains(word), "{message} lacks {word}");
        }
    }

    #[test]
    fn log_filters_follow_env_logger_syntax() {
        for ok in [
            "info",
            "off",
            "pulse=debug,hyper=warn",
            "pulse",
            "info/needle",
            "",
        ] {
            assert!(is_valid_log_filter(ok), "{ok}");
        }
        // "info/a/b" is what env_logger rejects (and then logs errors only).
        for bad in [
            "pulse=verbose",
            "info/a/b",
            "info,pulse=loud",
            "pulse:access=debug",
            "a b",
        ] {
            assert!(!is_valid_log_filter(bad), "{bad}");
        }
    }

    #[test]
    fn every_documented_setting_is_read_and_its_default_is_true() {
        for setting in SETTINGS {
            // A control character: even the free-text settings refuse it.
            let err = config(&[(setting.name, "\u{1}bad value!")]).unwrap_err();
            assert!(err.to_string().starts_with(setting.name), "{err}");
        }
        let documented = config(
            &SETTINGS
                .iter()
                .map(|s| (s.name, s.default))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(documented, Config::default());
    }
}
