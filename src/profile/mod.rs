//! Profiles: keyed state kept up to date as events arrive, and the stores that hold it.
//!
//! - [`UpsertAggregateExec`] runs an unbounded `GROUP BY` as an upsert stream: after each
//!   input batch, the current row of every key it changed (any DataFusion aggregate).
//! - `CREATE MATERIALIZED VIEW ... PRIMARY KEY (...)` ([`plan_view`]) sends such a stream,
//!   each row with its version, into a [`ProfileStore`] that applies a row only when its
//!   version is newer than the stored one, and reads the store back as a table.
//! - Stores: SQLite (`connector = 'sqlite'`, the embedded default), PostgreSQL
//!   (`connector = 'postgres'`), and a Kafka upsert topic (`connector = 'kafka'`, read back
//!   through [`LatestPerKey`]).
//! - A view over other views runs again when they change ([`ViewChanges`]).

mod conflict;
mod keyed_state;
mod latest_per_key;
mod score;
mod upsert_aggregate;
mod upsert_rule;
mod view;

pub use conflict::{ConflictPolicies, ConflictPolicy};
pub use keyed_state::KeyedAggregates;
pub use latest_per_key::LatestPerKey;
pub use score::{ViewScore, plan_scores};
pub use upsert_aggregate::UpsertAggregateExec;
pub use upsert_rule::UpsertAggregateRule;
pub use view::{DEFAULT_MIN_INTERVAL, PlannedView, ViewDefinition, ViewRun, plan_run, plan_view};
