//! The floor every streaming operator and connector stands on, importing nothing else of
//! the crate: the [`Source`] trait and the stream of a source's splits; event time,
//! watermarks and the messages operators pass (rows with event-time progress and checkpoint
//! barriers in band); the [`StreamingExec`] trait and running any plan node as a message
//! stream, with the filter operator, barrier alignment, and the exchange that moves rows
//! between workers ([`ExchangeExec`]); and what a job shares with its operators
//! and checkpoints: its context and counts, the positions it may commit ([`JobProgress`])
//! and the state snapshots a checkpoint takes; and what tables declare that operators ask
//! of them ([`TableDeclarations`]).
//!
//! ```text
//! WindowAggregateExec          executes its child as messages, emits closed windows and
//!   StreamingFilterExec        its own watermark; stateless nodes forward watermarks
//!     WindowAssignExec         assigns windows, routes late rows, forwards watermarks
//!       SourceExec             rows and the source's watermark, merged over its splits
//! ```

mod align;
mod byte_keys;
mod context;
mod duration;
mod event_time;
mod exchange_exec;
mod execute;
mod filter_exec;
mod group_task;
mod histogram;
mod job_state;
mod labelled;
mod merge;
mod message;
mod metrics;
mod operator;
mod progress;
mod scan_partition;
mod sort;
mod source;
mod state_account;
mod state_snapshot;
mod table_declarations;
mod trace;
mod watermark;

pub use align::{Aligned, AlignedInputs};
pub(crate) use byte_keys::ByteKeys;
pub use context::{PipelineContext, StopSignal};
pub use duration::{DisplayNanos, nanos_per_unit};
pub use event_time::{
    DEFAULT_MAX_FUTURE, FutureRow, LatenessOptions, WatermarkSpec, nanos_values,
    time_array_from_nanos, timestamps_as_nanos, without_rows,
};
pub use exchange_exec::{
    ExchangeExec, key_distribution, panic_reason, partitions_of, split_by_key,
};
pub use execute::{execute_messages, map_batches, map_with_state};
pub use filter_exec::{StreamingFilterExec, StreamingFilterRule};
pub use group_task::{GroupTask, SettledPosition};
pub use histogram::Histogram;
pub use job_state::{JobState, OperatorCheckpoint, StateSlot, node_id};
pub use labelled::Labelled;
pub use merge::{MergedWatermark, merge_messages};
pub use message::{MessageStream, StreamMessage, batches_only, execute_rows, messages_of};
pub use metrics::{PipelineMetrics, TableCounts};
pub use operator::{StreamingExec, StreamingOperators};
pub(crate) use progress::lock;
pub use progress::{EventTimeHold, JobProgress, SplitLedger};
pub use scan_partition::ScanPartition;
pub use sort::without_sort;
pub use source::{Source, SourceBatch, SourceReads, SourceStream, SplitStream};
pub use state_account::StateAccount;
pub use state_snapshot::{JobSnapshot, StateSnapshot};
pub use table_declarations::{DeclaredEventTime, EventTimeOfTable, SinkOfTable, TableDeclarations};
pub use trace::trace_column;
pub use watermark::{Watermark, WatermarkTracker};

/// The name of the column an upsert stream carries each row's version in, and a keyed
/// store keeps it in: a store applies a row only when its version is newer.
pub const VERSION_COLUMN: &str = "_version";
