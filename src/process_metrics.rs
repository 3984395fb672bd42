//! Process metrics read straight from `/proc/self`, with the standard names
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...).
//!
//! The prometheus crate's `process` feature does the same through procfs and
//! libc; reading four small files here costs less code and binary size.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc, Metric};
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{Counter, Gauge, Opts};

/// Kernel clock ticks per second in `/proc/*/stat`. It is USER_HZ, which the
/// Linux ABI fixes at 100 on every architecture pulse builds for.
const TICKS_PER_SECOND: f64 = 100.0;

pub struct ProcessCollector {
    cpu_seconds: Counter,
    /// The CPU total at the last scrape: a counter only moves by increments.
    cpu_seconds_seen: Mutex<f64>,
    resident_memory: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge,
    memory_limit: Gauge,
    /// The open-file limit and the cgroup memory limit, and when they were
    /// read: limits change rarely, and reading them cost as much as the
    /// rest of a scrape.
    limits: Mutex<Option<(Instant, Limits)>>,
    descs: Vec<Desc>,
}

#[derive(Clone, Copy)]
struct Limits {
    max_fds: Option<u64>,
    memory: Option<u64>,
}

/// How long a read of the limits is reused.
const LIMITS_MAX_AGE: Duration = Duration::from_secs(10);

impl Default for ProcessCollector {
    fn default() -> ProcessCollector {
        let cpu_seconds = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))
        .expect("static metric definition");
        let gauge = |name: &str, help: &str| {
            Gauge::with_opts(Opts::new(name, help)).expect("static metric definition")
        };
        let resident_memory = gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        );
        let virtual_memory = gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        );
        let open_fds = gauge("process_open_fds", "Number of open file descriptors.");
        let max_fds = gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
        );
        let start_time = gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        );
        start_time.set(read_start_time().unwrap_or_else(now_seconds));
        let memory_limit = gauge(
            "pulse_memory_limit_bytes",
            "Memory limit of the cgroup (container) pulse runs in; absent when there is none.",
        );
        let descs = [
            cpu_seconds.desc(),
            resident_memory.desc(),
            virtual_memory.desc(),
            open_fds.desc(),
            max_fds.desc(),
            start_time.desc(),
            memory_limit.desc(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        ProcessCollector {
            cpu_seconds,
            cpu_seconds_seen: Mutex::new(0.0),
            resident_memory,
            virtual_memory,
            open_fds,
            max_fds,
            start_time,
            memory_limit,
            limits: Mutex::new(None),
            descs,
        }
    }
}

impl ProcessCollector {
    fn refresh(&self) {
        let stat = read_stat();
        if let Some(stat) = &stat {
            let total = (stat.utime_ticks + stat.stime_ticks) as f64 / TICKS_PER_SECOND;
            if let Ok(mut seen) = self.cpu_seconds_seen.lock() {
                if total > *seen {
                    self.cpu_seconds.inc_by(total - *seen);
                    *seen = total;
                }
            }
            self.virtual_memory.set(stat.vsize_bytes as f64);
        }
        if let Some(rss) = resident_bytes(stat.as_ref()) {
            self.resident_memory.set(rss as f64);
        }
        if let Some(count) = count_open_fds() {
            self.open_fds.set(count as f64);
        }
        if let Some(limit) = self.limits().max_fds {
            self.max_fds.set(limit as f64);
        }
    }

    fn limits(&self) -> Limits {
        let mut cached = crate::lock(&self.limits);
        match *cached {
            Some((read_at, limits)) if read_at.elapsed() < LIMITS_MAX_AGE => limits,
            _ => {
                let limits = Limits {
                    max_fds: read_max_fds(),
                    memory: read_memory_limit(),
                };
                *cached = Some((Instant::now(), limits));
                limits
            }
        }
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    /// The families as each metric's own `collect` makes them, without the
    /// one-family `Vec` each `collect` wraps its family in: six of those
    /// made and freed at once on every scrape emptied a group of musl's
    /// allocator that it then sometimes unmapped (see `Metrics::gather`).
    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        // The PulseHighMemory alert divides resident memory by this limit.
        let memory_limit = self.limits().memory.map(|limit| {
            self.memory_limit.set(limit as f64);
            (MetricType::GAUGE, self.memory_limit.metric())
        });
        let metrics = [
            (MetricType::COUNTER, self.cpu_seconds.metric()),
            (MetricType::GAUGE, self.resident_memory.metric()),
            (MetricType::GAUGE, self.virtual_memory.metric()),
            (MetricType::GAUGE, self.open_fds.metric()),
            (MetricType::GAUGE, self.max_fds.metric()),
            (MetricType::GAUGE, self.start_time.metric()),
        ];
        // `descs` lists the metrics in the same order.
        self.descs
            .iter()
            .zip(metrics.into_iter().chain(memory_limit))
            .map(|(desc, (kind, metric))| {
                let mut family = MetricFamily::default();
                family.set_name(desc.fq_name.clone());
                family.set_help(desc.help.clone());
                family.set_field_type(kind);
                family.set_metric(vec![metric]);
                family
            })
            .collect()
    }
}

struct Stat {
    utime_ticks: u64,
    stime_ticks: u64,
    start_ticks_after_boot: u64,
    vsize_bytes: u64,
    rss_pages: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn read_stat() -> Option<Stat> {
    parse_stat(&read_proc("/proc/self/stat")?)
}

fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Fields 3 (state) to 24 (rss), on the stack: a `Vec` of them was an
    // allocation per scrape.
    let mut fields = [""; 22];
    for (slot, field) in fields.iter_mut().zip(after_name.split_ascii_whitespace()) {
        *slot = field;
    }
    let field = |n: usize| fields[n - 3].parse::<u64>().ok();
    Some(Stat {
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
        start_ticks_after_boot: field(22)?,
        vsize_bytes: field(23)?,
        rss_pages: field(24)?,
    })
}

/// Reads a small `/proc` or cgroup file (see `allocation`).
fn read_proc(path: &str) -> Option<String> {
    crate::allocation::read_small_file(path)
}

/// The number of open file descriptors. Since Linux 6.2 the size of
/// `/proc/self/fd` is that number: one `statx`, where listing the directory
/// costs an open, two `getdents64`, a close and a 2 KiB directory buffer.
/// Older kernels report 0 there (a process always has some descriptor
/// open), and the directory is listed.
fn count_open_fds() -> Option<u64> {
    count_entries("/proc/self/fd")
}

/// The entries of a `/proc/self` directory that has one per descriptor:
/// its size, or else a listing. (`/proc/self/fdinfo` reports size 0 on
/// every kernel, which lets the tests take the listing path.)
fn count_entries(dir: &str) -> Option<u64> {
    match std::fs::metadata(dir).map(|meta| meta.len()) {
        Ok(count) if count > 0 => Some(count),
        // The directory handle itself is one of the entries: don't count it.
        _ => Some(std::fs::read_dir(dir).ok()?.count().saturating_sub(1) as u64),
    }
}

/// Resident memory: `/proc/self/stat`'s page count times the page size, or
/// else `VmRSS` from `/proc/self/status`, which costs a second file (and is
/// the slowest file of the lot for the kernel to write).
fn resident_bytes(stat: Option<&Stat>) -> Option<u64> {
    match (stat, page_size()) {
        (Some(stat), Some(page)) => Some(stat.rss_pages * page),
        _ => read_resident_bytes(),
    }
}

/// The page size, from the `AT_PAGESZ` entry of `/proc/self/auxv` (pairs of
/// native words), read once: without libc there is no `sysconf`.
fn page_size() -> Option<u64> {
    static PAGE_SIZE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *PAGE_SIZE.get_or_init(|| {
        const AT_PAGESZ: u64 = 6;
        let auxv = std::fs::read("/proc/self/auxv").ok()?;
        let word = std::mem::size_of::<usize>();
        let read = |bytes: &[u8]| -> u64 {
            let mut buffer = [0u8; 8];
            buffer[..word].copy_from_slice(bytes);
            if cfg!(target_endian = "little") {
                u64::from_le_bytes(buffer)
            } else {
                u64::from_be_bytes(buffer) >> (64 - 8 * word)
            }
        };
        auxv.chunks_exact(2 * word)
            .find(|pair| read(&pair[..word]) == AT_PAGESZ)
            .map(|pair| read(&pair[word..]))
            .filter(|size| size.is_power_of_two())
    })
}

/// `VmRSS` from `/proc/self/status`, which is in kB whatever the page size.
fn read_resident_bytes() -> Option<u64> {
    let text = read_proc("/proc/self/status")?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The soft limit on open files, from `/proc/self/limits`.
pub fn read_max_fds() -> Option<u64> {
    let text = read_proc("/proc/self/limits")?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The memory limit of this process's cgroup, v2 (`memory.max`) or v1
/// (`memory.limit_in_bytes`). None when unlimited or unknown.
pub fn read_memory_limit() -> Option<u64> {
    let membership = read_proc("/proc/self/cgroup").unwrap_or_default();
    let mut candidates = Vec::new();
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next()?, fields.next()?);
        if controllers.is_empty() {
            candidates.push(format!("/sys/fs/cgroup{path}/memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            candidates.push(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"));
        }
    }
    // Inside a container's cgroup namespace the paths above may not exist,
    // but the container's own limit sits at the root of the mount.
    candidates.push("/sys/fs/cgroup/memory.max".to_owned());
    candidates.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".to_owned());
    let text = candidates.iter().find_map(|path| read_proc(path))?;
    let limit: u64 = text.trim().parse().ok()?;
    // cgroup v1 reports "no limit" as a number near i64::MAX.
    (limit < 1 << 60).then_some(limit)
}

/// Boot time plus the process's start offset: the real exec time, not the
/// time the collector was built.
fn read_start_time() -> Option<f64> {
    let stat = read_stat()?;
    let proc_stat = read_proc("/proc/stat")?;
    let boot_time: u64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot_time as f64 + stat.start_ticks_after_boot as f64 / TICKS_PER_SECOND)
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_from_stat_agrees_with_vmrss() {
        let page = page_size().expect("AT_PAGESZ in /proc/self/auxv");
        assert!([4096, 16384, 65536].contains(&page), "{page}");
        let from_stat = resident_bytes(read_stat().as_ref()).unwrap();
        let from_status = read_resident_bytes().unwrap();
        // Both are read a moment apart while the test harness runs.
        let difference = from_stat.abs_diff(from_status);
        assert!(difference < 4 << 20, "{from_stat} vs {from_status}");
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // Field n holds n, after a name with spaces and parentheses.
        let fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        let line = format!("4242 (a (b) c) {}\n", fields.join(" "));
        let stat = parse_stat(&line).unwrap();
        assert_eq!(
            (
                stat.utime_ticks,
                stat.stime_ticks,
                stat.start_ticks_after_boot,
                stat.vsize_bytes,
                stat.rss_pages
            ),
            (14, 15, 22, 23, 24)
        );
        let cut = format!("4242 (short) {}", fields[..21].join(" "));
        assert!(parse_stat(&cut).is_none(), "rss (field 24) is missing");
    }

    /// `collect` builds the families itself: each must be the one its
    /// metric's own `collect` gives (name, help, type and value).
    #[test]
    fn families_are_those_the_metrics_give() {
        let collector = ProcessCollector::default();
        let families = collector.collect();
        let mut expected = vec![
            collector.cpu_seconds.collect(),
            collector.resident_memory.collect(),
            collector.virtual_memory.collect(),
            collector.open_fds.collect(),
            collector.max_fds.collect(),
            collector.start_time.collect(),
        ];
        if collector.limits().memory.is_some() {
            expected.push(collector.memory_limit.collect());
        }
        let expected: Vec<MetricFamily> = expected.into_iter().flatten().collect();
        assert_eq!(families, expected);
    }

    #[test]
    fn reads_plausible_values_for_this_process() {
        let collector = ProcessCollector::default();
        let families = collector.collect();
        let value = |name: &str| {
            let family = families.iter().find(|f| f.name() == name).unwrap();
            let metric = &family.get_metric()[0];
            if name.ends_with("_total") {
                metric.get_counter().get_value()
            } else {
                metric.get_gauge().get_value()
            }
        };
        assert!(value("process_resident_memory_bytes") > 100_000.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let started = value("process_start_time_seconds");
        let now = now_seconds();
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
    }

    #[test]
    fn counts_open_descriptors_like_a_listing_of_proc_self_fd() {
        // Other tests open files on other threads meanwhile: allow a few.
        let listed = || std::fs::read_dir("/proc/self/fd").unwrap().count() as u64 - 1;
        let before = count_open_fds().unwrap();
        assert!(before.abs_diff(listed()) <= 4, "{before} vs {}", listed());
        let opened: Vec<_> = (0..50)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let after = count_open_fds().unwrap();
        assert!(after.abs_diff(before + 50) <= 4, "{before} then {after}");
        drop(opened);
    }

    #[test]
    fn the_listing_for_older_kernels_counts_like_the_size() {
        // Exact counts need a process in which no other test opens files
        // meanwhile: this test runs again in a child process, alone.
        const ALONE: &str = "PULSE_TEST_FDS_ALONE";
        if std::env::var_os(ALONE).is_none() {
            let name = "process_metrics::tests::the_listing_for_older_kernels_counts_like_the_size";
            let child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads=1"])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&child.stdout);
            assert!(
                child.status.success() && stdout.contains("1 passed"),
                "{stdout}{}",
                String::from_utf8_lossy(&child.stderr)
            );
            return;
        }
        // fdinfo's size is 0, so it is listed, as /proc/self/fd is on kernels
        // before 6.2 (on newer ones /proc/self/fd's size is the count).
        assert_eq!(std::fs::metadata("/proc/self/fdinfo").unwrap().len(), 0);
        let listed = || count_entries("/proc/self/fdinfo").unwrap();
        assert_eq!(listed(), count_open_fds().unwrap());
        let before = listed();
        let opened: Vec<_> = (0..50)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        assert_eq!(listed(), before + 50);
        assert_eq!(count_open_fds().unwrap(), before + 50);
        drop(opened);
    }
}
