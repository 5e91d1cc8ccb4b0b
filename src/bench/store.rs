//! Store benchmarks: versioned upserts straight into a profile store (`sqlite_upsert`,
//! `postgres_upsert`), and a materialized view end to end (`sqlite_view`: events ->
//! GROUP BY -> upserts), and one run of a view over a view (`view_over_view`: what each
//! run brought by an upstream change costs).

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::harness::{Run, best_of, setup, timed_after};
use crate::connector::postgres::{PostgresOptions, PostgresStore};
use crate::connector::sqlite::{SqliteOptions, SqliteStore, SqliteSync};
use crate::connector::store::ProfileStore;
use crate::error::Result;

/// Rows per upsert transaction: the size of a batch the pipeline hands a sink.
const BATCH_ROWS: usize = 8192;

/// The store benchmarks, writing their files under `dir`.
pub(super) struct StoreBench<'a> {
    pub options: &'a crate::SessionOptions,
    pub events: u64,
    pub users: u64,
    pub repeat: u32,
    pub dir: &'a std::path::Path,
    pub postgres: Option<&'a str>,
}

impl StoreBench<'_> {
    pub async fn run(&self, selected: &dyn Fn(&str) -> bool) -> Result<()> {
        if selected("sqlite_upsert") {
            let batches = self.profile_rows().await?;
            let mut round = 0;
            let run = best_of(self.repeat, || {
                round += 1;
                let path = self.dir.join(format!("upsert-{round}.db"));
                let batches = batches.clone();
                async move {
                    let store = SqliteStore::new(
                        SqliteOptions {
                            path,
                            table: "profiles".into(),
                            sync: SqliteSync::Full,
                        },
                        profile_schema(),
                        vec!["user_id".into()],
                        true,
                    );
                    upsert_all(&store, batches).await
                }
            })
            .await?;
            run.report(
                "sqlite_upsert",
                &format!(
                    "versioned upserts of {} keys, {BATCH_ROWS} per transaction (rows/s)",
                    self.users.min(self.events)
                ),
            );
        }
        if selected("postgres_upsert") {
            match self.postgres {
                Some(url) => self.postgres_upsert(url).await?,
                None => println!("postgres_upsert: skipped (give a database with --postgres URL)"),
            }
        }
        // The cost of durable commits: the same view with 'sync' = 'normal'.
        for (bench, sync) in [("sqlite_view", "full"), ("sqlite_view_normal", "normal")] {
            if !selected(bench) {
                continue;
            }
            let path = self.dir.join(format!("view-{sync}.db"));
            let setup_text = format!(
                "CREATE TABLE generated (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
                   WITH (connector = 'datagen', count = {}, users = {}, seed = 1);
                 CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
                   WITH (connector = 'memory', 'scan.mode' = 'replay');
                 INSERT INTO events SELECT * FROM generated;",
                self.events, self.users
            );
            let mut round = 0;
            let options = self.options;
            let run = best_of(self.repeat, || {
                round += 1;
                let _ = std::fs::remove_file(&path);
                let view = format!(
                    "CREATE MATERIALIZED VIEW profiles_{round} PRIMARY KEY (user_id)
                       WITH (path = '{}', sync = '{sync}') AS
                     SELECT user_id, count(*) AS events, sum(amount) AS spend, max(ts) AS last_seen
                     FROM events GROUP BY user_id;",
                    path.display()
                );
                let setup_text = setup_text.clone();
                async move { timed_after(options, &setup_text, &view).await }
            })
            .await?;
            run.report(
                bench,
                &format!(
                    "events -> GROUP BY user_id -> SQLite ('sync' = '{sync}'): {} upserts, {:.0} upserts/s",
                    run.rows_out,
                    run.rows_out_per_second()
                ),
            );
        }
        if selected("view_over_view") {
            let path = self.dir.join("views.db");
            let mut round = 0;
            let options = self.options;
            let run = best_of(self.repeat, || {
                round += 1;
                let _ = std::fs::remove_file(&path);
                let upstream = format!(
                    "CREATE TABLE events (user_id TEXT NOT NULL, event_type TEXT NOT NULL, ts TIMESTAMP NOT NULL)
                       WITH (connector = 'datagen', count = {events}, users = {users}, seed = 1);
                     CREATE MATERIALIZED VIEW profile_{round} PRIMARY KEY (user_id)
                       WITH (path = '{path}') AS
                     SELECT user_id, last_value(event_type ORDER BY ts) AS last_event, count(*) AS events
                     FROM events GROUP BY user_id;",
                    events = self.users * 2,
                    users = self.users,
                    path = path.display()
                );
                let downstream = format!(
                    "CREATE MATERIALIZED VIEW by_event_{round} PRIMARY KEY (last_event)
                       WITH (path = '{}') AS
                     SELECT last_event, count(*) AS users, sum(events) AS events
                     FROM profile_{round} GROUP BY last_event;",
                    path.display()
                );
                async move { timed_after(options, &upstream, &downstream).await }
            })
            .await?;
            run.report(
                "view_over_view",
                &format!(
                    "one run of a GROUP BY over a {}-row SQLite view: {:.1} ms",
                    run.events,
                    run.elapsed.as_secs_f64() * 1e3
                ),
            );
        }
        Ok(())
    }

    async fn postgres_upsert(&self, url: &str) -> Result<()> {
        let batches = self.profile_rows().await?;
        let mut round = 0;
        let run = best_of(self.repeat, || {
            round += 1;
            let table = format!("profusion_bench_{}_{round}", std::process::id());
            let batches = batches.clone();
            async move {
                let store = PostgresStore::try_new(
                    PostgresOptions {
                        url: url.to_string(),
                        table: table.clone(),
                        pool_size: 1,
                    },
                    profile_schema(),
                    vec!["user_id".into()],
                    true,
                )?;
                let run = upsert_all(&store, batches).await;
                store.drop_table().await?;
                run
            }
        })
        .await?;
        run.report(
            "postgres_upsert",
            &format!(
                "versioned upserts of {} keys, {BATCH_ROWS} per statement (rows/s)",
                self.users.min(self.events)
            ),
        );
        Ok(())
    }

    /// Profile rows for `users` keys (every key once per pass), in batches.
    async fn profile_rows(&self) -> Result<Vec<RecordBatch>> {
        let engine = setup(self.options, "").await?;
        let frame = engine
            .context()
            .sql(&format!(
                "SELECT concat('u', CAST(value % {users} AS VARCHAR)) AS user_id,
                        value AS events, CAST(value AS DOUBLE) * 0.5 AS spend,
                        to_timestamp_nanos(value * 1000000) AS last_seen,
                        'page_view' AS last_event
                 FROM generate_series(0, {last})",
                users = self.users.max(1),
                last = self.events.saturating_sub(1)
            ))
            .await?;
        let batches = frame.collect().await?;
        let schema = profile_schema();
        let mut out = Vec::new();
        for batch in batches {
            let mut offset = 0;
            while offset < batch.num_rows() {
                let len = BATCH_ROWS.min(batch.num_rows() - offset);
                let slice = batch.slice(offset, len);
                let batch = RecordBatch::try_new(Arc::clone(&schema), slice.columns().to_vec())
                    .map_err(datafusion::error::DataFusionError::from)?;
                out.push(batch);
                offset += len;
            }
        }
        Ok(out)
    }
}

fn profile_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("events", DataType::Int64, false),
        Field::new("spend", DataType::Float64, true),
        Field::new(
            "last_seen",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            true,
        ),
        Field::new("last_event", DataType::Utf8, false),
    ]))
}

/// Upserts every batch, each row with a version above any before it.
async fn upsert_all(store: &dyn ProfileStore, batches: Vec<RecordBatch>) -> Result<Run> {
    let mut version = 0i64;
    let mut rows = 0;
    let started = Instant::now();
    for batch in batches {
        let n = batch.num_rows() as i64;
        let versions = Int64Array::from_iter_values(version..version + n);
        version += n;
        rows += store.upsert(batch, Some(versions)).await?.written;
    }
    let elapsed = started.elapsed();
    Ok(Run {
        events: rows,
        elapsed,
        median: elapsed,
        peak_state_bytes: 0,
        output_bytes: 0,
        rows_out: rows,
    })
}

impl Run {
    /// Rows written per second by the sinks of this run.
    pub(super) fn rows_out_per_second(&self) -> f64 {
        self.rows_out as f64 / self.elapsed.as_secs_f64()
    }
}
