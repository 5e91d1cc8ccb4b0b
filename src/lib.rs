//! profusion: streaming SQL for real-time personalization, built on Apache DataFusion.
//!
//! A pipeline is a `.sql` file of `CREATE TABLE ... WITH (connector = ...)` sources and
//! sinks, views, and continuous `INSERT INTO ... SELECT` queries, with event-time windows
//! (`TUMBLE`, `HOP`, `SESSION`) that emit each window once, when the watermark passes its
//! end.
//!
//! ```no_run
//! # async fn demo() -> profusion::Result<()> {
//! use profusion::{Pipeline, SessionOptions};
//! let pipeline = Pipeline::load(
//!     "CREATE TABLE events (user_id TEXT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
//!        WITH (connector = 'datagen', count = 1000);
//!      SELECT user_id, window_start, count(*) AS events
//!        FROM TUMBLE(events, ts, INTERVAL '1' MINUTE) GROUP BY user_id, window_start, window_end;",
//!     &SessionOptions::default(),
//! ).await?;
//! pipeline.run().await?;
//! # Ok(()) }
//! ```
//!
//! To embed the pieces in your own DataFusion application, build a session with
//! [`session::new_session`], or register [`window::WindowFunction`]s and add
//! [`window::WindowAggregateRule`] to your physical optimizer rules.

pub mod bench;
pub mod cli;
pub mod connector;
pub mod error;
pub mod format;
pub mod join;
pub mod lookup;
pub mod pipeline;
pub mod profile;
pub mod repl;
pub mod serve;
pub mod sql;
pub mod stream;
pub mod top_n;
pub mod window;

pub use error::{Error, Result};
pub use pipeline::session;
pub use pipeline::{Engine, Job, JobKind, Pipeline, RunSummary, rows_written};
pub use session::SessionOptions;
