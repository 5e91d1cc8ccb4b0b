//! [`StreamTable`]: a table declared by `CREATE TABLE ... WITH (connector = ...)`, as a
//! DataFusion [`TableProvider`]. It reads through its connector's [`Source`] and is written
//! to through its connector's [`DataSink`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::physical_plan::ExecutionPlan;

use super::counting_sink::CountingSink;
use super::dedup::DedupSpec;
use super::source_exec::SourceExec;
use super::webhook::WebhookOptions;
use crate::stream::{LatenessOptions, Source, WatermarkSpec};

/// The reading side of a table: its source connector and its event time.
#[derive(Debug)]
pub struct SourceDefinition {
    /// The table name, for messages and `EXPLAIN`.
    pub table: String,
    pub source: Arc<dyn Source>,
    pub watermark: Option<WatermarkSpec>,
    pub lateness: LatenessOptions,
    /// Rows already read with the same key are dropped (`'dedup.key'`).
    pub dedup: Option<DedupSpec>,
    /// How often a lookup join reads this (bounded) table again (`'lookup.refresh'`); read
    /// once per query without it.
    pub lookup_refresh: Option<std::time::Duration>,
    /// How long, in event time, a join of two streams without a time bound keeps this
    /// table's rows (`'state.ttl'`).
    pub state_ttl: Option<std::time::Duration>,
    /// The column that says which change a row is (`METADATA FROM 'op'`): read as versions,
    /// a `d` row ends its key's versions.
    pub change_op: Option<String>,
}

/// A table backed by a connector: a source, a sink, or both.
pub struct StreamTable {
    name: String,
    connector: String,
    schema: SchemaRef,
    source: Option<Arc<SourceDefinition>>,
    sink: Option<Arc<dyn DataSink>>,
    /// The `WITH` options as declared, for `\d name` (shown with secrets masked).
    options: BTreeMap<String, String>,
    /// How events pushed over HTTP are checked.
    webhook: WebhookOptions,
}

impl fmt::Debug for StreamTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamTable")
            .field("name", &self.name)
            .field("connector", &self.connector)
            .finish()
    }
}

impl StreamTable {
    /// A table named `name` of `connector` with the given halves.
    pub fn new(
        name: String,
        connector: String,
        schema: SchemaRef,
        source: Option<Arc<SourceDefinition>>,
        sink: Option<Arc<dyn DataSink>>,
    ) -> Self {
        Self {
            name,
            connector,
            schema,
            source,
            sink,
            options: BTreeMap::new(),
            webhook: WebhookOptions::default(),
        }
    }

    /// This table, remembering the `WITH` options it was declared with.
    pub fn with_options(self, options: BTreeMap<String, String>) -> Self {
        Self { options, ..self }
    }

    /// This table, checking events pushed over HTTP as `webhook` says.
    pub fn with_webhook(self, webhook: WebhookOptions) -> Self {
        Self { webhook, ..self }
    }

    /// The `WITH` options as declared (secrets included: mask them to show them).
    pub fn options(&self) -> &BTreeMap<String, String> {
        &self.options
    }

    /// How events pushed over HTTP are checked.
    pub fn webhook(&self) -> &WebhookOptions {
        &self.webhook
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connector's name (`datagen`, `file`, ...).
    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// The reading side, or a planning error naming the table when it has none.
    pub fn source(&self) -> Result<&Arc<SourceDefinition>> {
        match &self.source {
            Some(source) => Ok(source),
            None => plan_err!(
                "table '{}' (connector '{}') is a sink only: it cannot be read",
                self.name,
                self.connector
            ),
        }
    }

    /// The writing side, or a planning error naming the table when it has none.
    pub fn sink(&self) -> Result<&Arc<dyn DataSink>> {
        match &self.sink {
            Some(sink) => Ok(sink),
            None => plan_err!(
                "table '{}' (connector '{}') is a source only: it cannot be written to",
                self.name,
                self.connector
            ),
        }
    }
}

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let source = Arc::clone(self.source()?);
        Ok(Arc::new(SourceExec::try_new(source, projection.cloned())?))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return plan_err!(
                "table '{}': only INSERT INTO (append) is supported, not {insert_op}",
                self.name
            );
        }
        let sink = CountingSink::new(self.name.clone(), Arc::clone(self.sink()?));
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}
