//! `TUMBLE(t, ts, size)`, `HOP(t, ts, slide, size)` and `SESSION(t, ts, gap)` as DataFusion
//! table functions. `t` is a table, a view or a parenthesised query. Each returns a
//! [`WindowedTable`]: its rows with `window_start`, `window_end` and `window_time` added.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_datafusion_err, plan_err};
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use futures::FutureExt;

use super::WindowKind;
use super::assign_exec::{LateSink, WindowAssignExec, WindowAssignment};
use crate::sql::parse_duration;
use crate::stream::{DeclaredEventTime, TableDeclarations};

/// The SQL names of the window columns. `window_time` is the window's event time, its end
/// less one nanosecond (as in Flink): a later window over the aggregated rows uses it.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";
pub const WINDOW_TIME: &str = "window_time";

/// Which window table function this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowFunction {
    Tumble,
    Hop,
    Session,
    Cumulate,
}

impl WindowFunction {
    /// The function's SQL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tumble => "tumble",
            Self::Hop => "hop",
            Self::Session => "session",
            Self::Cumulate => "cumulate",
        }
    }

    /// Every window table function.
    pub const ALL: [WindowFunction; 4] = [Self::Tumble, Self::Hop, Self::Session, Self::Cumulate];

    fn usage(self) -> &'static str {
        match self {
            Self::Tumble => "TUMBLE(table, time_column, size)",
            Self::Hop => "HOP(table, time_column, slide, size)",
            Self::Session => "SESSION(table, time_column, gap)",
            Self::Cumulate => "CUMULATE(table, time_column, step, size)",
        }
    }
}

impl WindowFunction {
    /// The function named `name` (as written, in either case), if it is one.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The window kind given by the arguments after the first: the time column and sizes.
    fn kind(&self, args: &[Expr]) -> Result<(String, WindowKind)> {
        let arity = if matches!(self, Self::Hop | Self::Cumulate) {
            3
        } else {
            2
        };
        if args.len() != arity {
            return plan_err!(
                "{} takes {} arguments, got {}",
                self.usage(),
                arity + 1,
                args.len() + 1
            );
        }
        let time_column = identifier(&args[0]).ok_or_else(|| {
            plan_datafusion_err!(
                "{}: the second argument must name a TIMESTAMP column",
                self.usage()
            )
        })?;
        let sizes = args[1..]
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
            (Self::Cumulate, [step, size]) => {
                if size % step != 0 {
                    return plan_err!("CUMULATE: the size must be a whole multiple of the step");
                }
                WindowKind::Cumulate {
                    step: *step,
                    size: *size,
                }
            }
            _ => return plan_err!("{}: wrong number of sizes", self.usage()),
        };
        Ok((time_column, kind))
    }

    /// Windows over `input` (named `name` in messages), given the arguments after the first;
    /// `declared` is its event time when it is a source table.
    pub fn over(
        &self,
        name: String,
        input: Arc<dyn TableProvider>,
        declared: Option<DeclaredEventTime>,
        args: &[Expr],
    ) -> Result<Arc<dyn TableProvider>> {
        let (time_column, kind) = self.kind(args)?;
        Ok(Arc::new(WindowedTable::try_new(
            name,
            input,
            declared,
            &time_column,
            kind,
        )?))
    }
}

/// `TUMBLE(events, …)`: the first argument names a table or a view. A query in parentheses
/// is planned by [`WindowQueryPlanner`](super::WindowQueryPlanner) instead.
impl TableFunctionImpl for WindowFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let Some((first, rest)) = exprs.split_first() else {
            return plan_err!("{} takes a table first", self.usage());
        };
        let name = identifier(first).ok_or_else(|| {
            plan_datafusion_err!(
                "{}: the first argument must name a table or a view, or be a query in parentheses",
                self.usage()
            )
        })?;
        let session = args.session();
        let table = lookup_table(session, &name)?;
        let declared = TableDeclarations::of_session(session)
            .and_then(|declarations| (declarations.event_time)(table.as_ref()))
            .transpose()?;
        self.over(name, table, declared, rest)
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

/// Finds a table or view in the session's default schema.
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

/// A table, view or query with `window_start` and `window_end`, assigned by a window kind.
#[derive(Debug)]
pub struct WindowedTable {
    /// What is windowed, as the query names it.
    name: String,
    input: Arc<dyn TableProvider>,
    /// The source table's declaration, when a source table is windowed directly: its
    /// allowed lateness and late-data sink apply.
    source: Option<DeclaredEventTime>,
    kind: WindowKind,
    time_index: usize,
    schema: SchemaRef,
}

impl WindowedTable {
    /// Windows of `kind` over `input`'s `time_column`. A source table must declare its
    /// watermark on that column; any other input carries the watermarks of the sources it
    /// reads.
    pub fn try_new(
        name: String,
        input: Arc<dyn TableProvider>,
        source: Option<DeclaredEventTime>,
        time_column: &str,
        kind: WindowKind,
    ) -> Result<Self> {
        let function = kind.function_name();
        let input_schema = input.schema();
        let Ok(time_index) = input_schema.index_of(time_column) else {
            return plan_err!("{function}: '{name}' has no column '{time_column}'");
        };
        let time_type = input_schema.field(time_index).data_type().clone();
        if !matches!(time_type, DataType::Timestamp(_, _)) {
            return plan_err!("{function}: '{time_column}' is {time_type}, not a TIMESTAMP");
        }
        if let Some(definition) = &source {
            match &definition.watermark {
                None => {
                    return plan_err!(
                        "{function} over '{name}' needs event time: declare WATERMARK FOR {time_column} AS {time_column} - INTERVAL '5' SECOND (or another delay) in CREATE TABLE {name}"
                    );
                }
                Some(w) if w.column != time_column => {
                    return plan_err!(
                        "{function}: '{name}' has its watermark on '{}', not on '{time_column}'",
                        w.column
                    );
                }
                Some(_) => {}
            }
        }
        for column in [WINDOW_START, WINDOW_END, WINDOW_TIME] {
            if input_schema.index_of(column).is_ok() {
                return plan_err!(
                    "{function}: '{name}' already has a column '{column}'; select it under another name to window the rows again (window over window_time)"
                );
            }
        }
        let mut fields: Vec<Field> = input_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(WINDOW_START, time_type.clone(), false));
        fields.push(Field::new(WINDOW_END, time_type.clone(), false));
        fields.push(Field::new(WINDOW_TIME, time_type, false));
        Ok(Self {
            name,
            input,
            source,
            kind,
            time_index,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// Resolves the source table's `'late_data.sink'` to a sink that takes its rows.
    async fn late_sink(&self, session: &dyn Session) -> Result<Option<LateSink>> {
        let Some(definition) = &self.source else {
            return Ok(None);
        };
        let Some(name) = &definition.lateness.late_data_sink else {
            return Ok(None);
        };
        let table = lookup_table(session, name).map_err(|e| {
            plan_datafusion_err!("'late_data.sink' of table '{}': {e}", definition.table)
        })?;
        let sink = TableDeclarations::of_session(session)
            .and_then(|declarations| (declarations.sink)(table.as_ref()))
            .transpose()?;
        let Some(sink) = sink else {
            return plan_err!("'late_data.sink' = '{name}' is not a table with a connector");
        };
        let source_schema = &definition.schema;
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
                definition.table,
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

    /// The windows this table assigns.
    fn assignment(&self) -> WindowAssignment {
        WindowAssignment {
            kind: self.kind,
            lateness_nanos: self
                .source
                .as_ref()
                .map_or(0, |definition| definition.lateness.lateness_nanos()),
            input: self.name.clone(),
            on_event_time: self.source.is_some(),
            regroups: false,
        }
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
        let input = self.input.scan(state, None, &[], None).await?;
        let declarations = TableDeclarations::of_session(state);
        if let Some(declarations) = declarations
            && (declarations.besides_event_time)(&input).contains(&self.time_index)
        {
            let function = self.kind.function_name();
            return plan_err!(
                "{function} over '{}': '{}' is not the event time of its table, so the \
                 watermark says nothing of it; window on the column its table declares \
                 WATERMARK FOR",
                self.name,
                self.schema.field(self.time_index).name()
            );
        }
        Ok(Arc::new(WindowAssignExec::try_new(
            input,
            self.assignment(),
            self.time_index,
            Arc::clone(&self.schema),
            projection.cloned(),
            late_sink,
        )?))
    }
}
