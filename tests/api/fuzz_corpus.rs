//! Replays every fuzz target's committed corpus (`fuzz/corpus/TARGET`) and
//! crash regressions (`fuzz/regressions/TARGET`) through the same checks the
//! fuzz targets run, on stable Rust, in every `cargo test`.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8]), seeds: &[&[u8]]) {
    for seed in seeds {
        check(seed);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            // A failing input names itself: the panic message carries the path.
            let outcome = std::panic::catch_unwind(|| check(&input));
            assert!(outcome.is_ok(), "{} fails its fuzz check", path.display());
            replayed += 1;
        }
    }
    assert!(
        replayed >= 10,
        "fuzz/corpus/{target} holds only {replayed} inputs"
    );
}

#[test]
fn routes_corpus() {
    replay(
        "routes",
        checks::routes,
        &[
            b"\x00/",
            b"\x80/delay/5",
            b"\x81/status/503",
            b"\x02/health",
        ],
    );
}

#[test]
fn route_params_corpus() {
    replay(
        "route_params",
        checks::route_params,
        &[b"250", b"99999999999999999999999", b"503", b"600", b""],
    );
}

#[test]
fn request_id_corpus() {
    replay(
        "request_id",
        checks::request_id,
        &[b"abc-123", b"", b"a b", b"\xc3\xa9"],
    );
}

#[test]
fn dotenv_corpus() {
    replay(
        "dotenv",
        checks::dotenv,
        &[b"A=1\n# c\nexport B='x'\n", b"C=\"unterminated", b"=x"],
    );
}

#[test]
fn config_corpus() {
    replay(
        "config",
        checks::config,
        &[
            b"8080\n0.0.0.0\ninfo\njson\n3s\n5s\n10s\n1024\ntrue",
            b"x\n\n\n\n",
        ],
    );
}

#[test]
fn trace_context_corpus() {
    replay(
        "trace_context",
        checks::trace_context,
        &[
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"congo=t61rcWkgMzE",
            b"",
        ],
    );
}
