//! Stream-stream joins: operators that join two streams with state bounded by event time,
//! and the physical optimizer rules that plan them in place of DataFusion's hash joins.
//! Interval and window joins are here; temporal joins (`FOR SYSTEM_TIME AS OF`) in
//! [`temporal`].
//!
//! ```text
//! IntervalJoinExec: type=Left, on=[impression_id = impression_id], time=right - left in [0s, 30m]
//!   SourceExec: table=impressions, …        (each input's watermark arrives in band;
//!   SourceExec: table=clicks, …              the join's is derived from both)
//! ```

mod equi_join;
mod interval_exec;
mod key_bytes;
mod rule;
mod run;
mod shape;
mod side_buffer;
mod state;
pub mod temporal;
mod time_bound;

pub use interval_exec::IntervalJoinExec;
pub use rule::StreamJoinRule;
pub use temporal::{
    EventTimeOf, TemporalJoinAnalyzer, TemporalJoinExec, TemporalJoinRule, VersionColumns,
    VersionedTablePlanner,
};
pub use time_bound::{InputRetention, TimeBound, WindowEndOf};
