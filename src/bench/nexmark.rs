//! `profusion bench --only nexmark`: every query in `sql/nexmark` over generated events,
//! on one worker thread, its output drained. Throughput counts the events of all three
//! kinds the generator produced for the run, as Nexmark figures do.

use super::harness::{best_of, timed_after};
use crate::SessionOptions;
use crate::error::Result;
use crate::sql::substitute_variables;

/// The Nexmark tables and queries, as in `sql/nexmark`.
const TABLES: &str = include_str!("../../sql/nexmark/tables.sql");
const QUERIES: [(&str, &str); 21] = [
    ("q0", include_str!("../../sql/nexmark/q0.sql")),
    ("q1", include_str!("../../sql/nexmark/q1.sql")),
    ("q2", include_str!("../../sql/nexmark/q2.sql")),
    ("q3", include_str!("../../sql/nexmark/q3.sql")),
    ("q4", include_str!("../../sql/nexmark/q4.sql")),
    ("q5", include_str!("../../sql/nexmark/q5.sql")),
    ("q6", include_str!("../../sql/nexmark/q6.sql")),
    ("q7", include_str!("../../sql/nexmark/q7.sql")),
    ("q8", include_str!("../../sql/nexmark/q8.sql")),
    ("q9", include_str!("../../sql/nexmark/q9.sql")),
    ("q10", include_str!("../../sql/nexmark/q10.sql")),
    ("q11", include_str!("../../sql/nexmark/q11.sql")),
    ("q14", include_str!("../../sql/nexmark/q14.sql")),
    ("q15", include_str!("../../sql/nexmark/q15.sql")),
    ("q16", include_str!("../../sql/nexmark/q16.sql")),
    ("q17", include_str!("../../sql/nexmark/q17.sql")),
    ("q18", include_str!("../../sql/nexmark/q18.sql")),
    ("q19", include_str!("../../sql/nexmark/q19.sql")),
    ("q20", include_str!("../../sql/nexmark/q20.sql")),
    ("q21", include_str!("../../sql/nexmark/q21.sql")),
    ("q22", include_str!("../../sql/nexmark/q22.sql")),
];

/// The Nexmark benchmarks' settings.
pub(super) struct NexmarkBench<'a> {
    pub options: &'a SessionOptions,
    pub events: u64,
    pub repeat: u32,
}

impl NexmarkBench<'_> {
    pub async fn run(&self, selected: &dyn Fn(&str) -> bool) -> Result<()> {
        let events = self.events.to_string();
        let tables = substitute_variables(TABLES, |name| match name {
            "NEXMARK_EVENTS" => Some(events.clone()),
            "NEXMARK_RATE" => Some("0".into()),
            _ => None,
        })?;
        for (name, query) in QUERIES {
            let bench = format!("nexmark_{name}");
            if !selected(&bench) && !selected("nexmark") {
                continue;
            }
            // Views (q4, q6) keep their answers in a SQLite file of their own per run.
            let db = std::env::temp_dir()
                .join(format!("profusion-bench-{name}-{}.db", std::process::id()));
            let query = substitute_variables(query, |variable| {
                (variable == "NEXMARK_DB").then(|| db.display().to_string())
            })?;
            let run = best_of(self.repeat, || {
                let _ = std::fs::remove_file(&db);
                timed_after(self.options, &tables, &query)
            })
            .await;
            let _ = std::fs::remove_file(&db);
            let run = run?;
            let per_second =
                |elapsed: std::time::Duration| self.events as f64 / elapsed.as_secs_f64().max(1e-9);
            println!(
                "{bench:<16} {:>12} {:>10.3} {:>12.0} {:>12.0}  peak state {:.1} MiB, {} rows out",
                self.events,
                run.elapsed.as_secs_f64(),
                per_second(run.elapsed),
                per_second(run.median),
                run.peak_state_bytes as f64 / 1048576.0,
                run.rows_out
            );
        }
        Ok(())
    }
}
