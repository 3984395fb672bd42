//! Records what `GET /version` and `pulse_build_info` report: the git commit,
//! the compiler and the target triple.
//!
//! `PULSE_GIT_COMMIT` overrides the commit for builds without `.git` (a
//! container build context, a source tarball); without either it is `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PULSE_GIT_COMMIT");
    // Rebuild when HEAD moves, but only watch files that exist: cargo reruns a
    // build script on every build when a watched path is missing.
    for watched in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
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
