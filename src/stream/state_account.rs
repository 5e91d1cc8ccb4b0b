//! [`StateAccount`]: how a stateful operator accounts what it holds, in one place: its
//! reservation in DataFusion's memory pool (an error past the limit, worded by the
//! operator), its `peak_state_bytes` metric for `EXPLAIN ANALYZE`, and the pipeline's
//! peak for the status line.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, Gauge, MetricBuilder};

use super::PipelineContext;

/// The accounts of one running operator's state.
pub struct StateAccount {
    reservation: MemoryReservation,
    peak: Gauge,
    pipeline: Arc<PipelineContext>,
}

impl StateAccount {
    /// The accounts of operator `name` running as `partition` in `context`.
    pub fn new(
        name: String,
        context: &Arc<TaskContext>,
        metrics: &ExecutionPlanMetricsSet,
        partition: usize,
    ) -> Self {
        Self {
            reservation: MemoryConsumer::new(name).register(context.memory_pool()),
            peak: MetricBuilder::new(metrics).gauge("peak_state_bytes", partition),
            pipeline: PipelineContext::of_task(context),
        }
    }

    /// Records that the state holds `bytes` now; past the memory limit, the error says
    /// `over_limit()` (what holds how much, and what to change) and the pool's reason.
    pub fn hold(&mut self, bytes: usize, over_limit: impl FnOnce() -> String) -> Result<()> {
        self.peak.set_max(bytes);
        self.pipeline
            .metrics
            .peak_state_bytes
            .fetch_max(bytes as u64, Ordering::Relaxed);
        self.reservation
            .try_resize(bytes)
            .map_err(|e| DataFusionError::ResourcesExhausted(format!("{}: {e}", over_limit())))
    }
}
