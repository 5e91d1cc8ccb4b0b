//! [`JoinRun`]: a running interval join: it reads both inputs' messages as they come,
//! hands each to the join's state, and hands on the rows and watermarks that result,
//! accounting the state in the memory pool.

use std::sync::{Arc, Mutex};

use datafusion::common::{DataFusionError, JoinSide, Result};
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::physical_plan::metrics::{BaselineMetrics, Gauge};
use futures::StreamExt;

use super::state::JoinState;
use crate::stream::StreamMessage;
use crate::stream::{EventTimeHold, PipelineContext, lock};

/// A running join: its merged input, its state, and rows waiting to be handed on.
pub(super) struct JoinRun {
    pub(super) input: futures::stream::BoxStream<'static, (JoinSide, Result<StreamMessage>)>,
    pub(super) state: Arc<Mutex<JoinState>>,
    pub(super) reservation: MemoryReservation,
    pub(super) hold: Option<Arc<EventTimeHold>>,
    pub(super) baseline: BaselineMetrics,
    pub(super) state_bytes: Gauge,
    pub(super) on: String,
    pub(super) pipeline: Arc<PipelineContext>,
}

impl JoinRun {
    pub(super) async fn next(&mut self) -> Result<Option<StreamMessage>> {
        loop {
            let next = lock(&self.state).pending.pop();
            if let Some(batch) = next {
                self.baseline.record_output(batch.num_rows());
                return Ok(Some(StreamMessage::Batch(batch)));
            }
            if let Some(watermark) = lock(&self.state).output_watermark() {
                return Ok(Some(StreamMessage::Watermark(watermark)));
            }
            let Some((side, message)) = self.input.next().await else {
                return Ok(None);
            };
            let timer = self.baseline.elapsed_compute().timer();
            let mut out = Vec::new();
            let mut state = lock(&self.state);
            match message? {
                StreamMessage::Batch(batch) => state.on_batch(side, batch, &mut out)?,
                StreamMessage::Watermark(watermark) => {
                    state.on_watermark(side, watermark, &mut out)?
                }
            }
            let size = state.size();
            let rows = state.left.len() + state.right.len();
            if let Some(hold) = &self.hold {
                // Rows on their way out are held until the next step, when they are gone.
                match out.is_empty() {
                    true => hold.set(state.earliest_held()),
                    false => hold.lower(i64::MIN),
                }
            }
            drop(state);
            timer.done();
            self.state_bytes.set_max(size);
            self.pipeline
                .metrics
                .peak_state_bytes
                .fetch_max(size as u64, std::sync::atomic::Ordering::Relaxed);
            self.reservation.try_resize(size).map_err(|e| {
                DataFusionError::ResourcesExhausted(format!(
                    "the interval join on {} holds {rows} rows in {size} bytes, over the memory limit \
                     (narrow the time bound in its ON condition, or raise --memory-limit): {e}",
                    self.on
                ))
            })?;
            out.reverse();
            lock(&self.state).pending = out;
        }
    }
}
