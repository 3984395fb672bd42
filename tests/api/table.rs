//! The route table is the single source of truth: the metrics labels, the
//! 405 `Allow` header, the cache policy, the probe set of the SLI, the
//! OpenAPI document and the README's route table all agree with it.

use std::collections::BTreeSet;

use pulse::Config;
use pulse::routes::{Class, Route};

use crate::helpers::{call, get, readme_section, spawn_app, test_config};

/// A path that the row matches: its template with a parameter filled in.
fn example_path(template: &str) -> String {
    template.replace("{ms}", "1").replace("{code}", "200")
}

fn first_method(route: Route) -> &'static str {
    route.row().unwrap().allow.split(", ").next().unwrap()
}

#[tokio::test]
async fn every_row_answers_with_its_cache_policy_and_its_405() {
    let app = spawn_app(test_config()).await;
    for &route in Route::ALL {
        let row = route.row().unwrap();
        let path = example_path(row.template);
        if row.methods.contains(&pulse::routes::Verb::Get) {
            let answer = get(app.addr, &path).await;
            if route != Route::Panic {
                assert!(answer.status() < 300, "{path}: {}", answer.status());
                assert_eq!(
                    answer.header("cache-control"),
                    Some(row.cache_control),
                    "{path}"
                );
            }
        }
        let other = if row.allow.contains("GET") {
            "DELETE"
        } else {
            "GET"
        };
        let refused = call(app.addr, other, &path).await;
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
    let app = spawn_app(test_config()).await;
    for &route in Route::ALL {
        if route != Route::Panic {
            let path = example_path(route.row().unwrap().template);
            call(app.addr, first_method(route), &path).await;
        }
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
        .filter(|&&route| route != Route::Panic)
        .map(|route| route.label().to_owned())
        .collect();
    expected.insert("unmatched".to_owned());
    assert_eq!(labels, expected);
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_table() {
    for fault_injection in [true, false] {
        let app = spawn_app(Config {
            fault_injection,
            ..test_config()
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
            .flat_map(|row| {
                row.allow
                    .split(", ")
                    .map(move |method| (method.to_owned(), row.template.to_owned()))
            })
            .collect();
        assert_eq!(listed, expected, "fault injection {fault_injection}");
        for (path, item) in paths {
            let route = Route::ALL
                .iter()
                .find(|route| route.label() == path)
                .unwrap();
            let documented = item["parameters"][0]["name"].as_str();
            assert_eq!(documented, route.row().unwrap().parameter, "{path}");
        }
    }
}

#[test]
fn the_readme_route_table_lists_exactly_the_table() {
    let listed: BTreeSet<String> = readme_section("Routes")
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|cell| cell.contains(" /"))
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = Route::ALL
        .iter()
        .map(|&route| format!("{} {}", first_method(route), route.label()))
        .collect();
    assert_eq!(listed, expected, "README rows are `METHOD /template`");
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
