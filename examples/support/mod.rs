//! What the benchmark's example servers share: where they listen. A
//! directory module, so that cargo does not take it for an example.

use std::io;

use tokio::net::TcpListener;

/// Binds 127.0.0.1 on `PORT`, or on `default_port` when it is unset, and
/// says where. A `PORT` that is not a port number is an error, not the
/// default: a bench would otherwise load a server it did not mean to.
pub async fn listen(default_port: u16) -> io::Result<TcpListener> {
    let port = match std::env::var("PORT") {
        Ok(text) => text.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("PORT={text:?} is not a port number (0 to 65535)"),
            )
        })?,
        Err(_) => default_port,
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    Ok(listener)
}
