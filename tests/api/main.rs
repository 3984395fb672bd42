//! Integration tests: pulse on real sockets on 127.0.0.1.
//!
//! One test binary (faster to build and link than one per file). `helpers`
//! holds `spawn_app()` for the in-process server, `spawn_binary()` for the
//! real executable, and small HTTP/1.1, h2 and raw-TCP clients.

mod binary;
mod echo;
mod fuzz_corpus;
mod hardening;
mod helpers;
mod http2;
mod idle;
mod logging;
mod metrics;
mod rejections;
mod routes;
mod shutdown;
mod table;
mod tracing;

/// A test file in `tests/api/` runs only when a `mod` line above names it.
/// This fails, naming the file, when one was added without its line.
#[test]
fn every_file_in_tests_api_is_a_module_of_this_binary() {
    let declared: Vec<&str> = include_str!("main.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("mod "))
        .filter_map(|rest| rest.strip_suffix(';'))
        .collect();
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api");
    let mut files = 0;
    for entry in std::fs::read_dir(&folder).expect("tests/api") {
        let path = entry.expect("a directory entry").path();
        let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|ext| ext == "rs") && name != "main" {
            files += 1;
            assert!(
                declared.contains(&name),
                "tests/api/{name}.rs never runs: add `mod {name};` to tests/api/main.rs"
            );
        }
    }
    assert_eq!(files, declared.len(), "a `mod` line names no file");
}
