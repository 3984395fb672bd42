//! What this binary is: reported by `GET /version`, `pulse --version` and the
//! `pulse_build_info` metric. build.rs fills in the values.

/// Facts fixed at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: &'static str,
    /// Short git commit, or `unknown` for a build without `.git` and without
    /// the `PULSE_GIT_COMMIT` override.
    pub commit: &'static str,
    pub rustc: &'static str,
    pub target: &'static str,
}

/// The build of this binary.
pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("PULSE_GIT_COMMIT"),
    rustc: env!("PULSE_RUSTC_VERSION"),
    target: env!("PULSE_TARGET"),
};
