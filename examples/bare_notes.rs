//! The database benchmark's reference: the plainest server that does what
//! `/notes` does. hyper-util's `auto::Builder` (as `bare_auto`), a
//! tokio-postgres pool of the same size and timeouts as pulse's, and the
//! same two queries, prepared once per connection: `POST /notes` inserts
//! `{"text": ...}` and answers 201 with the note, `GET /notes/{id}` selects
//! it. No routing table, metrics, logs, request ids, spans or body limits:
//! against it, `scripts/bench/notes.sh` isolates what pulse adds around a
//! query.
//!
//! Run: `PULSE_DATABASE_URL=postgres://... PORT=8083 cargo run --release --example bare_notes`

use std::convert::Infallible;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

mod support;

/// pulse's defaults: PULSE_DATABASE_POOL_SIZE and PULSE_DATABASE_TIMEOUT.
const POOL_SIZE: usize = 8;
const TIMEOUT: Duration = Duration::from_secs(2);

/// pulse's two queries (src/routes/notes.rs), word for word.
macro_rules! columns {
    () => {
        "id, text, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    };
}
const INSERT_NOTE: &str = concat!(
    "INSERT INTO notes (text) VALUES ($1) RETURNING ",
    columns!()
);
const SELECT_NOTE: &str = concat!("SELECT ", columns!(), " FROM notes WHERE id = $1");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("PULSE_DATABASE_URL").map_err(|_| "set PULSE_DATABASE_URL")?;
    let config = tokio_postgres::Config::from_str(&url)?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(TIMEOUT))
        .create_timeout(Some(TIMEOUT))
        .build()?;
    pulse::server::runtime(pulse::server::serving_threads(None))?.block_on(serve(pool))?;
    Ok(())
}

async fn serve(pool: Pool) -> std::io::Result<()> {
    let listener = support::listen(8083).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let pool = pool.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let pool = pool.clone();
                async move { Ok::<_, Infallible>(answer(&pool, request).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(pool: &Pool, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let id = request
        .uri()
        .path()
        .strip_prefix("/notes/")
        .and_then(|id| id.parse::<i64>().ok());
    let outcome = match (request.method(), id) {
        (&Method::POST, None) => create(pool, request).await,
        (&Method::GET, Some(id)) => read(pool, id).await,
        _ => Err(StatusCode::NOT_FOUND),
    };
    match outcome {
        Ok((status, body)) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response
        }
        Err(status) => {
            let mut response = Response::new(Full::default());
            *response.status_mut() = status;
            response
        }
    }
}

async fn create(
    pool: &Pool,
    request: Request<Incoming>,
) -> Result<(StatusCode, String), StatusCode> {
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(|_| StatusCode::BAD_REQUEST)?
        .to_bytes();
    let document: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let text = document["text"].as_str().ok_or(StatusCode::BAD_REQUEST)?;
    let client = pool
        .get()
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let statement = client
        .prepare_cached(INSERT_NOTE)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let row = client
        .query_one(&statement, &[&text])
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok((StatusCode::CREATED, note(&row)))
}

async fn read(pool: &Pool, id: i64) -> Result<(StatusCode, String), StatusCode> {
    let client = pool
        .get()
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let statement = client
        .prepare_cached(SELECT_NOTE)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let row = client
        .query_opt(&statement, &[&id])
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?
        .ok_or(StatusCode::NOT_FOUND)?;
    Ok((StatusCode::OK, note(&row)))
}

fn note(row: &tokio_postgres::Row) -> String {
    let id: i64 = row.get(0);
    let text: &str = row.get(1);
    let created: &str = row.get(2);
    serde_json::json!({"id": id, "text": text, "created_at": created}).to_string()
}
