//! Top-N over a stream: `ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)` filtered to the
//! first N rows of each partition, kept up to date as rows arrive. DataFusion plans the
//! query as a sort and a window function over all of its input, which a stream never
//! finishes; [`TopNRule`] replaces that with a [`TopNExec`], whose output is a changelog
//! keyed by the partition and the rank: after each batch, each rank whose row changed is
//! emitted again, so the last row of each (partition, rank) is the query's answer so far.
//! With N = 1 it keeps the first (or, ordered descending, the last) row of each key: the
//! deduplication of Flink's and RisingWave's `ROW_NUMBER … = 1` idiom.
//!
//! ```text
//! TopNExec: partition_by=[auction@0], order_by=[price@2 DESC], limit=10
//!   SourceExec: table=bid, …
//! ```

mod exec;
mod rule;
mod state;

pub use exec::TopNExec;
pub use rule::TopNRule;
