//! Event time and windows: watermarks per split, the `TUMBLE` / `HOP` / `SESSION` table
//! functions, the scan that assigns windows and routes late rows, and the aggregate that
//! emits each window once, when the watermark passes its end.
//!
//! The plan of a windowed query reads bottom-up:
//!
//! ```text
//! WindowAggregateExec: tumble=1m, keys=[user_id], aggregates=[count(Int64(1)), sum(events.amount)]
//!   ProjectionExec / FilterExec      (stateless steps, run by the aggregate itself)
//!     WindowScanExec: tumble=1m, time=ts, table=events, watermark=ts - INTERVAL '5' SECOND
//! ```

mod aggregate_exec;
mod assigner;
mod bins;
mod byte_keys;
mod chain;
mod event_time;
mod grouped;
mod id_groups;
mod key_dictionary;
mod late_rows;
mod rule;
mod scan_exec;
mod sessions;
mod shared_keys;
mod spec;
mod table_function;
mod watermark;

pub use aggregate_exec::WindowAggregateExec;
pub(crate) use aggregate_exec::without_input_ordering;
pub(crate) use byte_keys::ByteKeys;
pub use event_time::{LatenessOptions, WatermarkSpec, nanos_values, timestamps_as_nanos};
pub(crate) use grouped::AggregateExprs;
pub use rule::{UnboundedInputCheck, WindowAggregateRule};
pub(crate) use rule::{raw_aggregate, without_sorts};
pub use scan_exec::{LateSink, WindowScanExec};
pub use spec::{DisplayNanos, WindowKind};
pub use table_function::{WINDOW_END, WINDOW_START, WindowFunction, WindowedTable};
pub use watermark::{Watermark, WatermarkCell, WatermarkTracker};
