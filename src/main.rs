//! The pulse binary: parse the command line and the settings, set up logging
//! and signals, bind, and hand over to [`pulse::run`].

#![forbid(unsafe_code)]

// What only the binary uses: the command line, `pulse healthcheck` and the
// signal handlers. They sit beside this file but are not the library's.
mod cli;
mod healthcheck;
mod signals;

use std::path::Path;
use std::process::ExitCode;

use cli::{Command, EXIT_USAGE};
use pulse::{Config, logging};
use signals::Signals;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("pulse: {message}; see pulse --help");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match command {
        Command::Help => {
            print!("{}", cli::help_text());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("{}", cli::version_line());
            ExitCode::SUCCESS
        }
        Command::Healthcheck => healthcheck_command(),
        Command::Serve => serve_command(Command::Serve),
        Command::AlertLog => serve_command(Command::AlertLog),
        Command::Migrate => migrate_command(),
    }
}

/// How long `pulse migrate` waits for an unreachable database.
const MIGRATE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// `pulse migrate`: applies the migrations once, as a deploy step (a
/// Kubernetes Job, a compose one-shot) that runs before the replicas start.
/// Exits 0 when the schema is current, 1 when it cannot be made so, 2 for
/// a bad setting.
fn migrate_command() -> ExitCode {
    let config = match load_config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // The database as the server builds it, password file included;
    // nothing watches the file here.
    let mut metrics = pulse::metrics::Metrics::new(&pulse::build_info::BUILD, &[]);
    let state = pulse::state::State::new(&mut pulse::startup::Startup::new(&config, &mut metrics));
    let Some(database) = state.database else {
        eprintln!(
            "pulse migrate: PULSE_DATABASE_URL (or PULSE_DATABASE_URL_FILE) is not set: nothing to migrate"
        );
        return ExitCode::from(EXIT_USAGE);
    };
    let runtime = match pulse::server::runtime(1) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pulse migrate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match database.migrate(Some(MIGRATE_PATIENCE)).await {
            Ok(applied) if applied.versions.is_empty() => {
                println!(
                    "pulse migrate: schema up to date at version {}",
                    applied.schema_version
                );
                ExitCode::SUCCESS
            }
            Ok(applied) => {
                println!(
                    "pulse migrate: applied {:?}; schema at version {}",
                    applied.versions, applied.schema_version
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("pulse migrate: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

fn load_config() -> Result<Config, String> {
    load_config_with_warnings().map(|(config, _)| config)
}

fn load_config_with_warnings() -> Result<(Config, Vec<String>), String> {
    Config::load(Path::new(".")).map_err(|e| format!("pulse: {e}"))
}

/// Exit codes follow the container healthcheck contract: 0 healthy, 1 not.
fn healthcheck_command() -> ExitCode {
    let config = match load_config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    match healthcheck::check(healthcheck::target(&config), healthcheck::TIMEOUT) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(report) => {
            println!("{report}");
            ExitCode::FAILURE
        }
    }
}

/// Serves pulse itself, or the alert log: the same settings, logging,
/// signals and exit codes.
fn serve_command(command: Command) -> ExitCode {
    let (config, warnings) = match load_config_with_warnings() {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = logging::init(&config.log_filter, config.log_format) {
        eprintln!("pulse: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    logging::log_panics();
    for warning in warnings {
        log::warn!("{warning}");
    }
    // Log lines are batched; none may be lost on the way out, even when a
    // panic unwinds out of here. A blocked stdout holds the exit up for the
    // shutdown timeout at most.
    let _flush = logging::FlushOnDrop(config.shutdown_timeout);
    serve(config, command)
}

fn serve(config: Config, command: Command) -> ExitCode {
    // Always a number, so that tokio never reads TOKIO_WORKER_THREADS
    // itself: the config has checked it (tokio would panic on a bad value).
    let worker_threads = pulse::server::serving_threads(config.worker_threads);
    let runtime = match pulse::server::runtime(worker_threads) {
        Ok(runtime) => runtime,
        Err(e) => {
            log::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Boxed: the serve future is large, and polled in place on the main
    // thread's stack it kept 4 to 8 KiB more of that stack resident.
    runtime.block_on(Box::pin(async {
        let signals = match Signals::install() {
            Ok(signals) => signals,
            Err(e) => {
                log::error!("cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        log::info!(
            version = pulse::build_info::BUILD.version,
            commit = pulse::build_info::BUILD.commit,
            host:% = config.host,
            port = config.port,
            log_filter = config.log_filter.as_str(),
            log_format = config.log_format.as_str(),
            drain_delay_ms = config.drain_delay.as_millis() as u64,
            shutdown_timeout_ms = config.shutdown_timeout.as_millis() as u64,
            header_read_timeout_ms = config.header_read_timeout.as_millis() as u64,
            max_connections = config.max_connections,
            fault_injection = config.fault_injection,
            h2c = config.h2c,
            worker_threads = worker_threads,
            sampler:% = config.sampler;
            "starting pulse"
        );
        #[cfg(target_os = "linux")]
        if let Some(limit) = pulse::process_metrics::read_max_fds() {
            // Each connection is a file descriptor; past the limit accept()
            // fails (pulse backs off and retries) instead of queueing cleanly.
            if config.max_connections as u64 + 64 > limit {
                log::warn!(
                    "PULSE_MAX_CONNECTIONS={} is close to the open-file limit of {limit}; raise `ulimit -n` or lower it",
                    config.max_connections
                );
            }
        }
        if config.fault_injection {
            log::warn!("fault injection is ON: /delay, /status and /panic are served");
        }
        let listener = match tokio::net::TcpListener::bind((config.host, config.port)).await {
            Ok(listener) => listener,
            Err(e) => {
                log::error!(
                    "cannot listen on {}: {e}",
                    std::net::SocketAddr::new(config.host, config.port)
                );
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => log::info!(address:% = addr; "listening on http://{addr}"),
            Err(e) => log::warn!("listening, but the bound address is unknown: {e}"),
        }
        let served = if command == Command::AlertLog {
            let alert_log = pulse::alert_log::AlertLog::new(config);
            pulse::serve(listener, alert_log, signals.shutdown()).await
        } else {
            pulse::run(listener, config, signals.shutdown()).await
        };
        match served {
            Ok(()) => {
                log::info!("shutdown complete");
                ExitCode::SUCCESS
            }
            Err(reason) => {
                log::error!("pulse stopped: {reason}");
                ExitCode::FAILURE
            }
        }
    }))
}
