//! [`TableDeclarations`]: what a session's tables declare that operators need to know,
//! asked through the session (a config extension), so that operators know no connector.
//! A source table declares its event time: the watermark, the allowed lateness and where
//! late rows go; a table with a connector that writes can be such a late-data sink; and a
//! plan over source tables knows which of its columns are not their event time. The
//! session fills the answers in from its connectors.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::sink::DataSink;
use datafusion::physical_plan::ExecutionPlan;

use super::{LatenessOptions, WatermarkSpec};

/// A source table's declaration of event time.
#[derive(Debug, Clone)]
pub struct DeclaredEventTime {
    /// The table's name.
    pub table: String,
    /// `WATERMARK FOR …`, if the table declares one.
    pub watermark: Option<WatermarkSpec>,
    pub lateness: LatenessOptions,
    /// The columns the source reads, which a late-data sink must take.
    pub schema: SchemaRef,
}

/// The event-time declaration of a table, if it is a source table (an error if it is a
/// table that cannot be read).
pub type EventTimeOfTable =
    Arc<dyn Fn(&dyn TableProvider) -> Option<Result<DeclaredEventTime>> + Send + Sync>;

/// The sink of a table, if it is a table with a connector (an error if it cannot write).
pub type SinkOfTable =
    Arc<dyn Fn(&dyn TableProvider) -> Option<Result<Arc<dyn DataSink>>> + Send + Sync>;

/// The columns of a plan that are its source tables' columns other than their event time:
/// times there say nothing of where the watermark is.
pub type ColumnsBesidesEventTime = Arc<dyn Fn(&Arc<dyn ExecutionPlan>) -> Vec<usize> + Send + Sync>;

/// What a session's tables declare, answered by the session's connectors.
#[derive(Clone)]
pub struct TableDeclarations {
    pub event_time: EventTimeOfTable,
    pub sink: SinkOfTable,
    pub besides_event_time: ColumnsBesidesEventTime,
}

impl TableDeclarations {
    /// The declarations `session` answers, if it is a profusion session.
    pub fn of_session(session: &dyn Session) -> Option<Arc<Self>> {
        session.config().get_extension::<Self>()
    }
}

impl fmt::Debug for TableDeclarations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TableDeclarations")
    }
}
