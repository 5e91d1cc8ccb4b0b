//! Connectors: one folder each. A `CREATE TABLE ... WITH (connector = '…')` statement becomes
//! a [`StreamTable`] whose source and sink halves come from the named connector, which parses
//! its own options into a typed struct.

pub mod blackhole;
mod counting_sink;
pub mod datagen;
mod dedup;
pub mod file;
mod ingest_check;
pub mod kafka;
pub mod memory;
pub mod nexmark;
pub mod postgres;
mod registry;
mod source_exec;
pub mod sqlite;
pub mod stdout;
pub mod store;
mod table;
pub mod webhook;

pub use counting_sink::CountingSink;
pub use dedup::{DEFAULT_DEDUP_TTL, DedupSpec, Deduplicator};
pub use ingest_check::{IngestCheck, IngestRefusal};
pub use registry::{Connector, connector, names as connector_names};
pub use source_exec::{SourceExec, open_source, source_properties};
pub use table::{SourceDefinition, StreamTable};
pub use webhook::WebhookOptions;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Constraint;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};

use crate::error::{Error, Result};
use crate::sql::{CreateTable, MetadataColumn, WithOptions};
use crate::stream::{LatenessOptions, Source, SourceReads, WatermarkSpec};

/// Turns a `CREATE TABLE` into a table, planning its columns and watermark with `state`.
/// Sources that never end on their own are read as `reads` says.
pub async fn create_table(
    state: &SessionState,
    create: CreateTable,
    reads: SourceReads,
) -> Result<StreamTable> {
    let CreateTable {
        name,
        columns_sql,
        watermark,
        metadata,
        mut options,
        line,
    } = create;
    let statement_error = |source| Error::Statement { line, source };
    let declared_options = options.remaining().clone();
    let plan = state
        .create_logical_plan(&columns_sql)
        .await
        .map_err(statement_error)?;
    let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(ddl)) = plan else {
        return Err(options.error("expected CREATE TABLE name (columns) WITH (...)"));
    };
    let df_schema = Arc::clone(ddl.input.schema());
    let schema: SchemaRef = Arc::clone(df_schema.inner());
    let primary_key: Vec<String> = ddl
        .constraints
        .iter()
        .find_map(|c| match c {
            Constraint::PrimaryKey(indices) => Some(
                indices
                    .iter()
                    .map(|&i| schema.field(i).name().clone())
                    .collect(),
            ),
            Constraint::Unique(_) => None,
        })
        .unwrap_or_default();

    let connector = options.required("connector")?.to_ascii_lowercase();
    let lateness = LatenessOptions {
        allowed_lateness: options.duration("allowed_lateness")?.unwrap_or_default(),
        idle_timeout: options.duration("watermark.idle_timeout")?,
        late_data_sink: options.take("late_data.sink"),
    };
    let max_future = match options.take("watermark.max_future") {
        None => Some(crate::stream::DEFAULT_MAX_FUTURE),
        Some(_) if watermark.is_none() => {
            return Err(options.error(
                "option 'watermark.max_future' applies to tables with a WATERMARK: declare one",
            ));
        }
        Some(raw) if raw.trim().eq_ignore_ascii_case("none") => None,
        Some(raw) => Some(crate::sql::parse_duration(&raw).map_err(|e| {
            options.error(format!(
                "option 'watermark.max_future' has a bad value '{raw}': {e} (or 'none')"
            ))
        })?),
    };
    let dedup = DedupSpec::parse(&mut options, &schema)?;
    let lookup_refresh = options.duration("lookup.refresh")?;
    let state_ttl = options.duration("state.ttl")?;
    if state_ttl.is_some_and(|d| d.is_zero()) {
        return Err(options.error("option 'state.ttl' must be positive"));
    }
    let webhook = WebhookOptions::parse(&mut options)?;
    if lookup_refresh.is_some_and(|d| d.is_zero()) {
        return Err(options.error("option 'lookup.refresh' must be positive"));
    }
    let declared = Declared {
        name: &name,
        schema: &schema,
        metadata: &metadata,
        primary_key: &primary_key,
    };
    let (source, sink) = connector_halves(&connector, declared, &mut options, reads)?;
    if lookup_refresh.is_some() && !source.as_ref().is_some_and(|s| s.is_bounded()) {
        return Err(options.error(format!(
            "option 'lookup.refresh' is for bounded tables that lookup joins read again; \
             table '{name}' ({connector}) is not one"
        )));
    }
    options.finish(&connector)?;

    let watermark = match watermark {
        None => None,
        Some(clause) => {
            let expr = state
                .create_logical_expr(&clause.expr_sql, &df_schema)
                .map_err(statement_error)?;
            let physical = state
                .create_physical_expr(expr, &df_schema)
                .map_err(statement_error)?;
            let mut spec =
                WatermarkSpec::try_new(clause.column, clause.expr_sql, physical, &schema)
                    .map_err(statement_error)?;
            spec.max_future = max_future;
            Some(spec)
        }
    };
    let change_op = metadata
        .iter()
        .find(|column| column.key == "op")
        .map(|column| column.column.clone());
    let source = source.map(|source| {
        Arc::new(SourceDefinition {
            table: name.clone(),
            source,
            watermark,
            lateness,
            dedup,
            lookup_refresh,
            state_ttl,
            change_op,
        })
    });
    Ok(StreamTable::new(name, connector, schema, source, sink)
        .with_options(declared_options)
        .with_webhook(webhook))
}

/// A connector's reading and writing halves.
pub type Halves = (Option<Arc<dyn Source>>, Option<Arc<dyn DataSink>>);

/// What a `CREATE TABLE` (or a view's store) declares besides its options.
pub struct Declared<'a> {
    pub name: &'a str,
    pub schema: &'a SchemaRef,
    pub metadata: &'a [MetadataColumn],
    pub primary_key: &'a [String],
}

/// The halves of the table `declared` of `connector`, consuming its options.
pub fn connector_halves(
    connector: &str,
    declared: Declared<'_>,
    options: &mut WithOptions,
    reads: SourceReads,
) -> Result<Halves> {
    let Some(found) = registry::connector(connector) else {
        return Err(registry::unknown(options, connector));
    };
    if !found.has_metadata()
        && let Some(column) = declared.metadata.first()
    {
        return Err(options.error(format!(
            "column {}: connector '{connector}' has no record metadata (METADATA FROM is for kafka tables)",
            column.column
        )));
    }
    found.halves(declared, options, reads)
}
