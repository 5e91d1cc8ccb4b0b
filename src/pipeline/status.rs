//! The live status line of a running pipeline: events in, events per second, watermark,
//! late rows and rows out, redrawn in place on a terminal.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::stream::PipelineContext;

/// A snapshot of the counters, formatted for people.
pub fn status_text(context: &PipelineContext, events_per_second: f64) -> String {
    let m = &context.metrics;
    let mut text = format!(
        "events in {} ({}/s) · watermark {} · late {} · rows out {}",
        m.events_in.get(),
        events_per_second.round() as u64,
        m.watermark(),
        m.late_rows.get(),
        m.rows_out.get(),
    );
    let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    for (label, n) in [
        ("duplicates", m.duplicates()),
        ("stale upserts", m.stale_upserts.get()),
        ("lookup refresh failures", m.lookup_refresh_failures.get()),
        ("enrich_http failures", read(&m.enrich_http.failures)),
        ("enrich_http timeouts", read(&m.enrich_http.timeouts)),
    ] {
        if n > 0 {
            text.push_str(&format!(" · {label} {n}"));
        }
    }
    let checkpoints = m.checkpoints.get();
    if checkpoints > 0 {
        text.push_str(&format!(
            " · checkpoints {checkpoints} (last {} ms)",
            read(&m.last_checkpoint_ms)
        ));
    }
    let bad = m.bad_records();
    if !bad.is_empty() {
        let kinds: Vec<String> = bad.iter().map(|(k, n)| format!("{k} {n}")).collect();
        text.push_str(&format!(
            " · bad records {} ({})",
            bad.values().sum::<u64>(),
            kinds.join(", ")
        ));
    }
    text
}

/// Redraws the status line on standard error every `period` until dropped.
pub struct StatusLine {
    task: tokio::task::JoinHandle<()>,
}

impl StatusLine {
    pub fn start(context: Arc<PipelineContext>, period: Duration) -> Self {
        let task = tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            let mut ticker = tokio::time::interval(period);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let now = Instant::now();
                let events = context.metrics.events_in.get();
                let rate = (events - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
                last = (now, events);
                let mut stderr = std::io::stderr().lock();
                let _ = write!(stderr, "\r\x1b[2K{}", status_text(&context, rate));
                let _ = stderr.flush();
            }
        });
        Self { task }
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.task.abort();
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K");
        let _ = stderr.flush();
    }
}
