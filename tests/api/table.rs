//! The route table is the single source of truth: the metrics labels, the
//! 405 `Allow` header, the cache policy, the probe set of the SLI, the
//! OpenAPI document and the README's route table all agree with it.

use std::collections::BTreeSet;

use pulse::Config;
use pulse::routes::{Class, Route, Row, Verb};

use crate::helpers::{call, every_route_config, get, readme_section, spawn_app, test_config};

/// The methods as a row writes them: HEAD left out, since GET implies it.
fn written_methods(row: &Row) -> Vec<&'static str> {
    row.methods
        .iter()
        .filter(|verb| *verb != Verb::Head)
        .map(Verb::label)
        .collect()
}

/// Whether the row's GET may answer `status` on a fresh app: any 2xx, or
/// a status its OpenAPI operation declares (a 404 for a route whose GET
/// needs data first, the 500 of `/panic`).
fn acceptable_first_answer(row: &Row, status: u16) -> bool {
    let declared = (row.doc)()
        .of(Verb::Get)
        .answers
        .iter()
        .any(|(code, _, _)| *code == status.to_string());
    (200..300).contains(&status) || declared
}

#[tokio::test]
async fn every_row_answers_with_its_cache_policy_its_head_and_its_405() {
    let app = spawn_app(every_route_config()).await;
    for &route in Route::ALL {
        let row = route.row().unwrap();
        let path = row.example;
        if row.methods.contains(Verb::Get) {
            let answer = get(app.addr, path).await;
            assert!(
                acceptable_first_answer(row, answer.status()),
                "GET {path}: {} is neither 2xx nor declared in its OpenAPI operation",
                answer.status()
            );
            if answer.status() < 300 {
                assert_eq!(
                    answer.header("cache-control"),
                    Some(row.cache_control),
                    "{path}"
                );
            }
            // HEAD: GET's status and length, no body.
            let head = call(app.addr, "HEAD", path).await;
            assert_eq!(head.status(), answer.status(), "HEAD {path}");
            assert_eq!(head.body, "", "HEAD {path}");
            if route != Route::Metrics && route != Route::Health {
                assert_eq!(
                    head.header("content-length").map(str::to_owned),
                    Some(answer.body.len().to_string()),
                    "HEAD {path}"
                );
            }
        }
        let other = ["DELETE", "PATCH", "PUT", "POST", "GET"]
            .into_iter()
            .find(|method| !row.allow.split(", ").any(|allowed| allowed == *method))
            .expect("a method the row does not serve");
        let refused = call(app.addr, other, path).await;
        assert_eq!(refused.status(), 405, "{other} {path}");
        assert_eq!(refused.header("allow"), Some(row.allow), "{path}");
        assert_eq!(refused.header("cache-control"), Some("no-store"), "{path}");
    }
    // Every answer but a 2xx is not to be cached, a 404 included.
    let missing = get(app.addr, "/nope").await;
    assert_eq!(missing.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn the_metrics_route_labels_are_the_table_templates() {
    let app = spawn_app(every_route_config()).await;
    for &route in Route::ALL {
        let row = route.row().unwrap();
        call(app.addr, written_methods(row)[0], row.example).await;
    }
    get(app.addr, "/nope").await;
    let metrics = get(app.addr, "/metrics").await.body;
    let labels: BTreeSet<String> = metrics
        .lines()
        .filter(|line| line.starts_with("http_requests_total{"))
        .filter_map(|line| line.split("route=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect();
    let mut expected: BTreeSet<String> = Route::ALL
        .iter()
        .map(|route| route.label().to_owned())
        .collect();
    expected.insert("unmatched".to_owned());
    assert_eq!(labels, expected);
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_table() {
    for (fault_injection, database) in [(true, true), (false, true), (true, false), (false, false)] {
        let app = spawn_app(Config {
            fault_injection,
            ..if database { every_route_config() } else { test_config() }
        })
        .await;
        let answer = get(app.addr, "/openapi.json").await;
        assert_eq!(answer.status(), 200);
        let document = answer.json();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().expect("paths");
        let listed: BTreeSet<(String, String)> = paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|key| *key != "parameters")
                    .map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let expected: BTreeSet<(String, String)> = Route::ALL
            .iter()
            .map(|route| route.row().unwrap())
            .filter(|row| fault_injection || row.class != Class::Fault)
            .filter(|row| database || row.class != Class::Database)
            .flat_map(|row| {
                row.allow
                    .split(", ")
                    .map(move |method| (method.to_owned(), row.template.to_owned()))
            })
            .collect();
        assert_eq!(listed, expected, "fault injection {fault_injection}, database {database}");
        for (path, item) in paths {
            let route = Route::ALL
                .iter()
                .find(|route| route.label() == path)
                .unwrap();
            let documented: Vec<&str> = item["parameters"]
                .as_array()
                .map(|parameters| {
                    parameters
                        .iter()
                        .map(|parameter| parameter["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            let declared: Vec<&str> = route.row().unwrap().parameters().collect();
            assert_eq!(documented, declared, "{path}");
        }
    }
}

/// The README's route table, and only the table: the first run of `|`
/// lines in its Routes section. A row elsewhere in the section (the
/// add-a-route steps show one) is not counted.
fn readme_route_table() -> Vec<&'static str> {
    readme_section("Routes")
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .collect()
}

#[test]
fn the_readme_route_table_lists_exactly_the_table() {
    let table = readme_route_table();
    assert!(table.len() > 2, "the README's Routes section has no table");
    let listed: BTreeSet<String> = table
        .iter()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = Route::ALL
        .iter()
        .map(|&route| {
            let row = route.row().unwrap();
            format!("{} {}", written_methods(row).join(", "), row.template)
        })
        .collect();
    assert_eq!(
        listed, expected,
        "README rows are `METHODS /template`, HEAD left out"
    );
}

#[test]
fn the_sli_leaves_out_exactly_the_probes() {
    let probes: BTreeSet<&str> = Route::ALL
        .iter()
        .filter(|route| route.is_probe())
        .map(|route| route.label())
        .collect();
    for (file, text, separator, at_least) in [
        (
            "rules/pulse.yml",
            include_str!("../../monitoring/prometheus/rules/pulse.yml"),
            "route!~\"",
            4,
        ),
        (
            "pulse-overview.json",
            include_str!("../../monitoring/grafana/dashboards/pulse-overview.json"),
            "route!~\\\"",
            1,
        ),
    ] {
        let mut seen = 0;
        for expression in text.split(separator).skip(1) {
            let regex = expression.split(['"', '\\']).next().unwrap();
            let excluded: BTreeSet<&str> = regex.split('|').collect();
            assert_eq!(excluded, probes, "{file}: route!~\"{regex}\"");
            seen += 1;
        }
        assert!(
            seen >= at_least,
            "{file}: the SLI expressions were not found"
        );
    }
}
