//! Process metrics read straight from `/proc/self`, with the standard names
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...).
//!
//! The prometheus crate's `process` feature does the same through procfs and
//! libc; reading four small files here costs less code and binary size.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
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
    descs: Vec<Desc>,
}

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
            descs,
        }
    }
}

impl ProcessCollector {
    fn refresh(&self) {
        if let Some(stat) = read_stat() {
            let total = (stat.utime_ticks + stat.stime_ticks) as f64 / TICKS_PER_SECOND;
            if let Ok(mut seen) = self.cpu_seconds_seen.lock() {
                if total > *seen {
                    self.cpu_seconds.inc_by(total - *seen);
                    *seen = total;
                }
            }
            self.virtual_memory.set(stat.vsize_bytes as f64);
        }
        if let Some(rss) = read_resident_bytes() {
            self.resident_memory.set(rss as f64);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries: don't count it.
            self.open_fds.set(fds.count().saturating_sub(1) as f64);
        }
        if let Some(limit) = read_max_fds() {
            self.max_fds.set(limit as f64);
        }
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        let mut families: Vec<MetricFamily> = [
            self.cpu_seconds.collect(),
            self.resident_memory.collect(),
            self.virtual_memory.collect(),
            self.open_fds.collect(),
            self.max_fds.collect(),
            self.start_time.collect(),
        ]
        .into_iter()
        .flatten()
        .collect();
        // The PulseHighMemory alert divides resident memory by this limit.
        if let Some(limit) = read_memory_limit() {
            self.memory_limit.set(limit as f64);
            families.extend(self.memory_limit.collect());
        }
        families
    }
}

struct Stat {
    utime_ticks: u64,
    stime_ticks: u64,
    start_ticks_after_boot: u64,
    vsize_bytes: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn read_stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    // Fields from 3 (state) on; utime is field 14, so index 11 here.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
        start_ticks_after_boot: field(22)?,
        vsize_bytes: field(23)?,
    })
}

/// `VmRSS` from `/proc/self/status`, which is in kB whatever the page size.
fn read_resident_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The soft limit on open files, from `/proc/self/limits`.
pub fn read_max_fds() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
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
    let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
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
    let text = candidates
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())?;
    let limit: u64 = text.trim().parse().ok()?;
    // cgroup v1 reports "no limit" as a number near i64::MAX.
    (limit < 1 << 60).then_some(limit)
}

/// Boot time plus the process's start offset: the real exec time, not the
/// time the collector was built.
fn read_start_time() -> Option<f64> {
    let stat = read_stat()?;
    let proc_stat = std::fs::read_to_string("/proc/stat").ok()?;
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
}
