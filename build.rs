//! Records what `GET /version` and `pulse_build_info` report: the git commit,
//! the compiler and the target triple.
//!
//! `PULSE_GIT_COMMIT` overrides the commit for builds without `.git` (a
//! container build context, a source tarball); without either it is `unknown`.
//!
//! It also lists the files of `tests/api/` as modules of the `api` test
//! binary (`tests/api/main.rs` includes the list), so a new test file runs
//! without a `mod` line anyone could forget.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PULSE_GIT_COMMIT");
    // Rebuild when HEAD moves, but only watch files that exist: cargo reruns a
    // build script on every build when a watched path is missing.
    // The x86_64 musl linker (scripts/build/link-ordered.sh) reads the list
    // of hot functions: a new list must relink.
    for watched in [
        ".git/HEAD",
        ".git/refs/heads",
        ".git/packed-refs",
        "scripts/build/hot-functions.txt",
    ] {
        if Path::new(watched).exists() {
            println!("cargo:rerun-if-changed={watched}");
        }
    }

    let commit = std::env::var("PULSE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| command_output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version =
        command_output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".to_owned());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());

    println!("cargo:rustc-env=PULSE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=PULSE_RUSTC_VERSION={rustc_version}");
    println!("cargo:rustc-env=PULSE_TARGET={target}");

    write_api_test_modules();
}

/// `$OUT_DIR/api_test_modules.rs`: a `mod` item for every `tests/api/*.rs`
/// but `main.rs`. Empty where there is no `tests/api` (a container build).
fn write_api_test_modules() {
    let folder = Path::new("tests/api");
    let mut modules = String::new();
    if let Ok(entries) = std::fs::read_dir(folder) {
        // A directory watched: cargo reruns this when a file in it changes.
        println!("cargo:rerun-if-changed=tests/api");
        let mut files: Vec<std::path::PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
            .filter(|path| path.file_stem().is_some_and(|stem| stem != "main"))
            .collect();
        files.sort();
        for path in files {
            let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
                continue;
            };
            let absolute = std::fs::canonicalize(&path).unwrap_or(path.clone());
            modules.push_str(&format!(
                "#[path = {:?}]\nmod {name};\n",
                absolute.display().to_string()
            ));
        }
    }
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let written = Path::new(&out).join("api_test_modules.rs");
    if std::fs::read_to_string(&written).ok().as_deref() != Some(modules.as_str()) {
        std::fs::write(&written, modules).expect("OUT_DIR is writable");
    }
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
