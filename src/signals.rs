//! Turns SIGTERM and SIGINT into a [`ShutdownRequest`].
//!
//! The handlers are installed before pulse binds, because as PID 1 in a
//! container a signal without a handler is ignored, and `podman stop` would
//! have to wait for SIGKILL.

use std::time::Duration;

use pulse::ShutdownRequest;

/// Exit code when a second signal cuts the graceful shutdown short.
pub const EXIT_FORCED: i32 = 130;

pub struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Must be called inside the tokio runtime.
    pub fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the next signal.
    pub async fn recv(&mut self) -> ShutdownRequest {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => ShutdownRequest::Terminate,
                _ = self.interrupt.recv() => ShutdownRequest::Interrupt,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            ShutdownRequest::Interrupt
        }
    }

    /// Resolves on the first signal, and from then on exits the process at
    /// once on a second one: an operator who insists gets no more waiting.
    pub async fn shutdown(mut self) -> ShutdownRequest {
        let first = self.recv().await;
        tokio::spawn(async move {
            let second = self.recv().await;
            log::warn!("shutdown: {second:?} received again; exiting at once");
            // At once means at once: a blocked stdout gets a moment, no more.
            pulse::logging::flush(Duration::from_millis(200));
            std::process::exit(EXIT_FORCED);
        });
        first
    }
}
