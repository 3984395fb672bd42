//! Opening one connection, with the password in force.

use std::sync::Arc;

use deadpool_postgres::Connect;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::NoTls;
use tokio_postgres::{Client, Config, Error};

use super::settings::Tls;
use crate::secrets::rotating::{Reload, RotatingSecret};

type Connected = (Client, tokio::task::JoinHandle<()>);
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens the pool's connections, in plain TCP: this build has no TLS
/// client yet, and `settings::parse_url` refuses the modes that need one.
pub struct Connector {
    /// `PULSE_DATABASE_PASSWORD`, read afresh for each new connection.
    password: Option<Arc<RotatingSecret>>,
}

impl Connector {
    pub fn new(tls: Tls, password: Option<Arc<RotatingSecret>>) -> Result<Connector, String> {
        match tls {
            // `prefer` falls back to plain when TLS cannot be had, as libpq's does.
            Tls::Disable | Tls::Prefer => Ok(Connector { password }),
            _ => {
                Err("PULSE_DATABASE_URL asks for TLS, which this build does not include".to_owned())
            }
        }
    }

    async fn connect_once(&self, mut config: Config) -> Result<Connected, Error> {
        if let Some(password) = &self.password {
            config.password(&*password.current());
        }
        let (client, connection) = config.connect(NoTls).await?;
        let task = tokio::spawn(async move {
            if let Err(error) = connection.await {
                log::debug!("database: a connection closed: {error}");
            }
        });
        Ok((client, task))
    }
}

impl Connect for Connector {
    fn connect(&self, config: &Config) -> BoxFuture<'_, Result<Connected, Error>> {
        let config = config.clone();
        Box::pin(async move {
            match self.connect_once(config.clone()).await {
                // The password file may have changed before the watcher saw
                // it: read it now, and try once more if it did.
                Err(error)
                    if error.code() == Some(&SqlState::INVALID_PASSWORD)
                        && self
                            .password
                            .as_ref()
                            .is_some_and(|password| password.reload() == Reload::Rotated) =>
                {
                    self.connect_once(config).await
                }
                outcome => outcome,
            }
        })
    }
}
