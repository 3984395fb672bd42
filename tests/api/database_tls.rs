//! TLS to a real PostgreSQL: each `sslmode` pulse accepts, and the
//! certificates `verify-ca` and `verify-full` must refuse.
//!
//! `#[ignore]`d in a plain `cargo test`: `scripts/e2e/database.sh` turns
//! TLS on in its throwaway cluster (lib.sh's `enable_postgres_tls`) and sets
//!   PULSE_TEST_DATABASE_TLS_URL   a role that PostgreSQL lets in over TLS
//!                                 only (pg_hba `hostnossl ... reject`), no
//!                                 sslmode
//!   PULSE_TEST_DATABASE_CA        the CA that signed the server's
//!                                 certificate, which names `localhost` only
//!   PULSE_TEST_DATABASE_OTHER_CA  a CA that signed nothing there
//!   PULSE_TEST_DATABASE_SOCKET_DIR  the cluster's Unix socket directory
//! Without them the tests fail, never pass empty.

use std::time::Duration;

use crate::helpers::*;

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: scripts/e2e/database.sh runs these tests")
    })
}

/// The TLS-only role's URL with `host` for 127.0.0.1 and `query` after `?`.
fn tls_url(host: &str, query: &str) -> String {
    let url = setting("PULSE_TEST_DATABASE_TLS_URL").replace("@127.0.0.1:", &format!("@{host}:"));
    format!("{url}?{query}")
}

#[tokio::test]
#[ignore = "needs PostgreSQL with TLS: scripts/e2e/database.sh runs it"]
async fn every_tls_mode_stores_and_reads_a_note() {
    let ca = setting("PULSE_TEST_DATABASE_CA");
    for (host, query) in [
        // libpq's default: TLS when the server offers it, as this one does.
        ("127.0.0.1", "sslmode=prefer".to_owned()),
        ("127.0.0.1", "sslmode=require".to_owned()),
        // The certificate names `localhost`: verify-ca does not ask.
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={ca}")),
        ("localhost", format!("sslmode=verify-full&sslrootcert={ca}")),
    ] {
        let app = spawn_app(database_config(&tls_url(host, &query))).await;
        wait_ready(&app).await;
        let text = format!("over TLS with {query}");
        let created = post_json(app.addr, "/notes", &serde_json::json!({ "text": text }).to_string()).await;
        assert_eq!(created.status(), 201, "{query}: {}", created.body);
        let location = created.header("location").expect("Location").to_owned();
        let read = get(app.addr, &location).await;
        assert_eq!(read.status(), 200, "{query}");
        assert_eq!(read.json()["text"], text);
    }
}

/// Over a Unix socket PostgreSQL offers no TLS, and libpq ignores sslmode
/// there: the default `prefer` and an explicit `require` both connect.
#[tokio::test]
#[ignore = "needs PostgreSQL with TLS: scripts/e2e/database.sh runs it"]
async fn sslmode_is_ignored_over_a_unix_socket() {
    let socket_dir = setting("PULSE_TEST_DATABASE_SOCKET_DIR");
    // The TLS role's URL (its credentials, 127.0.0.1 and the port, the
    // database), pointed at the socket instead.
    let tcp = setting("PULSE_TEST_DATABASE_TLS_URL");
    let (credentials, rest) = tcp.rsplit_once('@').expect("USER@HOST in the URL");
    let (address, database) = rest.split_once('/').expect("/DATABASE in the URL");
    let port = address.rsplit_once(':').expect("HOST:PORT in the URL").1;
    for sslmode in ["", "&sslmode=require"] {
        let url = format!("{credentials}@/{database}?host={socket_dir}&port={port}{sslmode}");
        let app = spawn_app(database_config(&url)).await;
        wait_ready(&app).await;
        let created = post_json(app.addr, "/notes", r#"{"text":"over a Unix socket"}"#).await;
        assert_eq!(created.status(), 201, "{sslmode}: {}", created.body);
    }
}

/// What makes the test above a test of TLS: the same role in plain TCP is
/// turned away by PostgreSQL.
#[tokio::test]
#[ignore = "needs PostgreSQL with TLS: scripts/e2e/database.sh runs it"]
async fn the_tls_only_role_is_refused_without_tls() {
    let url = tls_url("127.0.0.1", "sslmode=disable");
    let error = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(_) => panic!("PostgreSQL let the TLS-only role in without TLS"),
        Err(error) => error,
    };
    let message = error.as_db_error().map(|db| db.message().to_owned()).unwrap_or_default();
    assert!(message.contains("no encryption"), "{error}");
}

/// `pulse migrate` with a certificate it must refuse: exit 1 at once, with
/// rustls's reason and what to check, instead of waiting out its 30 s.
#[test]
#[ignore = "needs PostgreSQL with TLS: scripts/e2e/database.sh runs it"]
fn a_refused_certificate_is_a_clear_error_not_a_wait() {
    let ca = setting("PULSE_TEST_DATABASE_CA");
    let other_ca = setting("PULSE_TEST_DATABASE_OTHER_CA");
    for (host, query, reason) in [
        ("localhost", format!("sslmode=verify-full&sslrootcert={other_ca}"), "UnknownIssuer"),
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={other_ca}"), "UnknownIssuer"),
        // The right CA, but the certificate does not name 127.0.0.1.
        ("127.0.0.1", format!("sslmode=verify-full&sslrootcert={ca}"), "not valid for name"),
    ] {
        let started = std::time::Instant::now();
        let output = binary_command(&temp_dir("tls-refused"), &[("PULSE_DATABASE_URL", &tls_url(host, &query))])
            .arg("migrate")
            .output()
            .expect("run pulse migrate");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{query}: {stderr}");
        assert!(stderr.contains(reason), "{query}: {stderr}");
        assert!(stderr.contains("check sslrootcert"), "{query}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(10), "{query}: took {:?}", started.elapsed());
    }
}

/// The server stops with the reason too (exit 1 from main), so that an
/// orchestrator shows it and a restart re-reads a corrected sslrootcert.
#[tokio::test]
#[ignore = "needs PostgreSQL with TLS: scripts/e2e/database.sh runs it"]
async fn a_refused_certificate_stops_the_server_with_the_reason() {
    let other_ca = setting("PULSE_TEST_DATABASE_OTHER_CA");
    let url = tls_url("localhost", &format!("sslmode=verify-full&sslrootcert={other_ca}"));
    let app = spawn_app(database_config(&url)).await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), app.server)
        .await
        .expect("pulse kept running with a certificate it refused")
        .expect("the server task");
    let reason = outcome.expect_err("pulse stopped without an error");
    assert!(reason.contains("UnknownIssuer"), "{reason}");
}

#[test]
fn a_missing_ca_file_is_a_bad_setting_named_at_startup() {
    let output = binary_command(
        &temp_dir("tls-missing-ca"),
        &[(
            "PULSE_DATABASE_URL",
            "postgres://pulse@localhost/pulse?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )],
    )
    .output()
    .expect("run pulse");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PULSE_DATABASE_URL"), "{stderr}");
    assert!(stderr.contains("sslrootcert=/nonexistent/ca.pem cannot be read"), "{stderr}");
}
