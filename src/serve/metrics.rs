//! `GET /metrics`: the pipeline's and the server's counters in Prometheus' text format
//! (version 0.0.4): rows in and out per table, bad records by reason, late rows, watermark
//! and consumer lag, checkpoint, upsert and request latency histograms.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::stream::{Histogram, HistogramSnapshot, PipelineContext, PipelineMetrics};

/// The HTTP routes requests are counted under.
pub const ROUTES: [&str; 6] = ["views", "score", "ingest", "metrics", "health", "other"];

/// The status codes the server answers with; anything else counts as the last, `0`.
pub const STATUSES: [u16; 14] = [
    200, 202, 400, 401, 403, 404, 405, 408, 409, 413, 422, 500, 503, 0,
];

/// What the server itself counts.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    /// Request latency by route, in the order of [`ROUTES`].
    pub requests: [Histogram; ROUTES.len()],
    /// Responses by route and status code, in the order of [`ROUTES`] and [`STATUSES`]
    /// (atomics: counted on every request without a lock).
    statuses: [[AtomicU64; STATUSES.len()]; ROUTES.len()],
    /// Webhook requests refused, by reason.
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Webhook events accepted.
    pub ingested: AtomicU64,
    /// Profile lookups answered from the cache, and from the store.
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Store reads refused because a view had `--read-concurrency` in flight.
    pub reads_refused: AtomicU64,
}

impl ServerMetrics {
    /// Counts a response.
    pub fn respond(&self, route: usize, status: u16, elapsed: std::time::Duration) {
        self.requests[route].observe(elapsed);
        let code = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len() - 1);
        self.statuses[route][code].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused webhook request.
    pub fn reject(&self, reason: &'static str) {
        *crate::stream::lock(&self.rejected)
            .entry(reason)
            .or_default() += 1;
    }
}

/// The whole exposition: the pipeline's metrics, and the HTTP server's when there is one
/// (`serve`; `run --metrics-listen` has none).
pub fn render(pipeline: &PipelineContext, server: Option<&ServerMetrics>) -> String {
    let mut out = String::with_capacity(8192);
    render_pipeline(pipeline, &mut out);
    if let Some(server) = server {
        render_server(server, &mut out);
    }
    out
}

/// The pipeline's part: rows, bad records, lateness, watermark and lag, checkpoints,
/// upserts, enrichment.
fn render_pipeline(pipeline: &PipelineContext, out: &mut String) {
    let m = &pipeline.metrics;
    let read = PipelineMetrics::read;

    counter(
        out,
        "profusion_events_in_total",
        "Rows read from every source.",
        read(&m.events_in),
    );
    counter(
        out,
        "profusion_rows_out_total",
        "Rows written to every sink.",
        read(&m.rows_out),
    );
    let tables = m.tables();
    family(
        out,
        "profusion_table_rows_in_total",
        "counter",
        "Rows read from a table's source.",
    );
    for (table, rows_in, _) in &tables {
        let _ = writeln!(
            out,
            "profusion_table_rows_in_total{{table=\"{}\"}} {rows_in}",
            label(table)
        );
    }
    family(
        out,
        "profusion_table_rows_out_total",
        "counter",
        "Rows handed to a table's sink.",
    );
    for (table, _, rows_out) in &tables {
        let _ = writeln!(
            out,
            "profusion_table_rows_out_total{{table=\"{}\"}} {rows_out}",
            label(table)
        );
    }
    family(
        out,
        "profusion_bad_records_total",
        "counter",
        "Records skipped or dead-lettered by bad_data, by reason.",
    );
    for (reason, n) in m.bad_records() {
        let _ = writeln!(
            out,
            "profusion_bad_records_total{{reason=\"{}\"}} {n}",
            label(reason)
        );
    }
    counter(
        out,
        "profusion_late_rows_total",
        "Rows that arrived after their window was emitted.",
        read(&m.late_rows),
    );
    counter(
        out,
        "profusion_duplicate_rows_total",
        "Rows dropped as duplicates ('dedup.key').",
        read(&m.duplicates),
    );
    counter(
        out,
        "profusion_stale_upserts_total",
        "Upserts a store skipped as not newer than what it held.",
        read(&m.stale_upserts),
    );
    if let Some(lag) = m.watermark_lag() {
        family(
            out,
            "profusion_watermark_lag_seconds",
            "gauge",
            "How far the watermark is behind the wall clock.",
        );
        let _ = writeln!(
            out,
            "profusion_watermark_lag_seconds {:.3}",
            lag.as_secs_f64()
        );
    }
    family(
        out,
        "profusion_consumer_lag_messages",
        "gauge",
        "Messages behind the end of each Kafka partition read.",
    );
    for (partition, lag) in m.consumer_lags() {
        let _ = writeln!(
            out,
            "profusion_consumer_lag_messages{{partition=\"{}\"}} {lag}",
            label(&partition)
        );
    }
    counter(
        out,
        "profusion_checkpoints_total",
        "Checkpoints completed.",
        read(&m.checkpoints),
    );
    counter(
        out,
        "profusion_checkpoint_failures_total",
        "Checkpoints that failed; the one before stays the latest.",
        read(&m.checkpoint_failures),
    );
    family(
        out,
        "profusion_checkpoint_last_success_seconds",
        "gauge",
        "When the last checkpoint completed, in seconds since the Unix epoch (0: none yet).",
    );
    let _ = writeln!(
        out,
        "profusion_checkpoint_last_success_seconds {:.3}",
        read(&m.last_checkpoint_success_ms) as f64 / 1000.0
    );
    histogram(
        out,
        "profusion_checkpoint_duration_seconds",
        "How long each checkpoint took.",
        &[("", m.checkpoint_seconds.snapshot())],
    );
    histogram(
        out,
        "profusion_upsert_duration_seconds",
        "How long each upsert transaction into a profile store took.",
        &[("", m.upsert_seconds.snapshot())],
    );
    counter(
        out,
        "profusion_enrich_http_failures_total",
        "enrich_http lookups that failed.",
        read(&m.enrich_http.failures),
    );
    family(
        out,
        "profusion_enrich_http_outcomes_total",
        "counter",
        "What enrich_http did, by outcome: cache hits, requests, retries, not found, failures, timeouts, keys short-circuited by an open breaker, keys over their call's budget, expired answers given.",
    );
    for (outcome, n) in m.enrich_http.snapshot() {
        let _ = writeln!(
            out,
            "profusion_enrich_http_outcomes_total{{outcome=\"{outcome}\"}} {n}"
        );
    }
    counter(
        out,
        "profusion_lookup_refresh_failures_total",
        "Lookup tables that could not be read again.",
        read(&m.lookup_refresh_failures),
    );
}

/// The HTTP server's part: requests, responses, webhook rejections, the profile cache.
fn render_server(server: &ServerMetrics, out: &mut String) {
    let read = PipelineMetrics::read;
    let requests: Vec<(&str, HistogramSnapshot)> = ROUTES
        .iter()
        .zip(&server.requests)
        .map(|(route, h)| (*route, h.snapshot()))
        .filter(|(_, s)| s.count > 0)
        .collect();
    let labelled: Vec<(String, HistogramSnapshot)> = requests
        .into_iter()
        .map(|(route, s)| (format!("route=\"{route}\""), s))
        .collect();
    let labelled: Vec<(&str, HistogramSnapshot)> = labelled
        .iter()
        .map(|(l, s)| (l.as_str(), s.clone()))
        .collect();
    histogram(
        out,
        "profusion_http_request_duration_seconds",
        "HTTP request latency, by route.",
        &labelled,
    );
    family(
        out,
        "profusion_http_responses_total",
        "counter",
        "HTTP responses, by route and status.",
    );
    for (route, counts) in ROUTES.iter().zip(&server.statuses) {
        for (status, count) in STATUSES.iter().zip(counts) {
            let n = count.load(Ordering::Relaxed);
            if n > 0 {
                let status = match status {
                    0 => "other".to_string(),
                    code => code.to_string(),
                };
                let _ = writeln!(
                    out,
                    "profusion_http_responses_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
    }
    family(
        out,
        "profusion_ingest_rejected_total",
        "counter",
        "Webhook requests refused, by reason.",
    );
    for (reason, n) in crate::stream::lock(&server.rejected).iter() {
        let _ = writeln!(
            out,
            "profusion_ingest_rejected_total{{reason=\"{}\"}} {n}",
            label(reason)
        );
    }
    counter(
        out,
        "profusion_ingested_events_total",
        "Webhook events accepted.",
        read(&server.ingested),
    );
    counter(
        out,
        "profusion_profile_cache_hits_total",
        "Profile lookups answered from the cache.",
        read(&server.cache_hits),
    );
    counter(
        out,
        "profusion_profile_cache_misses_total",
        "Profile lookups that read the store.",
        read(&server.cache_misses),
    );
    counter(
        out,
        "profusion_profile_reads_refused_total",
        "Profile lookups refused (503) because their view had --read-concurrency store reads in flight.",
        read(&server.reads_refused),
    );
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

/// A histogram family: one series per `(labels, snapshot)`, labels as `k="v"` text.
fn histogram(out: &mut String, name: &str, help: &str, series: &[(&str, HistogramSnapshot)]) {
    family(out, name, "histogram", help);
    for (labels, snapshot) in series {
        let with = |extra: &str| match (labels.is_empty(), extra.is_empty()) {
            (true, true) => String::new(),
            (true, false) => format!("{{{extra}}}"),
            (false, true) => format!("{{{labels}}}"),
            (false, false) => format!("{{{labels},{extra}}}"),
        };
        for (bound, count) in &snapshot.cumulative {
            let _ = writeln!(
                out,
                "{name}_bucket{} {count}",
                with(&format!("le=\"{bound}\""))
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{} {}",
            with("le=\"+Inf\""),
            snapshot.count
        );
        let _ = writeln!(out, "{name}_sum{} {}", with(""), snapshot.sum_seconds);
        let _ = writeln!(out, "{name}_count{} {}", with(""), snapshot.count);
    }
}

/// A label value, escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_exposition_has_counters_histograms_and_labels() {
        let pipeline = PipelineContext::default();
        PipelineMetrics::add(&pipeline.metrics.table("events").rows_in, 5);
        pipeline.metrics.count_bad_record("json");
        pipeline
            .metrics
            .upsert_seconds
            .observe(Duration::from_micros(300));
        let server = ServerMetrics::default();
        server.respond(0, 200, Duration::from_micros(80));
        server.reject("signature");
        let text = render(&pipeline, Some(&server));
        assert!(text.contains("profusion_table_rows_in_total{table=\"events\"} 5\n"));
        assert!(text.contains("profusion_bad_records_total{reason=\"json\"} 1\n"));
        assert!(text.contains("profusion_upsert_duration_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("profusion_upsert_duration_seconds_count 1\n"));
        assert!(text.contains(
            "profusion_http_request_duration_seconds_bucket{route=\"views\",le=\"0.0001\"} 1\n"
        ));
        assert!(
            text.contains("profusion_http_responses_total{route=\"views\",status=\"200\"} 1\n")
        );
        assert!(text.contains("profusion_ingest_rejected_total{reason=\"signature\"} 1\n"));
        // Every sample line belongs to a declared family.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
        }
    }
}
