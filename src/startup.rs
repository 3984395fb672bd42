//! What the fork's state is built from once, before pulse serves
//! ([`Startup`]), and how something it runs in the background stops pulse
//! for good ([`Stop`]).

use std::sync::{Arc, OnceLock};

use prometheus::core::Collector;
use tokio::sync::Notify;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::secrets::SecretSetting;
use crate::secrets::rotating::RotatingSecret;

/// Handed to `State::new`: the configuration, and where the state's own
/// metrics and secrets go.
pub struct Startup<'a> {
    config: &'a Config,
    metrics: &'a mut Metrics,
    secrets: Vec<Arc<RotatingSecret>>,
}

impl<'a> Startup<'a> {
    pub fn new(config: &'a Config, metrics: &'a mut Metrics) -> Startup<'a> {
        Startup {
            config,
            metrics,
            secrets: Vec::new(),
        }
    }

    pub fn config(&self) -> &'a Config {
        self.config
    }

    /// Puts the state's own metric families on `/metrics`.
    pub fn register_metrics(&mut self, collector: impl Collector + 'static) {
        self.metrics.register(Box::new(collector));
    }

    /// A secret setting whose file is watched once pulse serves, with the
    /// same grace, reload metrics and logging as pulse's own.
    pub fn rotating_secret(&mut self, setting: &SecretSetting) -> Arc<RotatingSecret> {
        self.metrics.include_secret_reloads();
        let secret = Arc::new(RotatingSecret::new(
            setting,
            self.config.secret_grace,
            self.metrics.secret_reloads().clone(),
        ));
        self.secrets.push(Arc::clone(&secret));
        secret
    }

    /// The secrets made by [`Startup::rotating_secret`], for the app to watch.
    pub fn into_secrets(self) -> Vec<Arc<RotatingSecret>> {
        self.secrets
    }
}

/// Stops the server for good, with a reason: a background task that finds
/// pulse cannot work (its migrations failed) calls [`Stop::stop`], the
/// server shuts down as on Ctrl-C, and the process exits 1 with the reason.
#[derive(Default)]
pub struct Stop {
    reason: OnceLock<String>,
    notify: Notify,
}

impl Stop {
    /// The first reason wins; later ones are dropped.
    pub fn stop(&self, reason: String) {
        if self.reason.set(reason).is_ok() {
            self.notify.notify_waiters();
            self.notify.notify_one();
        }
    }

    /// Resolves with the reason once [`Stop::stop`] is called.
    pub async fn stopped(&self) -> String {
        loop {
            if let Some(reason) = self.reason.get() {
                return reason.clone();
            }
            self.notify.notified().await;
        }
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }
}
