//! What every operator of a running pipeline shares: its metrics ([`PipelineMetrics`]) and
//! its stop signal.
//! It travels in DataFusion's session config as an extension, so operators reach it through
//! the task context rather than through globals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::execution::TaskContext;
use datafusion::prelude::SessionConfig;
use tokio::sync::Notify;

use super::PipelineMetrics;

/// Asks every source of a pipeline to stop reading (Ctrl-C): sources end their streams,
/// sinks flush what reached them, and windows that are still open are not emitted.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    /// Requests the stop.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// True once a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Completes when a stop is requested.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// The shared state of one running pipeline.
#[derive(Debug, Default)]
pub struct PipelineContext {
    pub metrics: PipelineMetrics,
    pub stop: StopSignal,
}

impl PipelineContext {
    /// The pipeline context of a task, or a fresh one when the session has none (a plain
    /// DataFusion session that registered profusion's tables).
    pub fn of_task(task: &TaskContext) -> Arc<PipelineContext> {
        Self::of_config(task.session_config())
    }

    /// The pipeline context stored in a session config, if any; a fresh one otherwise.
    pub fn of_config(config: &SessionConfig) -> Arc<PipelineContext> {
        config
            .get_extension::<PipelineContext>()
            .unwrap_or_default()
    }
}
