//! Temporal joins: a stream joined with a versioned table as of each row's event time.
//!
//! ```sql
//! SELECT e.event_id, u.tier
//! FROM events e
//! JOIN users FOR SYSTEM_TIME AS OF e.ts AS u ON u.user_id = e.user_id
//! ```
//!
//! The versioned table is any table with an event time: each of its rows is a version of
//! its key, valid from its event time until the key's next version (an upsert or
//! Debezium topic, a changelog file). In a changelog with a change kind (`METADATA FROM
//! 'op'`), a delete ends its key's versions. Planning goes in three steps, each where DataFusion
//! lets it happen: [`VersionedTablePlanner`] reads the `FOR SYSTEM_TIME AS OF` clause of
//! the relation; [`TemporalJoinAnalyzer`] ties it to the join around it; and
//! [`TemporalJoinRule`] replaces DataFusion's hash join with a [`TemporalJoinExec`].
//!
//! ```text
//! TemporalJoinExec: type=Inner, on=[user_id = user_id], versioned=right, as_of=ts, version_start=updated_at
//!   SourceExec: table=events, …
//!   SourceExec: table=users, …
//! ```

mod as_of;
mod exec;
mod rule;
mod state;
mod versioned_table;
mod versions;

pub use as_of::{AsOf, TemporalJoinAnalyzer};
pub use exec::{TemporalJoin, TemporalJoinExec};
pub use rule::TemporalJoinRule;
pub use versioned_table::{
    EventTimeOf, VersionColumns, VersionedTable, VersionedTablePlanner, Versioning, versioned_scan,
};
