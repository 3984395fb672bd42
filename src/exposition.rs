//! The Prometheus text exposition format 0.0.4, written straight into
//! bytes. The prometheus crate's own `TextEncoder` formats every sample
//! value, and every histogram bucket bound of every series, through
//! `f64::to_string`, and escapes each label into a new `String`: that was
//! most of a scrape's cost. The output is byte for byte the crate's (a unit
//! test compares them), so `promtool check metrics` and every parser see the
//! same page.

use std::io::Write;

use prometheus::Encoder;
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};

// Pieces of a few bytes each, hundreds per page: copied without a call to
// musl's `memcpy` (see `put`), which was 9% of a scrape's CPU.
use crate::allocation::put;

/// Histogram bucket bounds as text, by their bits. Every series of a
/// histogram family has the same bounds, and they never change: each is
/// formatted once, and the text is kept from scrape to scrape. (Formatted
/// per scrape, they were an allocation and a float formatting each.)
#[derive(Default)]
pub struct BucketBounds(Vec<(u64, String)>);

impl BucketBounds {
    fn text(&mut self, bound: f64) -> &str {
        let bits = bound.to_bits();
        let index = match self.0.iter().position(|(known, _)| *known == bits) {
            Some(index) => index,
            None => {
                self.0.push((bits, bound.to_string()));
                self.0.len() - 1
            }
        };
        &self.0[index].1
    }
}

/// Appends the text exposition of `families` to `out`.
pub fn encode(families: &[MetricFamily], out: &mut Vec<u8>, bounds: &mut BucketBounds) {
    for family in families {
        let name = family.name().as_bytes();
        let kind = match family.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            // pulse registers no other kind; should one appear, the crate
            // writes it.
            _ => {
                let _ = prometheus::TextEncoder::new().encode(std::slice::from_ref(family), out);
                continue;
            }
        };
        if !family.help().is_empty() {
            out.extend_from_slice(b"# HELP ");
            put(out, name);
            out.push(b' ');
            escape(out, family.help(), false);
            out.push(b'\n');
        }
        out.extend_from_slice(b"# TYPE ");
        put(out, name);
        out.push(b' ');
        put(out, kind.as_bytes());
        out.push(b'\n');
        for metric in family.get_metric() {
            match family.get_field_type() {
                MetricType::COUNTER => sample(out, name, metric, metric.get_counter().get_value()),
                MetricType::GAUGE => sample(out, name, metric, metric.get_gauge().get_value()),
                _ => histogram(out, name, metric, bounds),
            }
        }
    }
}

fn histogram(out: &mut Vec<u8>, name: &[u8], metric: &Metric, bounds: &mut BucketBounds) {
    let histogram = metric.get_histogram();
    // The series' labels are the same on each of its lines: escaped once,
    // as `{name="value",...` without the closing brace, where a bucket's
    // line adds its `le` label.
    let pairs = metric.get_label();
    let mut series = Vec::with_capacity(64);
    open_labels(&mut series, pairs);
    let bucket_separator: &[u8] = if pairs.is_empty() {
        b"{le=\""
    } else {
        b",le=\""
    };
    let mut infinity_seen = false;
    for bucket in histogram.get_bucket() {
        let bound = bucket.upper_bound();
        bucket_line(
            out,
            name,
            &series,
            bucket_separator,
            bounds.text(bound),
            bucket.cumulative_count(),
        );
        timestamp(out, metric);
        infinity_seen |= bound.is_infinite() && bound.is_sign_positive();
    }
    if !infinity_seen {
        bucket_line(
            out,
            name,
            &series,
            bucket_separator,
            "+Inf",
            histogram.get_sample_count(),
        );
        timestamp(out, metric);
    }
    for (suffix, value) in [
        (&b"_sum"[..], histogram.get_sample_sum()),
        (b"_count", histogram.get_sample_count() as f64),
    ] {
        put(out, name);
        put(out, suffix);
        if !series.is_empty() {
            put(out, &series);
            out.push(b'}');
        }
        out.push(b' ');
        number(out, value);
        timestamp(out, metric);
    }
}

/// `name_bucket{labels,le="bound"} count`, without the line's end.
fn bucket_line(
    out: &mut Vec<u8>,
    name: &[u8],
    series: &[u8],
    separator: &[u8],
    bound: &str,
    count: u64,
) {
    put(out, name);
    out.extend_from_slice(b"_bucket");
    put(out, series);
    put(out, separator);
    put(out, bound.as_bytes());
    out.extend_from_slice(b"\"} ");
    number(out, count as f64);
}

/// `name{labels} value\n` (the crate's `write_sample`).
fn sample(out: &mut Vec<u8>, name: &[u8], metric: &Metric, value: f64) {
    put(out, name);
    labels(out, metric.get_label());
    out.push(b' ');
    number(out, value);
    timestamp(out, metric);
}

/// A sample's timestamp, if it has one (pulse sets none), and its newline.
fn timestamp(out: &mut Vec<u8>, metric: &Metric) {
    if metric.timestamp_ms() != 0 {
        out.push(b' ');
        out.extend_from_slice(metric.timestamp_ms().to_string().as_bytes());
    }
    out.push(b'\n');
}

fn labels(out: &mut Vec<u8>, pairs: &[LabelPair]) {
    if !pairs.is_empty() {
        open_labels(out, pairs);
        out.push(b'}');
    }
}

/// `{name="value",...`, without the closing brace; nothing for no pairs.
fn open_labels(out: &mut Vec<u8>, pairs: &[LabelPair]) {
    let mut separator = b'{';
    for pair in pairs {
        out.push(separator);
        put(out, pair.name().as_bytes());
        out.extend_from_slice(b"=\"");
        escape(out, pair.value(), true);
        out.push(b'"');
        separator = b',';
    }
}

/// `f64`'s `Display`, as the crate writes values, with a fast path for the
/// whole numbers that counters, gauges and bucket counts almost always are.
fn number(out: &mut Vec<u8>, value: f64) {
    let whole = value.is_finite()
        && value == value.trunc()
        && value.abs() < 1e15
        && !(value == 0.0 && value.is_sign_negative());
    if whole {
        if value < 0.0 {
            out.push(b'-');
        }
        put(
            out,
            crate::logging::decimal(value.abs() as u64, &mut [0; 20]),
        );
    } else {
        // Straight into the page: `to_string` would allocate a `String`.
        let _ = write!(out, "{value}");
    }
}

/// Backslash and newline always, the double quote in label values.
fn escape(out: &mut Vec<u8>, text: &str, quote: bool) {
    let special = |byte: &u8| matches!(byte, b'\\' | b'\n') || (quote && *byte == b'"');
    if !text.as_bytes().iter().any(special) {
        put(out, text.as_bytes());
        return;
    }
    for &byte in text.as_bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if quote => out.extend_from_slice(b"\\\""),
            _ => out.push(byte),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

    #[test]
    fn the_page_is_the_prometheus_crates_byte_for_byte() {
        let registry = Registry::new();
        let counter = IntCounterVec::new(
            Opts::new("odd_total", "Help with a \\ backslash\nand a newline."),
            &["value"],
        )
        .unwrap();
        for value in ["plain", "quote \" here", "back\\slash", "new\nline", "é"] {
            counter.with_label_values(&[value]).inc_by(3);
        }
        let histogram = HistogramVec::new(
            HistogramOpts::new("latency_seconds", "Latency.").buckets(vec![0.0001, 0.25, 1.0, 2.5]),
            &["route"],
        )
        .unwrap();
        for (route, seconds) in [
            ("/", 0.00005),
            ("/", 0.3),
            ("/x", 7.0),
            ("/x", 0.1),
            ("/\"quoted\"\\", 0.2),
        ] {
            histogram.with_label_values(&[route]).observe(seconds);
        }
        let unlabelled = prometheus::Histogram::with_opts(HistogramOpts::new(
            "unlabelled_seconds",
            "A histogram without labels.",
        ))
        .unwrap();
        unlabelled.observe(0.02);
        let gauge = prometheus::Gauge::new("ratio", "A gauge.").unwrap();
        gauge.set(-0.5);
        let big = prometheus::Gauge::new("big", "Large and negative zero.").unwrap();
        big.set(1e17);
        let zero = prometheus::Gauge::new("negative_zero", "-0").unwrap();
        zero.set(-0.0);
        for collector in [
            Box::new(counter) as Box<dyn prometheus::core::Collector>,
            Box::new(histogram),
            Box::new(unlabelled),
            Box::new(gauge),
            Box::new(big),
            Box::new(zero),
        ] {
            registry.register(collector).unwrap();
        }
        let mut families = registry.gather();
        // pulse sets no timestamps; the format allows one on every sample.
        for family in &mut families {
            if family.name() == "latency_seconds" || family.name() == "ratio" {
                family.mut_metric()[0].set_timestamp_ms(1_795_826_711_790);
            }
        }
        let mut bounds = BucketBounds::default();
        let mut ours = Vec::new();
        encode(&families, &mut ours, &mut bounds);
        // The next scrape writes its bounds from the text kept.
        let mut again = Vec::new();
        encode(&families, &mut again, &mut bounds);
        assert_eq!(again, ours);
        let mut theirs = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&families, &mut theirs)
            .unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs).unwrap()
        );
    }
}
