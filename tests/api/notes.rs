//! `/notes` against a real PostgreSQL: CRUD over HTTP/1.1 and h2c, paging,
//! ETags, refusals, SQL-shaped text, migrations (once for three at a time,
//! a clear stop when they cannot run, `pulse migrate`), a rotated password.
//!
//! The tests that need PostgreSQL are `#[ignore]`d in a plain `cargo test`:
//! `scripts/e2e/database.sh` starts a throwaway cluster, sets
//! `PULSE_TEST_DATABASE_URL` and runs them; without it they fail, never
//! pass empty. What needs no database (the routes' absence, readiness while
//! it cannot be reached) runs everywhere.

use std::time::{Duration, Instant};

use http_body_util::Empty;
use hyper::Version;
use pulse::secrets::{self, SecretKind};

use crate::helpers::*;

const NEEDS_POSTGRES: &str = "needs PostgreSQL: scripts/e2e/database.sh runs it";

/// The cluster's URL; the role in it may create databases.
fn cluster_url() -> String {
    std::env::var("PULSE_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("PULSE_TEST_DATABASE_URL is not set: {NEEDS_POSTGRES}")
    })
}

/// A database of its own for one test, so tests run side by side.
async fn fresh_database() -> String {
    let cluster = cluster_url();
    let name = format!("pulse_test_{:016x}", rand_u64());
    let client = connect(&cluster).await;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("CREATE DATABASE");
    let (base, query) = cluster.split_once('?').unwrap_or((&cluster, ""));
    let base = base.rsplit_once('/').expect("a database in the URL").0;
    format!("{base}/{name}?{query}")
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    hasher.finish()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(connection);
    client
}

async fn ready_app() -> (TestApp, String) {
    let url = fresh_database().await;
    let app = spawn_app(database_config(&url)).await;
    wait_ready(&app).await;
    (app, url)
}

/// A request in `version`: h2 needs the absolute URI.
fn versioned(version: Version, app: &TestApp, method: &str, path: &str) -> hyper::http::request::Builder {
    let builder = request(method, app.addr, path).version(version);
    if version == Version::HTTP_2 {
        builder.uri(format!("http://{}{path}", app.addr))
    } else {
        builder
    }
}

async fn send_as(version: Version, app: &TestApp, method: &str, path: &str) -> Answer {
    send(app.addr, versioned(version, app, method, path).body(Empty::new()).unwrap()).await
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/e2e/database.sh runs it"]
async fn notes_are_created_read_and_deleted_over_http1_and_h2c() {
    let (app, _) = ready_app().await;
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let text = format!("buy milk ({version:?})");
        let created = send(
            app.addr,
            versioned(version, &app, "POST", "/notes")
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(hyper::body::Bytes::from(
                    serde_json::json!({ "text": text }).to_string(),
                )))
                .unwrap(),
        )
        .await;
        assert_eq!(created.status(), 201, "{}", created.body);
        let note = created.json();
        let location = created.header("location").expect("Location").to_owned();
        assert_eq!(location, format!("/notes/{}", note["id"]));
        assert_eq!(note["text"], text);
        assert!(note["created_at"].as_str().unwrap().ends_with('Z'));

        let read = send_as(version, &app, "GET", &location).await;
        assert_eq!(read.status(), 200);
        assert_eq!(read.json(), note);
        let etag = read.header("etag").expect("ETag").to_owned();
        assert_eq!(read.header("cache-control"), Some("no-cache"));

        let head = send_as(version, &app, "HEAD", &location).await;
        assert_eq!(head.status(), 200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("etag"), Some(etag.as_str()));

        let revalidated = send(
            app.addr,
            versioned(version, &app, "GET", &location)
                .header("if-none-match", format!("\"other\", {etag}"))
                .body(Empty::new())
                .unwrap(),
        )
        .await;
        assert_eq!(revalidated.status(), 304);
        assert!(revalidated.body.is_empty());
        assert_eq!(revalidated.header("etag"), Some(etag.as_str()));
        assert_eq!(revalidated.header("cache-control"), Some("no-cache"));

        assert_eq!(send_as(version, &app, "DELETE", &location).await.status(), 204);
        assert_eq!(send_as(version, &app, "GET", &location).await.status(), 404);
        assert_eq!(send_as(version, &app, "DELETE", &location).await.status(), 404);
    }
}

/// A fresh database's URL through the pooler `PULSE_TEST_DATABASE_POOLER`
/// (HOST:PORT, PgBouncer in transaction mode) instead of straight to the
/// cluster.
async fn fresh_database_through_the_pooler() -> String {
    let pooler = std::env::var("PULSE_TEST_DATABASE_POOLER").unwrap_or_else(|_| {
        panic!("PULSE_TEST_DATABASE_POOLER is not set: {NEEDS_POSTGRES}")
    });
    let direct = fresh_database().await;
    let (credentials, rest) = direct.rsplit_once('@').expect("USER@HOST in the URL");
    let database = rest.split_once('/').expect("/DATABASE in the URL").1;
    format!("{credentials}@{pooler}/{database}")
}

/// Four requests at a time, 30 times, over a pool of 4 connections: every
/// route's query, on whichever of the pooler's server connections is free.
/// Returns the answers that were not 2xx.
async fn failures_under_load(url: &str, statements: pulse::database::Statements) -> Vec<String> {
    let mut settings = database_settings(url);
    settings.statements = statements;
    let app = spawn_app(pulse::config::Config {
        database: Some(settings),
        ..test_config()
    })
    .await;
    wait_ready(&app).await;
    let created = post_json(app.addr, "/notes", r#"{"text":"first"}"#).await;
    assert_eq!(created.status(), 201, "{}", created.body);
    let first = created.header("location").expect("Location").to_owned();
    let mut failures = Vec::new();
    for round in 0..30 {
        let addr = app.addr;
        let text = format!(r#"{{"text":"round {round}"}}"#);
        let (posted, read, listed, deleted) = tokio::join!(
            post_json(addr, "/notes", &text),
            get(addr, &first),
            get(addr, "/notes?limit=5"),
            call(addr, "DELETE", "/notes/999999"),
        );
        for (route, answer, expected) in [
            ("POST /notes", posted, 201),
            ("GET /notes/{id}", read, 200),
            ("GET /notes", listed, 200),
            ("DELETE /notes/{id}", deleted, 404),
        ] {
            if answer.status() != expected {
                failures.push(format!("{route}: {} {}", answer.status(), answer.body));
            }
        }
    }
    failures
}

/// Behind a pooler in transaction mode, as managed databases offer one,
/// each query may run on another server connection than the last.
/// `PULSE_DATABASE_STATEMENTS=unprepared` then serves every route.
#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/e2e/database.sh runs it"]
async fn unprepared_statements_serve_every_route_through_a_transaction_mode_pooler() {
    use pulse::database::Statements;
    let url = fresh_database_through_the_pooler().await;
    let failures = failures_under_load(&url, Statements::Unprepared).await;
    assert!(failures.is_empty(), "{} failed: {failures:#?}", failures.len());
    // What the setting is for: with statements prepared on one server
    // connection and run on another, the same load fails. Were the pooler
    // not in transaction mode, this test would prove nothing.
    let failures = failures_under_load(&url, Statements::Prepared).await;
    assert!(
        !failures.is_empty(),
        "prepared statements worked through the pooler: is it in transaction mode?"
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/e2e/database.sh runs it"]
async fn the_list_pages_by_id_and_links_the_next_page() {
    let (app, _) = ready_app().await;
    let mut created = Vec::new();
    for n in 0..5 {
        let answer = post_json(app.addr, "/notes", &format!(r#"{{"text": "note {n}"}}"#)).await;
        assert_eq!(answer.status(), 201);
        created.push(answer.json()["id"].as_i64().unwrap());
    }
    let mut listed = Vec::new();
    let mut next = Some("/notes?limit=2".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        let page = get(app.addr, &path).await;
        assert_eq!(page.status(), 200, "{}", page.body);
        let body = page.json();
        let notes = body["notes"].as_array().unwrap();
        assert!(notes.len() <= 2);
        listed.extend(notes.iter().map(|note| note["id"].as_i64().unwrap()));
        next = body["next"].as_str().map(str::to_owned);
        match &next {
            Some(next) => assert_eq!(page.header("link"), Some(format!("<{next}>; rel=\"next\"").as_str())),
            None => assert_eq!(page.header("link"), None),
        }
        pages += 1;
        assert!(pages <= 3, "more pages than 5 notes need");
    }
    assert_eq!(listed, created);
    assert_eq!(pages, 3);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/e2e/database.sh runs it"]
async fn bad_ids_pages_and_bodies_are_refused_with_the_reason() {
    let (app, _) = ready_app().await;
    for path in ["/notes/0", "/notes/x", "/notes/-1", "/notes/99999999999999999999"] {
        let answer = get(app.addr, path).await;
        assert_eq!(answer.status(), 400, "{path}");
        assert!(answer.json()["error"].as_str().unwrap().contains("id"), "{path}");
    }
    for path in ["/notes?limit=0", "/notes?limit=101", "/notes?after=-1", "/notes?limit=x"] {
        assert_eq!(get(app.addr, path).await.status(), 400, "{path}");
    }
    let long = "x".repeat(1001);
    for body in [
        "{}".to_owned(),
        r#"{"text": ""}"#.to_owned(),
        format!(r#"{{"text": "{long}"}}"#),
        r#"{"text": 5}"#.to_owned(),
        r#"{"text": "a", "more": 1}"#.to_owned(),
        r#"{"text": "nul \u0000"}"#.to_owned(),
        "not json".to_owned(),
    ] {
        let answer = post_json(app.addr, "/notes", &body).await;
        assert_eq!(answer.status(), 400, "{body}: {}", answer.body);
    }
    let plain = send(
        app.addr,
        request("POST", app.addr, "/notes")
            .header("content-type", "text/plain")
            .body(http_body_util::Full::new(hyper::body::Bytes::from("hi")))
            .unwrap(),
    )
    .await;
    assert_eq!(plain.status(), 415);
    // None of it was stored.
    assert_eq!(get(app.addr, "/notes").await.json()["notes"], serde_json::json!([]));
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/e2e/database.sh runs it"]
async fn the_longest_note_in_its_longest_spelling_is_stored() {
    // 1000 characters outside the Basic Multilingual Plane, each escaped as
    // a surrogate pair: a body of 12,011 bytes that the schema allows.
    let (app, _) = ready_app().await;
    let escaped = "\\uD83D\\uDE00".repeat(1000);
    let body = format!(r#"{{"text": "{escaped}"}}"#);
    assert!(body.len() > 12_000, "{}", body.len());
    let answer = post_json(app.addr, "/notes", &body).await;
    assert_eq!(answer.status(), 201, "{}", answer.body);
    assert_eq!(answer.json()["text"], "\u{1F600}".repeat(1000));
    // The cap still holds past that: 16 KiB of padding is refused unread.
    let padded = format!(r#"{{"text": "a"{}}}"#, " ".repeat(16 * 1024));
    assert_eq!(post_json(app.addr, "/notes", &padded).await.status(), 413);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/e2e/database.sh runs it"]
async fn text_shaped_like_sql_is_stored_verbatim() {
    let (app, url) = ready_app().await;
    let texts = [
        "'); DROP TABLE notes; --",
        "' OR '1'='1",
        "\"; DELETE FROM notes WHERE ''='",
        "$1 $$ $body$ \\x00 \\'",
        "Robert'); DROP TABLE pulse_schema_migrations;--",
        "1; SELECT pg_sleep(10)",
        "é 日本 🦀 \u{202e}",
    ];
    for text in texts {
        let created = post_json(app.addr, "/notes", &serde_json::json!({ "text": text }).to_string()).await;
        assert_eq!(created.status(), 201, "{text}");
        let read = get(app.addr, created.header("location").unwrap()).await;
        assert_eq!(read.json()["text"], text);
    }
    let client = connect(&url).await;
    let stored: Vec<String> = client
        .query("SELECT text FROM notes ORDER BY id", &[])
        .await
        .expect("the notes table is still there")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored, texts);
    let migrations: i64 = client
        .query_one("SELECT count(*) FROM pulse_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(migrations, 1);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/e2e/database.sh runs it"]
async fn three_replicas_started_at_once_apply_each_migration_once() {
    let url = fresh_database().await;
    let apps = [
        spawn_app(database_config(&url)).await,
        spawn_app(database_config(&url)).await,
        spawn_app(database_config(&url)).await,
    ];
    for app in &apps {
        wait_ready(app).await;
        assert!(!app.server.is_finished(), "a replica stopped");
    }
    let client = connect(&url).await;
    let rows = client
        .query("SELECT version FROM pulse_schema_migrations ORDER BY version", &[])
        .await
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    let known: Vec<i64> = pulse::database::migrations::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(versions, known);
}

#[test]
#[ignore = "needs PostgreSQL: scripts/e2e/database.sh runs it"]
fn pulse_migrate_applies_once_then_finds_nothing_to_do() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = runtime.block_on(fresh_database());
    let dir = temp_dir("migrate");
    let run = || {
        binary_command(&dir, &[("PULSE_DATABASE_URL", &url)])
            .arg("migrate")
            .output()
            .expect("run pulse migrate")
    };
    let first = run();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stdout} {}", String::from_utf8_lossy(&first.stderr));
    assert!(stdout.contains("applied [1]"), "{stdout}");
    let second = run();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("up to date at version 1"));
}

#[test]
fn pulse_migrate_without_a_database_url_is_a_usage_error() {
    let output = binary_command(&temp_dir("migrate-unset"), &[])
        .arg("migrate")
        .output()
        .expect("run pulse migrate");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PULSE_DATABASE_URL"));
}

#[test]
#[ignore = "needs PostgreSQL: scripts/e2e/database.sh runs it"]
fn a_schema_newer_than_the_binary_stops_pulse_with_the_reason() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = runtime.block_on(async {
        let url = fresh_database().await;
        let client = connect(&url).await;
        client
            .batch_execute(
                "CREATE TABLE pulse_schema_migrations (version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
                 INSERT INTO pulse_schema_migrations (version, name) VALUES (999, 'from the future')",
            )
            .await
            .unwrap();
        url
    });
    let mut binary = Binary::spawn("newer-schema", &[("PULSE_DATABASE_URL", &url)]);
    let status = wait_exit(&mut binary.child, Duration::from_secs(15)).expect("pulse stopped");
    assert_eq!(status.code(), Some(1));
    let line = binary.wait_for_line("pulse stopped", Duration::from_secs(1));
    assert!(line.contains("schema version 999"), "{line}");
}

/// A query PostgreSQL refuses is a 500 to the client, and the log says
/// what PostgreSQL said, not only that it refused.
#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/e2e/database.sh runs it"]
async fn a_refused_query_is_a_500_and_the_log_gives_postgresqls_reason() {
    let url = fresh_database().await;
    let mut binary = Binary::spawn("refused-query", &[("PULSE_DATABASE_URL", &url)]);
    let addr = binary.wait_until_listening();
    binary.wait_for_line("applied migrations", Duration::from_secs(15));
    connect(&url)
        .await
        .batch_execute("ALTER TABLE notes RENAME TO notes_elsewhere")
        .await
        .unwrap();
    let answer = get(addr, "/notes/1").await;
    assert_eq!(answer.status(), 500, "{}", answer.body);
    assert!(!answer.body.contains("notes"), "the reason stays in the log: {}", answer.body);
    let line = binary.wait_for_line("query refused", Duration::from_secs(2));
    assert!(
        line.contains(r#"relation "notes" does not exist (SQLSTATE 42P01)"#),
        "{line}"
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/e2e/database.sh runs it"]
async fn a_rotated_password_file_is_used_for_new_connections() {
    let url = fresh_database().await;
    let admin = connect(&url).await;
    // A role of its own, so the test's own password stays as it is.
    let role = format!("rotating_{:08x}", rand_u64() as u32);
    admin
        // pragma: allowlist nextline secret (a throwaway role's test password)
        .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'first-password-0001'; GRANT ALL ON SCHEMA public TO {role}; GRANT {role} TO CURRENT_USER"))
        .await
        .unwrap();
    let dir = temp_dir("rotate");
    let file = dir.join("password");
    std::fs::write(&file, "first-password-0001\n").unwrap();
    let (credentials, database) = url.split_once('@').unwrap();
    let no_password = format!("postgres://{role}@{database}");
    let _ = credentials;
    let mut config = database_config(&no_password);
    let settings = config.database.as_mut().unwrap();
    settings.password = Some(
        secrets::lookup(SecretKind::DatabasePassword, |name| {
            (name == "PULSE_DATABASE_PASSWORD_FILE").then(|| file.to_str().unwrap().to_owned())
        })
        .unwrap()
        .unwrap(),
    );
    let app = spawn_app(config).await;
    wait_ready(&app).await;
    assert_eq!(get(app.addr, "/notes").await.status(), 200);

    admin
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD 'second-password-0002'"))
        .await
        .unwrap();
    std::fs::write(&file, "second-password-0002\n").unwrap();
    // Close the pool's connections: the next ones must log in anew.
    admin
        .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", &[&role])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(app.addr, "/notes").await;
        if answer.status() == 200 {
            break;
        }
        assert_eq!(answer.status(), 503, "{}", answer.body);
        assert!(Instant::now() < deadline, "the new password was never used");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn without_a_database_the_notes_routes_do_not_exist() {
    let app = spawn_app(test_config()).await;
    assert_eq!(get(app.addr, "/notes").await.status(), 404);
    assert_eq!(get(app.addr, "/notes/1").await.status(), 404);
    let document = get(app.addr, "/openapi.json").await.json();
    assert!(document["paths"].get("/notes").is_none());
    assert!(get(app.addr, "/health").await.json().get("checks").is_none());
}

#[tokio::test]
async fn while_the_database_cannot_be_reached_pulse_is_alive_unready_and_answers_503() {
    let app = spawn_app(every_route_config()).await;
    assert_eq!(get(app.addr, "/livez").await.status(), 200);
    let ready = get(app.addr, "/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json()["status"], "waiting");
    assert_eq!(get(app.addr, "/health").await.json()["checks"]["database"], "starting");
    let started = Instant::now();
    let answer = get(app.addr, "/notes/1").await;
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let document = get(app.addr, "/openapi.json").await.json();
    let notes = &document["paths"]["/notes"];
    assert!(notes["post"]["requestBody"].is_object());
    assert!(notes["post"]["responses"]["201"]["headers"]["Location"].is_object());
    assert!(notes["get"]["requestBody"].is_null());
    let note = &document["paths"]["/notes/{id}"];
    assert!(note["delete"]["responses"]["204"].is_object());
    assert!(note["get"]["responses"]["304"]["headers"]["ETag"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/e2e/database.sh runs it"]
async fn each_query_is_a_child_span_without_its_parameters() {
    const TEXT: &str = "a parameter that must not leave pulse 4f1c";
    let url = fresh_database().await;
    let (endpoint, collected) = fake_collector();
    let mut pulse = Binary::spawn(
        "query-spans",
        &[
            ("PULSE_DATABASE_URL", url.as_str()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let addr = pulse.wait_until_listening();
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(addr, "/readyz").await.status() != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created = post_json(addr, "/notes", &serde_json::json!({ "text": TEXT }).to_string()).await;
    assert_eq!(created.status(), 201);
    let traceparent = created.header("traceparent").unwrap().to_owned();
    let request_span = traceparent.split('-').nth(2).unwrap().to_owned();
    let trace_id = traceparent.split('-').nth(1).unwrap().to_owned();
    let spans = loop {
        let bodies = collected.lock().unwrap().join("\n");
        let spans: Vec<serde_json::Value> = bodies
            .split("\r\n\r\n")
            .filter_map(|part| serde_json::from_str::<serde_json::Value>(part.lines().next()?).ok())
            .flat_map(|export| {
                export["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|span| span["traceId"] == trace_id.as_str())
            .collect();
        if spans.len() >= 2 || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let query = spans
        .iter()
        .find(|span| span["kind"] == 3)
        .unwrap_or_else(|| panic!("no client span in {spans:?}"));
    assert_eq!(query["name"], "insert_note");
    assert_eq!(query["parentSpanId"], request_span.as_str());
    let attributes: Vec<(String, String)> = query["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap().to_owned(), a["value"]["stringValue"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        attributes,
        [
            ("db.system.name".to_owned(), "postgresql".to_owned()),
            ("db.operation.name".to_owned(), "insert_note".to_owned()),
        ]
    );
    let everything = collected.lock().unwrap().join("\n");
    assert!(!everything.contains("4f1c"), "a query parameter reached the collector");
    assert!(!everything.contains("INSERT"), "the SQL reached the collector");
}
