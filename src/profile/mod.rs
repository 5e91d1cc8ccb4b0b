//! Profiles: keyed state kept up to date as events arrive. It knows no connector; the
//! pipeline plans `CREATE MATERIALIZED VIEW` (`pipeline/view.rs`) from these pieces and a
//! store a connector provides.
//!
//! - [`UpsertAggregateExec`] runs an unbounded `GROUP BY` as an upsert stream: after each
//!   input batch, the current row of every key it changed (any DataFusion aggregate), each
//!   with its version when the view's store applies rows by version.
//! - [`ConflictPolicies`]: how a view merges a new row into the stored one, per column.
//! - [`LatestPerKey`]: an upsert topic read back as the last row of each key.
//! - [`ViewScore`]: scores a view's rows are served with.

mod conflict;
mod keyed_state;
mod latest_per_key;
mod score;
mod upsert_aggregate;
mod upsert_rule;

pub use conflict::{ConflictPolicies, ConflictPolicy, is_grouped};
pub use keyed_state::KeyedAggregates;
pub use latest_per_key::LatestPerKey;
pub use score::{ViewScore, plan_scores};
pub use upsert_aggregate::UpsertAggregateExec;
pub use upsert_rule::UpsertAggregateRule;
