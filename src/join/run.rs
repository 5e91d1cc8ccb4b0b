//! [`JoinRun`]: a running join of two streams: it reads both inputs' messages as they
//! come, hands each to the join's state, and hands on the rows and watermarks that result,
//! accounting the state in the memory pool. Interval and temporal joins run the same way;
//! what differs is their [`TwoInputState`].

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::{JoinSide, Result};
use datafusion::physical_plan::metrics::BaselineMetrics;
use futures::StreamExt;

use crate::stream::{
    Aligned, AlignedInputs, EventTimeHold, MessageStream, OperatorCheckpoint, StateAccount,
    StreamMessage, Watermark, lock,
};

/// The state of a join of two streams between messages.
pub(super) trait TwoInputState: Send + 'static {
    /// Takes in a batch of the input on `side`; appends to `out` the rows it releases.
    fn on_batch(
        &mut self,
        side: JoinSide,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()>;

    /// Takes in a watermark of the input on `side`; appends to `out` the rows it releases.
    fn on_watermark(
        &mut self,
        side: JoinSide,
        watermark: Watermark,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()>;

    /// Output batches not yet handed on, last first.
    fn pending(&mut self) -> &mut Vec<RecordBatch>;

    /// The watermark to hand on, when it has moved.
    fn output_watermark(&mut self) -> Option<Watermark>;

    /// The earliest event time the state still needs.
    fn earliest_held(&self) -> Option<i64>;

    /// Bytes held.
    fn size(&self) -> usize;

    /// What the state holds, for an error past the memory limit: what it is, how much, and
    /// what to change.
    fn over_limit(&self, bytes: usize) -> String;

    /// True once no row can come out any more, whatever the inputs still bring.
    fn finished(&self) -> bool {
        false
    }
}

/// A running join: its inputs (left, then right) read with barriers aligned, its state,
/// its checkpointed slots and its accounts.
pub(super) struct JoinRun<S: TwoInputState> {
    pub(super) input: AlignedInputs,
    pub(super) state: Arc<Mutex<S>>,
    pub(super) checkpoint: OperatorCheckpoint,
    pub(super) account: StateAccount,
    pub(super) hold: Option<Arc<EventTimeHold>>,
    pub(super) baseline: BaselineMetrics,
}

impl<S: TwoInputState> JoinRun<S> {
    pub(super) async fn next(&mut self) -> Result<Option<StreamMessage>> {
        loop {
            let next = lock(&self.state).pending().pop();
            if let Some(batch) = next {
                self.baseline.record_output(batch.num_rows());
                return Ok(Some(StreamMessage::Batch(batch)));
            }
            if let Some(watermark) = lock(&self.state).output_watermark() {
                return Ok(Some(StreamMessage::Watermark(watermark)));
            }
            if lock(&self.state).finished() {
                return Ok(None);
            }
            let (input, message) = match self.input.next().await.transpose()? {
                None => return Ok(None),
                // Nothing is pending here: the state is all there is to snapshot.
                Some(Aligned::Barrier(epoch)) => {
                    self.checkpoint.on_barrier(epoch);
                    return Ok(Some(StreamMessage::Barrier(epoch)));
                }
                Some(Aligned::Input(input, message)) => (input, message),
            };
            let side = match input {
                0 => JoinSide::Left,
                _ => JoinSide::Right,
            };
            let timer = self.baseline.elapsed_compute().timer();
            let mut out = Vec::new();
            let mut state = lock(&self.state);
            match message {
                StreamMessage::Batch(batch) => state.on_batch(side, batch, &mut out)?,
                StreamMessage::Watermark(watermark) => {
                    state.on_watermark(side, watermark, &mut out)?
                }
                // A join waits for both sides' watermarks, idle or not, as on one worker.
                StreamMessage::Barrier(_) | StreamMessage::Idle => {}
            }
            if let Some(hold) = &self.hold {
                // Rows on their way out are held until the next step, when they are gone.
                match out.is_empty() {
                    true => hold.set(state.earliest_held()),
                    false => hold.lower(i64::MIN),
                }
            }
            out.reverse();
            *state.pending() = out;
            let size = state.size();
            timer.done();
            let over_limit = || state.over_limit(size);
            self.account.hold(size, over_limit)?;
        }
    }

    /// The run as a stream of messages.
    pub(super) fn into_messages(self) -> MessageStream {
        Box::pin(futures::stream::try_unfold(self, |mut run| async move {
            let message = run.next().await?;
            Ok(message.map(|message| (message, run)))
        }))
    }
}
