//! `interval_join`: two pre-decoded streams (memory tables replayed as streams, as Kafka
//! topics are planned) joined on a key within 30 minutes of each other, every row of both
//! held for the whole run: the join's probe, insert and expiry at full state.
//! `temporal_join`: a stream joined with a versioned table of the same size as of each
//! row's time: versions kept per key, each stream row joined with the one valid then.

use super::harness::{best_of, into_blackhole, timed_after};
use crate::SessionOptions;
use crate::error::Result;

/// The join benchmark's settings.
pub(super) struct JoinBench<'a> {
    pub options: &'a SessionOptions,
    /// Rows of both streams together.
    pub events: u64,
    /// Distinct keys.
    pub keys: u64,
    pub repeat: u32,
}

impl JoinBench<'_> {
    pub async fn run(&self, selected: &dyn Fn(&str) -> bool) -> Result<()> {
        if selected("interval_join") {
            self.interval_join().await?;
        }
        if selected("temporal_join") {
            self.temporal_join().await?;
        }
        Ok(())
    }

    /// Two generated streams of half the events each, as memory tables replayed.
    fn two_streams(&self) -> String {
        let columns = "user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL";
        let per_side = self.events / 2;
        let mut setup = String::new();
        for (side, seed) in [("a", 1), ("b", 2)] {
            setup.push_str(&format!(
                "CREATE TABLE generated_{side} ({columns}) WITH (connector = 'datagen',
                   count = {per_side}, users = {}, seed = {seed}, step = '1ms', out_of_order = '2s');
                 CREATE TABLE {side} ({columns}, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
                   WITH (connector = 'memory', 'scan.mode' = 'replay');
                 INSERT INTO {side} SELECT * FROM generated_{side};",
                self.keys
            ));
        }
        setup
    }

    async fn interval_join(&self) -> Result<()> {
        let setup = self.two_streams();
        let query = into_blackhole(
            "SELECT a.user_id, a.ts, b.ts FROM a JOIN b ON a.user_id = b.user_id
               AND b.ts BETWEEN a.ts - INTERVAL '30' MINUTE AND a.ts + INTERVAL '30' MINUTE",
            "user_id TEXT, a_ts TIMESTAMP, b_ts TIMESTAMP",
        );
        let run = best_of(self.repeat, || timed_after(self.options, &setup, &query)).await?;
        run.report(
            "interval_join",
            &format!(
                "{} keys, 30-minute bound: {} pairs, peak state {:.1} MiB",
                self.keys,
                run.rows_out,
                run.peak_state_bytes as f64 / 1048576.0
            ),
        );
        Ok(())
    }

    async fn temporal_join(&self) -> Result<()> {
        let setup = self.two_streams();
        let query = into_blackhole(
            "SELECT a.user_id, a.ts, b.amount FROM a
               JOIN b FOR SYSTEM_TIME AS OF a.ts ON a.user_id = b.user_id",
            "user_id TEXT, ts TIMESTAMP, amount DOUBLE",
        );
        let run = best_of(self.repeat, || timed_after(self.options, &setup, &query)).await?;
        run.report(
            "temporal_join",
            &format!(
                "{} keys: {} rows joined, peak state {:.1} MiB",
                self.keys,
                run.rows_out,
                run.peak_state_bytes as f64 / 1048576.0
            ),
        );
        Ok(())
    }
}
