//! `TUMBLE(t, ts, size)`, `HOP(t, ts, slide, size)` and `SESSION(t, ts, gap)` as DataFusion
//! table functions. Each returns a [`WindowedTable`]: the source table with `window_start`
//! and `window_end` added.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_datafusion_err, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::sink::DataSink;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use futures::FutureExt;

use super::WindowKind;
use super::scan_exec::{LateSink, WindowScanExec};
use crate::connector::{SourceDefinition, StreamTable};
use crate::sql::parse_duration;

/// The SQL names of the window columns.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";

/// Which window table function this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowFunction {
    Tumble,
    Hop,
    Session,
}

impl WindowFunction {
    /// The function's SQL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tumble => "tumble",
            Self::Hop => "hop",
            Self::Session => "session",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Self::Tumble => "TUMBLE(table, time_column, size)",
            Self::Hop => "HOP(table, time_column, slide, size)",
            Self::Session => "SESSION(table, time_column, gap)",
        }
    }
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let arity = if *self == Self::Hop { 4 } else { 3 };
        if exprs.len() != arity {
            return plan_err!(
                "{} takes {arity} arguments, got {}",
                self.usage(),
                exprs.len()
            );
        }
        let table_name = identifier(&exprs[0]).ok_or_else(|| {
            plan_datafusion_err!("{}: the first argument must name a table", self.usage())
        })?;
        let time_column = identifier(&exprs[1]).ok_or_else(|| {
            plan_datafusion_err!(
                "{}: the second argument must name a TIMESTAMP column",
                self.usage()
            )
        })?;
        let sizes = exprs[2..]
            .iter()
            .map(|e| interval_nanos(e).ok_or_else(|| plan_datafusion_err!("{}: window sizes must be positive intervals such as INTERVAL '1' MINUTE, got {e}", self.usage())))
            .collect::<Result<Vec<i64>>>()?;
        let kind = match (*self, sizes.as_slice()) {
            (Self::Tumble, [size]) => WindowKind::Tumble { size: *size },
            (Self::Hop, [slide, size]) => {
                if size % slide != 0 {
                    return plan_err!("HOP: the size must be a whole multiple of the slide");
                }
                WindowKind::Hop {
                    slide: *slide,
                    size: *size,
                }
            }
            (Self::Session, [gap]) => WindowKind::Session { gap: *gap },
            _ => return plan_err!("{}: wrong number of sizes", self.usage()),
        };
        let table = lookup_table(args.session(), &table_name)?;
        Ok(Arc::new(WindowedTable::try_new(table, &time_column, kind)?))
    }
}

fn identifier(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Column(column) if column.relation.is_none() => Some(column.name.clone()),
        _ => None,
    }
}

/// A window size in nanoseconds, from an interval or a string like `'1 minute'`.
fn interval_nanos(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    let nanos = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            v.days as i64 * 86_400_000_000_000 + v.nanoseconds
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            v.days as i64 * 86_400_000_000_000 + v.milliseconds as i64 * 1_000_000
        }
        ScalarValue::Utf8(Some(text)) => parse_duration(text).ok()?.as_nanos() as i64,
        _ => return None,
    };
    (nanos > 0).then_some(nanos)
}

/// Finds a profusion source table in the session's default schema.
fn lookup_table(session: &dyn Session, name: &str) -> Result<Arc<dyn TableProvider>> {
    let options = &session.config_options().catalog;
    let schema = session
        .catalog_list()
        .catalog(&options.default_catalog)
        .and_then(|c| c.schema(&options.default_schema))
        .ok_or_else(|| plan_datafusion_err!("no default schema to look up '{name}' in"))?;
    // The in-memory catalog answers at once; anything else is not supported here.
    match schema.table(name).now_or_never() {
        Some(Ok(Some(table))) => Ok(table),
        Some(Ok(None)) => plan_err!("table '{name}' not found"),
        Some(Err(e)) => Err(e),
        None => plan_err!("table '{name}' could not be looked up synchronously"),
    }
}

/// A source table with `window_start` and `window_end`, assigned by a window kind.
#[derive(Debug)]
pub struct WindowedTable {
    definition: Arc<SourceDefinition>,
    kind: WindowKind,
    time_index: usize,
    schema: SchemaRef,
}

impl WindowedTable {
    /// Windows of `kind` over `table`'s `time_column`, which must carry its watermark.
    pub fn try_new(
        table: Arc<dyn TableProvider>,
        time_column: &str,
        kind: WindowKind,
    ) -> Result<Self> {
        let function = kind.function_name();
        let Some(stream_table) = table.downcast_ref::<StreamTable>() else {
            return plan_err!(
                "{function} needs a source table declared with CREATE TABLE ... WITH (connector = ...); views and other tables cannot be windowed yet: put the view's filter in the windowed query"
            );
        };
        let definition = Arc::clone(stream_table.source()?);
        let source_schema = definition.source.schema();
        let Ok(time_index) = source_schema.index_of(time_column) else {
            return plan_err!(
                "{function}: table '{}' has no column '{time_column}'",
                stream_table.name()
            );
        };
        let time_type = source_schema.field(time_index).data_type().clone();
        if !matches!(time_type, DataType::Timestamp(_, _)) {
            return plan_err!("{function}: '{time_column}' is {time_type}, not a TIMESTAMP");
        }
        match &definition.watermark {
            None => {
                return plan_err!(
                    "{function} over '{}' needs event time: declare WATERMARK FOR {time_column} AS {time_column} - INTERVAL '5' SECOND (or another delay) in CREATE TABLE {}",
                    stream_table.name(),
                    stream_table.name()
                );
            }
            Some(w) if w.column != time_column => {
                return plan_err!(
                    "{function}: '{}' has its watermark on '{}', not on '{time_column}'",
                    stream_table.name(),
                    w.column
                );
            }
            Some(_) => {}
        }
        for name in [super::WINDOW_START, super::WINDOW_END] {
            if source_schema.index_of(name).is_ok() {
                return plan_err!(
                    "{function}: table '{}' already has a column '{name}'",
                    stream_table.name()
                );
            }
        }
        let mut fields: Vec<Field> = source_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(WINDOW_START, time_type.clone(), false));
        fields.push(Field::new(WINDOW_END, time_type, false));
        Ok(Self {
            definition,
            kind,
            time_index,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// Resolves the table's `'late_data.sink'` to a sink that takes the source's rows.
    async fn late_sink(&self, session: &dyn Session) -> Result<Option<LateSink>> {
        let Some(name) = &self.definition.lateness.late_data_sink else {
            return Ok(None);
        };
        let table = lookup_table(session, name).map_err(|e| {
            plan_datafusion_err!("'late_data.sink' of table '{}': {e}", self.definition.table)
        })?;
        let Some(sink_table) = table.downcast_ref::<StreamTable>() else {
            return plan_err!("'late_data.sink' = '{name}' is not a table with a connector");
        };
        let sink: Arc<dyn DataSink> = Arc::clone(sink_table.sink()?);
        let source_schema = self.definition.source.schema();
        let same_shape = sink.schema().fields().len() == source_schema.fields().len()
            && sink
                .schema()
                .fields()
                .iter()
                .zip(source_schema.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !same_shape {
            return plan_err!(
                "'late_data.sink' = '{name}' must have the columns of '{}' ({}), in that order",
                self.definition.table,
                source_schema
                    .fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(Some(LateSink {
            table: name.clone(),
            sink,
        }))
    }
}

#[async_trait]
impl TableProvider for WindowedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let late_sink = self.late_sink(state).await?;
        Ok(Arc::new(WindowScanExec::try_new(
            Arc::clone(&self.definition),
            self.kind,
            self.time_index,
            Arc::clone(&self.schema),
            projection.cloned(),
            late_sink,
        )?))
    }
}
