//! Opening one connection, with the password in force.

use std::sync::Arc;

use deadpool_postgres::Connect;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, Error};

use super::settings::Tls;
use super::tls::MakeRustls;
use crate::secrets::rotating::{Reload, RotatingSecret};

type Connected = (Client, tokio::task::JoinHandle<()>);
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens the pool's connections, in TLS as `sslmode` says.
pub struct Connector {
    /// With `prefer`, tokio-postgres falls back to plain TCP when the server
    /// offers no TLS, as libpq does.
    tls: MakeRustls,
    /// `PULSE_DATABASE_PASSWORD`, read afresh for each new connection.
    password: Option<Arc<RotatingSecret>>,
}

impl Connector {
    pub fn new(tls: &Tls, password: Option<Arc<RotatingSecret>>) -> Result<Connector, String> {
        let tls = MakeRustls::new(tls)?;
        Ok(Connector { tls, password })
    }

    async fn connect_once(&self, mut config: Config) -> Result<Connected, Error> {
        if let Some(password) = &self.password {
            config.password(&*password.current());
        }
        // Driven in a task of its own.
        let (client, connection) = config.connect(self.tls.clone()).await?;
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
