//! The floor every streaming operator stands on: watermarks, the messages operators pass
//! (rows with event-time progress in band), the [`StreamingExec`] trait, and running any
//! plan node as a message stream. It imports nothing else of the crate.
//!
//! ```text
//! WindowAggregateExec          executes its child as messages, emits closed windows and
//!   StreamingFilterExec        its own watermark; stateless nodes forward watermarks
//!     WindowAssignExec         assigns windows, routes late rows, forwards watermarks
//!       SourceExec             rows and the source's watermark, merged over its splits
//! ```

mod execute;
mod merge;
mod message;
mod operator;
mod watermark;

pub use execute::{execute_messages, map_batches};
pub use merge::{MergedWatermark, merge_messages};
pub use message::{MessageStream, StreamMessage, batches_only, messages_of};
pub use operator::{StreamingExec, StreamingOperators};
pub use watermark::{Watermark, WatermarkTracker};
