//! Windows: the `TUMBLE` / `HOP` / `SESSION` table functions over any stream, the operator
//! that assigns windows and routes late rows, and the aggregate that emits each window
//! once, when the watermark that reaches it in band passes the window's end.
//!
//! The plan of a windowed query reads bottom-up; every operator runs its child:
//!
//! ```text
//! WindowAggregateExec: tumble=1m, keys=[user_id], aggregates=[count(Int64(1)), sum(events.amount)]
//!   ProjectionExec / StreamingFilterExec   (stateless: watermarks pass through)
//!     WindowAssignExec: tumble=1m, time=ts
//!       SourceExec: table=events, …, watermark=ts - INTERVAL '5' SECOND
//! ```

mod aggregate_exec;
mod assign_exec;
mod assigner;
mod bins;
mod constant_arrays;
mod grouped;
mod id_groups;
mod key_dictionary;
mod late_rows;
mod provenance;
mod query_planner;
mod rule;
mod sessions;
mod shared_keys;
mod spec;
mod table_function;

pub use aggregate_exec::WindowAggregateExec;
pub(crate) use aggregate_exec::without_input_ordering;
pub use assign_exec::{LateSink, WindowAssignExec, WindowAssignment};
pub(crate) use constant_arrays::ConstantArrays;
pub(crate) use grouped::AggregateExprs;
pub use provenance::{WindowColumn, is_window_end, window_column};
pub use query_planner::WindowQueryPlanner;
pub use rule::WindowAggregateRule;
pub(crate) use rule::{raw_aggregate, without_sorts};
pub use spec::WindowKind;
pub use table_function::{WINDOW_END, WINDOW_START, WINDOW_TIME, WindowFunction, WindowedTable};
