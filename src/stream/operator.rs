//! [`StreamingExec`]: the trait a streaming operator implements beside DataFusion's
//! `ExecutionPlan`, and [`StreamingOperators`], the session's list of them.
//!
//! DataFusion plans, optimizes and explains the tree; at run time each streaming operator
//! executes its children as message streams ([`execute_messages`](super::execute_messages))
//! so that watermarks reach it in band with the rows. A plan node is found to be streaming
//! by its type, through the downcasts registered here, never by its name.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;

use super::MessageStream;

/// An operator that reads and writes rows with event-time progress in band.
pub trait StreamingExec: ExecutionPlan {
    /// Runs `partition`, yielding rows and the operator's output watermark. The operator's
    /// `ExecutionPlan::execute` is these messages' rows.
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream>;
}

type Downcast = fn(&dyn ExecutionPlan) -> Option<&dyn StreamingExec>;

/// The streaming operator types of a session; a session config extension.
#[derive(Default, Clone)]
pub struct StreamingOperators {
    downcasts: Vec<(&'static str, Downcast)>,
}

impl StreamingOperators {
    /// Adds operator type `T`.
    pub fn with<T: StreamingExec + 'static>(mut self) -> Self {
        self.downcasts.push((std::any::type_name::<T>(), |plan| {
            plan.downcast_ref::<T>().map(|op| op as &dyn StreamingExec)
        }));
        self
    }

    /// `plan` as a streaming operator, if its type is one.
    pub fn find<'a>(&self, plan: &'a dyn ExecutionPlan) -> Option<&'a dyn StreamingExec> {
        self.downcasts
            .iter()
            .find_map(|(_, downcast)| downcast(plan))
    }
}

impl fmt::Debug for StreamingOperators {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.downcasts.iter().map(|(name, _)| name))
            .finish()
    }
}
