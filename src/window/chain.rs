//! The stateless operators between a [`WindowScanExec`] and the aggregation above it
//! (filters and projections from the query), evaluated batch by batch by the window
//! aggregate itself. DataFusion's own operators may hold rows back to coalesce batches; the
//! window aggregate must see every row of a source batch before it applies the watermark
//! that followed that batch, so it runs these steps without buffering.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::{Result, plan_err};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::projection::Projector;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, batch_filter};
use datafusion::physical_plan::projection::ProjectionExec;

use super::scan_exec::WindowScanExec;
use super::{WatermarkCell, WindowKind};
use crate::pipeline::StreamingFilterExec;

enum Step {
    Filter {
        predicate: Arc<dyn PhysicalExpr>,
        projection: Option<Vec<usize>>,
    },
    Project(Projector),
}

/// What the aggregate needs to know of the window scan below it.
#[derive(Debug, Clone)]
pub struct ScannedWindow {
    pub kind: WindowKind,
    pub lateness_nanos: i64,
    pub watermark: Arc<WatermarkCell>,
    pub table: String,
    /// True when windows are on the table's declared event-time column.
    pub on_event_time: bool,
}

/// Operators that only regroup or reschedule batches: running the steps ourselves makes
/// them unnecessary.
const PASS_THROUGH: [&str; 2] = ["CoalesceBatchesExec", "CooperativeExec"];

/// A window scan and the stateless steps above it, bottom-up.
pub struct StatelessChain {
    pub scan: Arc<dyn ExecutionPlan>,
    pub window: ScannedWindow,
    steps: Vec<Step>,
}

impl StatelessChain {
    /// Walks down from `plan` to the window scan; anything but filters and projections on
    /// the way is a planning error naming the operator.
    pub fn try_new(plan: &Arc<dyn ExecutionPlan>) -> Result<Self> {
        let mut steps = Vec::new();
        let mut node = Arc::clone(plan);
        loop {
            if let Some(scan) = node.downcast_ref::<WindowScanExec>() {
                steps.reverse();
                let window = ScannedWindow {
                    kind: scan.kind(),
                    lateness_nanos: scan.lateness_nanos(),
                    watermark: Arc::clone(scan.watermark_cell()),
                    table: scan.table().to_string(),
                    on_event_time: scan.on_event_time(),
                };
                return Ok(Self {
                    scan: node,
                    window,
                    steps,
                });
            }
            let child = if let Some(filter) = node.downcast_ref::<FilterExec>() {
                steps.push(Step::Filter {
                    predicate: Arc::clone(filter.predicate()),
                    projection: filter.projection().as_ref().map(|p| p.to_vec()),
                });
                Arc::clone(filter.input())
            } else if let Some(filter) = node.downcast_ref::<StreamingFilterExec>() {
                steps.push(Step::Filter {
                    predicate: Arc::clone(filter.predicate()),
                    projection: filter.projection().map(<[usize]>::to_vec),
                });
                Arc::clone(filter.input())
            } else if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
                let input_schema = projection.input().schema();
                steps.push(Step::Project(
                    projection.projection_expr().make_projector(&input_schema)?,
                ));
                Arc::clone(projection.input())
            } else if PASS_THROUGH.contains(&node.name()) && node.children().len() == 1 {
                Arc::clone(node.children()[0])
            } else {
                return plan_err!(
                    "{} between a window and its aggregation cannot run in a streaming window; \
                     keep only filters and projections between TUMBLE/HOP/SESSION and GROUP BY",
                    node.name()
                );
            };
            node = child;
        }
    }

    /// Runs every step over `batch`.
    pub fn apply(&self, mut batch: RecordBatch) -> Result<RecordBatch> {
        for step in &self.steps {
            batch = match step {
                Step::Filter {
                    predicate,
                    projection,
                } => {
                    let filtered = batch_filter(&batch, predicate)?;
                    match projection {
                        Some(indices) => filtered.project(indices)?,
                        None => filtered,
                    }
                }
                Step::Project(projector) => projector.project_batch(&batch)?,
            };
        }
        Ok(batch)
    }
}
