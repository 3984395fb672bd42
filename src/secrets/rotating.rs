//! Secrets that change while pulse runs: each file-backed secret is re-read
//! when its directory reports a change (inotify, on Linux) and every poll
//! interval anyway, because inotify misses some changes (a file bind-mounted
//! into a container, a directory replaced whole).
//!
//! The changes that must be caught, and what they look like:
//! - Kubernetes' Secret volume: the new files go into a fresh directory,
//!   then the `..data` symlink is renamed over (a `MOVED_TO` in the watched
//!   directory) and the old directory deleted; the file pulse reads is a
//!   symlink through `..data`.
//! - A plain overwrite: `MODIFY` and `CLOSE_WRITE` on the file, possibly
//!   after a truncation that leaves it empty for a moment.
//! - An editor's save: a new file renamed over the old one (`MOVED_TO`).
//!
//! A new value is validated before it replaces the old one; a failed read or
//! a bad value keeps the old one and is logged once, until a read succeeds.
//! After a rotation the previous value still matches for the grace period.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prometheus::{GaugeVec, IntCounterVec};

use super::{SecretKind, SecretSetting, SecretSource};

/// How long to wait after a change event for more: an overwrite truncates
/// before it writes, and a read in between would see an empty file.
const SETTLE: Duration = Duration::from_millis(100);

/// What each reload of a secret counts.
#[derive(Clone)]
pub struct ReloadMetrics {
    /// `pulse_secret_reloads_total{secret,result}`.
    pub reloads: IntCounterVec,
    /// `pulse_secret_last_reload_timestamp_seconds{secret}`.
    pub last_reload: GaugeVec,
}

/// A secret's current value, and its previous one during the grace period.
pub struct RotatingSecret {
    kind: SecretKind,
    /// None for a value from the environment, which never changes.
    path: Option<PathBuf>,
    grace: Duration,
    versions: Mutex<Versions>,
    /// Whether the last reload failed: the failure is logged once.
    failing: AtomicBool,
    /// The file as it was when last read, to tell whether it changed since.
    read_stamp: Mutex<Option<FileStamp>>,
    metrics: ReloadMetrics,
}

struct Versions {
    current: Arc<[u8]>,
    previous: Option<(Arc<[u8]>, Instant)>,
}

/// What one reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Rotated,
    Failed,
}

impl RotatingSecret {
    /// Starts from the value `lookup` read and checked at startup.
    pub fn new(setting: &SecretSetting, grace: Duration, metrics: ReloadMetrics) -> RotatingSecret {
        let path = match &setting.source {
            SecretSource::Value(_) => None,
            SecretSource::File(path) => Some(path.clone()),
        };
        let name = setting.kind.name();
        for result in ["success", "error"] {
            metrics.reloads.with_label_values(&[name, result]);
        }
        metrics
            .last_reload
            .with_label_values(&[name])
            .set(unix_now());
        RotatingSecret {
            kind: setting.kind,
            path,
            grace,
            versions: Mutex::new(Versions {
                current: setting.value.0.clone().into(),
                previous: None,
            }),
            failing: AtomicBool::new(false),
            // Unknown: the first refused candidate or poll reads the file.
            read_stamp: Mutex::new(None),
            metrics,
        }
    }

    /// The value in force.
    pub fn current(&self) -> Arc<[u8]> {
        Arc::clone(&crate::lock(&self.versions).current)
    }

    /// Whether `candidate` is the current value, or the previous one within
    /// the grace period after a rotation. A refused candidate first has the
    /// file looked at: if it changed since it was last read, it is read now.
    /// A client that read a rotated file (Prometheus, with its
    /// `credentials_file`) before pulse's watcher did is then not refused.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        if self.holds(candidate) {
            return true;
        }
        // SECURITY: a refused guess costs one stat(2); the file is read only
        // when it changed.
        self.file_changed() && self.reload() == Reload::Rotated && self.holds(candidate)
    }

    fn holds(&self, candidate: &[u8]) -> bool {
        let (current, previous) = {
            let versions = crate::lock(&self.versions);
            let previous = versions
                .previous
                .as_ref()
                .filter(|(_, rotated)| rotated.elapsed() < self.grace)
                .map(|(value, _)| Arc::clone(value));
            (Arc::clone(&versions.current), previous)
        };
        // Both compared every time: which one matched must not show in the
        // time taken.
        let current = constant_time_eq(&current, candidate);
        let previous = previous.is_some_and(|previous| constant_time_eq(&previous, candidate));
        current | previous
    }

    /// Whether the file is not the one last read: another inode (a rename,
    /// a symlink swap), size or modification time.
    fn file_changed(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        *crate::lock(&self.read_stamp) != FileStamp::of(path)
    }

    /// Re-reads the file, if the value comes from one.
    pub fn reload(&self) -> Reload {
        let Some(path) = &self.path else {
            return Reload::Unchanged;
        };
        let name = self.kind.name();
        // Taken before the read: a change during the read shows as a
        // change next time, and is read again.
        *crate::lock(&self.read_stamp) = FileStamp::of(path);
        let read = super::read(path)
            .map_err(|e| e.to_string())
            .and_then(|value| match self.kind.validate(&value) {
                Ok(()) => Ok(value),
                // The message names the setting and what it allows; never the value.
                Err(_) => Err(format!(
                    "the new value is not valid: expected {}",
                    self.kind.allowed()
                )),
            });
        let value = match read {
            Ok(value) => value,
            Err(reason) => {
                self.metrics
                    .reloads
                    .with_label_values(&[name, "error"])
                    .inc();
                if !self.failing.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        target: "pulse::secrets",
                        secret = name;
                        "cannot reload {name} from {}: {reason}; keeping the value in force",
                        path.display()
                    );
                }
                return Reload::Failed;
            }
        };
        if self.failing.swap(false, Ordering::Relaxed) {
            log::info!(target: "pulse::secrets", secret = name; "{name} can be read from {} again", path.display());
        }
        {
            let mut versions = crate::lock(&self.versions);
            if *versions.current == *value {
                return Reload::Unchanged;
            }
            let previous = std::mem::replace(&mut versions.current, value.into());
            versions.previous = Some((previous, Instant::now()));
        }
        self.metrics
            .reloads
            .with_label_values(&[name, "success"])
            .inc();
        self.metrics
            .last_reload
            .with_label_values(&[name])
            .set(unix_now());
        log::info!(
            target: "pulse::secrets",
            secret = name;
            "{name} changed in {}; the previous value is accepted for {:?} more",
            path.display(),
            self.grace
        );
        Reload::Rotated
    }
}

/// What tells one version of a file from the next without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    /// Device and inode: a rename or a symlink swap changes them.
    #[cfg(unix)]
    inode: (u64, u64),
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    /// The file behind `path`, symlinks followed; None if it is missing.
    fn of(path: &std::path::Path) -> Option<FileStamp> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            #[cfg(unix)]
            inode: {
                use std::os::unix::fs::MetadataExt;
                (metadata.dev(), metadata.ino())
            },
            len: metadata.len(),
            modified: metadata.modified().ok(),
        })
    }
}

/// Compares in a time that depends on the lengths only, not on where the
/// two differ: a token compared byte by byte with an early exit tells a
/// patient attacker how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        difference |= usize::from(std::hint::black_box(x ^ y));
    }
    difference == 0
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Watches `secrets` from a thread of its own until the process ends:
/// reloads each on a change event and every `poll`. Returns at once; does
/// nothing when no secret comes from a file.
pub fn watch(secrets: Vec<Arc<RotatingSecret>>, poll: Duration) {
    let secrets: Vec<_> = secrets.into_iter().filter(|s| s.path.is_some()).collect();
    if secrets.is_empty() {
        return;
    }
    let (wake, woken) = mpsc::channel();
    let paths: Vec<PathBuf> = secrets.iter().filter_map(|s| s.path.clone()).collect();
    let events = events::start(paths, wake);
    let spawned = std::thread::Builder::new()
        .name("secret-watch".to_owned())
        .spawn(move || reload_forever(&secrets, events.then_some(woken), poll));
    if let Err(e) = spawned {
        log::warn!(target: "pulse::secrets", "cannot start the secret watcher: {e}; secret files will not be re-read");
    }
}

fn reload_forever(
    secrets: &[Arc<RotatingSecret>],
    mut woken: Option<Receiver<()>>,
    poll: Duration,
) {
    loop {
        match &woken {
            Some(events) => match events.recv_timeout(poll) {
                Ok(()) => {
                    std::thread::sleep(SETTLE);
                    while events.try_recv().is_ok() {}
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => woken = None,
            },
            None => std::thread::sleep(poll),
        }
        for secret in secrets {
            secret.reload();
        }
    }
}

/// Change events from the directories of the secret files.
#[cfg(target_os = "linux")]
mod events {
    use std::path::PathBuf;
    use std::sync::mpsc::Sender;

    use inotify::{Inotify, WatchMask};

    /// Starts a thread that sends on `wake` whenever a watched directory or
    /// file changes; false if inotify is unavailable (pulse then polls).
    pub fn start(paths: Vec<PathBuf>, wake: Sender<()>) -> bool {
        let inotify = match Inotify::init() {
            Ok(inotify) => inotify,
            Err(e) => {
                log::warn!(target: "pulse::secrets", "inotify is unavailable ({e}); secret files are polled only");
                return false;
            }
        };
        std::thread::Builder::new()
            .name("secret-events".to_owned())
            .spawn(move || forward(inotify, &paths, &wake))
            .is_ok()
    }

    fn forward(mut inotify: Inotify, paths: &[PathBuf], wake: &Sender<()>) {
        let directory_changes = WatchMask::CREATE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE
            | WatchMask::CLOSE_WRITE
            | WatchMask::MODIFY;
        let mut buffer = [0; 4096];
        let mut first = true;
        loop {
            // Again after each event: a file's watch follows its inode,
            // which a rename or a symlink swap replaces.
            for path in paths {
                if let Some(directory) = path.parent() {
                    let _ = inotify.watches().add(directory, directory_changes);
                }
                let _ = inotify.watches().add(
                    path,
                    WatchMask::MODIFY | WatchMask::CLOSE_WRITE | WatchMask::DELETE_SELF,
                );
            }
            // A change between the startup read and these first watches
            // made no event: one reload once they are in place catches it.
            if std::mem::take(&mut first) && wake.send(()).is_err() {
                return;
            }
            match inotify.read_events_blocking(&mut buffer) {
                Ok(_) => {
                    if wake.send(()).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    log::warn!(target: "pulse::secrets", "inotify failed ({e}); secret files are polled only");
                    return;
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod events {
    use std::path::PathBuf;
    use std::sync::mpsc::Sender;

    /// No change events off Linux: pulse polls.
    pub fn start(_paths: Vec<PathBuf>, _wake: Sender<()>) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prometheus::Opts;

    use super::*;
    use crate::secrets::Redacted;

    const OLD: &str = "old-token-0123456789";
    const NEW: &str = "new-token-9876543210";

    fn metrics() -> ReloadMetrics {
        ReloadMetrics {
            reloads: IntCounterVec::new(Opts::new("reloads", "test"), &["secret", "result"])
                .unwrap(),
            last_reload: GaugeVec::new(Opts::new("last", "test"), &["secret"]).unwrap(),
        }
    }

    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pulse-rotate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn secret_at(path: &Path, grace: Duration) -> Arc<RotatingSecret> {
        let setting = SecretSetting {
            kind: SecretKind::MetricsToken,
            source: SecretSource::File(path.to_owned()),
            value: Redacted(crate::secrets::read(path).unwrap()),
        };
        Arc::new(RotatingSecret::new(&setting, grace, metrics()))
    }

    /// A Kubernetes Secret volume as the kubelet lays it out: the key is a
    /// symlink through `..data` into a timestamped directory.
    fn kubelet_volume(dir: &Path, value: &str) -> PathBuf {
        std::fs::create_dir(dir.join("..2026_12_07_a")).unwrap();
        std::fs::write(dir.join("..2026_12_07_a/token"), value).unwrap();
        std::os::unix::fs::symlink("..2026_12_07_a", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/token", dir.join("token")).unwrap();
        dir.join("token")
    }

    /// The kubelet's update: a new directory, `..data` renamed over, the old
    /// directory deleted.
    fn kubelet_swap(dir: &Path, value: &str) {
        std::fs::create_dir(dir.join("..2026_12_07_b")).unwrap();
        std::fs::write(dir.join("..2026_12_07_b/token"), value).unwrap();
        std::os::unix::fs::symlink("..2026_12_07_b", dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        std::fs::remove_dir_all(dir.join("..2026_12_07_a")).unwrap();
    }

    /// An editor's save: a new file renamed over the old one.
    fn editor_save(path: &Path, value: &str) {
        let swap = path.with_extension("swp");
        std::fs::write(&swap, value).unwrap();
        std::fs::rename(&swap, path).unwrap();
    }

    type Change = fn(&Path, &Path, &str);
    const CHANGES: [(&str, Change); 3] = [
        ("kubelet", |dir, _, value| kubelet_swap(dir, value)),
        ("overwrite", |_, path, value| {
            std::fs::write(path, format!("{value}\n")).unwrap()
        }),
        ("rename", |_, path, value| editor_save(path, value)),
    ];

    /// A secret file for the change `change`, in a directory of the test's own.
    fn set_up(test: &str, change: &str) -> (PathBuf, PathBuf) {
        let dir = fresh_dir(&format!("{test}-{change}"));
        let path = if change == "kubelet" {
            kubelet_volume(&dir, OLD)
        } else {
            let path = dir.join("token");
            std::fs::write(&path, OLD).unwrap();
            path
        };
        (dir, path)
    }

    #[test]
    fn a_poll_picks_up_each_kind_of_change() {
        for (name, change) in CHANGES {
            let (dir, path) = set_up("poll", name);
            let secret = secret_at(&path, Duration::from_secs(60));
            assert_eq!(secret.reload(), Reload::Unchanged, "{name}");
            change(&dir, &path, NEW);
            assert_eq!(secret.reload(), Reload::Rotated, "{name}");
            assert_eq!(&*secret.current(), NEW.as_bytes(), "{name}");
            assert_eq!(
                secret
                    .metrics
                    .reloads
                    .with_label_values(&["PULSE_METRICS_TOKEN", "success"])
                    .get(),
                1
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_change_event_picks_up_each_kind_of_change_without_waiting_for_the_poll() {
        for (name, change) in CHANGES {
            let (dir, path) = set_up("event", name);
            let secret = secret_at(&path, Duration::from_secs(60));
            // A poll an hour away: only the change event can reload it.
            watch(vec![Arc::clone(&secret)], Duration::from_secs(3600));
            std::thread::sleep(Duration::from_millis(200));
            change(&dir, &path, NEW);
            let deadline = Instant::now() + Duration::from_secs(10);
            while &*secret.current() != NEW.as_bytes() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(
                &*secret.current(),
                NEW.as_bytes(),
                "{name}: not reloaded within 10 s"
            );
        }
    }

    #[test]
    fn the_previous_value_works_only_within_the_grace_period() {
        for (grace, old_still_works) in [(Duration::from_secs(3600), true), (Duration::ZERO, false)]
        {
            let (dir, path) = set_up("grace", "rename");
            let secret = secret_at(&path, grace);
            assert!(secret.matches(OLD.as_bytes()));
            editor_save(&path, NEW);
            secret.reload();
            assert!(secret.matches(NEW.as_bytes()));
            assert_eq!(
                secret.matches(OLD.as_bytes()),
                old_still_works,
                "grace {grace:?}"
            );
            assert!(
                !secret.matches(b"old-token-012345678"),
                "a prefix of the old token"
            );
            assert!(!secret.matches(b""));
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn a_bad_or_missing_file_keeps_the_value_in_force() {
        let (dir, path) = set_up("bad", "overwrite");
        let secret = secret_at(&path, Duration::from_secs(60));
        std::fs::write(&path, "too short").unwrap();
        assert_eq!(secret.reload(), Reload::Failed);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(secret.reload(), Reload::Failed);
        assert_eq!(&*secret.current(), OLD.as_bytes());
        assert_eq!(
            secret
                .metrics
                .reloads
                .with_label_values(&["PULSE_METRICS_TOKEN", "error"])
                .get(),
            2
        );
        std::fs::write(&path, NEW).unwrap();
        assert_eq!(secret.reload(), Reload::Rotated);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_refused_value_rereads_the_file_only_when_it_changed() {
        let (dir, path) = set_up("recheck", "rename");
        let secret = secret_at(&path, Duration::from_secs(60));
        let reloads = || {
            secret
                .metrics
                .reloads
                .with_label_values(&["PULSE_METRICS_TOKEN", "success"])
                .get()
        };
        assert!(!secret.matches(b"a-guess-that-is-long-enough"));
        assert!(
            !secret.file_changed(),
            "after one look, an unchanged file is not read again"
        );
        // No watcher and no poll: the refused value itself makes pulse look.
        editor_save(&path, NEW);
        assert!(secret.file_changed());
        assert!(secret.matches(NEW.as_bytes()), "the file's new value");
        assert_eq!(reloads(), 1);
        assert!(!secret.file_changed());
        // A plain overwrite changes the size or the modification time.
        std::fs::write(&path, "newer-token-1111111111").unwrap();
        assert!(secret.matches(b"newer-token-1111111111"));
        assert_eq!(reloads(), 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
