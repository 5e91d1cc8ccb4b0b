//! The event-time side of a source table: its `WATERMARK FOR col AS expr`, how far ahead of
//! the clock an event may be (`'watermark.max_future'`), and the options that say how late
//! rows may be (`'allowed_lateness'`, `'watermark.idle_timeout'`, `'late_data.sink'`).

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, make_array};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::{cast, max};
use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit, TimestampNanosecondType};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};

use super::Watermark;
use super::duration::nanos_per_unit;

/// `WATERMARK FOR column AS expr`, planned against the table's schema.
#[derive(Debug, Clone)]
pub struct WatermarkSpec {
    /// The event-time column.
    pub column: String,
    /// The expression as written, for `EXPLAIN`.
    pub sql: String,
    expr: Arc<dyn PhysicalExpr>,
    /// For the usual `col` and `col - INTERVAL '…'`: the constant delay in nanoseconds, so a
    /// batch's watermark is its largest event time minus the delay, without evaluating the
    /// expression row by row.
    delay: Option<i64>,
    /// How far ahead of the process clock an event time may be; a row further ahead is
    /// bad data and never moves the watermark. `None`: any time (simulated data).
    pub max_future: Option<Duration>,
}

/// How far ahead of the clock an event may be unless a table says otherwise.
pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(3600);

/// A row whose event time is too far ahead of the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FutureRow {
    /// The row's index in its batch.
    pub row: usize,
    /// Why it is refused, with its time.
    pub reason: String,
}

impl WatermarkSpec {
    /// Checks that `column` is a timestamp of `schema` and `expr` yields a timestamp.
    pub fn try_new(
        column: String,
        sql: String,
        expr: Arc<dyn PhysicalExpr>,
        schema: &Schema,
    ) -> Result<Self> {
        let Ok(field) = schema.field_with_name(&column) else {
            return plan_err!("WATERMARK FOR {column}: the table has no column '{column}'");
        };
        if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
            return plan_err!(
                "WATERMARK FOR {column}: '{column}' is {}, not a TIMESTAMP",
                field.data_type()
            );
        }
        match expr.data_type(schema)? {
            DataType::Timestamp(_, _) => Ok(Self {
                delay: constant_delay(&expr, &column),
                column,
                sql,
                expr,
                max_future: Some(DEFAULT_MAX_FUTURE),
            }),
            other => plan_err!(
                "WATERMARK FOR {column} AS {sql}: the expression is {other}, not a TIMESTAMP"
            ),
        }
    }

    /// The rows of `batch` whose event time is more than `'watermark.max_future'` ahead
    /// of the process clock.
    pub fn future_rows(&self, batch: &RecordBatch) -> Result<Vec<FutureRow>> {
        let (Some(limit), Some(times)) = (self.max_future, batch.column_by_name(&self.column))
        else {
            return Ok(Vec::new());
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let horizon = now.saturating_add(limit.as_nanos().min(i64::MAX as u128) as i64);
        let nanos = timestamps_as_nanos(times)?;
        let nanos = nanos.as_primitive::<TimestampNanosecondType>();
        if max(nanos).is_none_or(|latest| latest <= horizon) {
            return Ok(Vec::new());
        }
        let options = datafusion::arrow::util::display::FormatOptions::default();
        let shown = datafusion::arrow::util::display::ArrayFormatter::try_new(times, &options)?;
        Ok(nanos
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_some_and(|t| t > horizon))
            .map(|(row, _)| FutureRow {
                row,
                reason: format!(
                    "{} = {} is more than {} ahead of the clock ('watermark.max_future')",
                    self.column,
                    shown.value(row),
                    super::DisplayNanos(limit.as_nanos() as i64)
                ),
            })
            .collect())
    }

    /// The latest value of the event-time column in `batch`, in nanoseconds.
    pub fn latest_event_time(&self, batch: &RecordBatch) -> Result<Option<i64>> {
        let Some(times) = batch.column_by_name(&self.column) else {
            return Ok(None);
        };
        let nanos = timestamps_as_nanos(times)?;
        Ok(max(nanos.as_primitive::<TimestampNanosecondType>()))
    }

    /// The largest value of the watermark expression over `batch`, if it has any.
    pub fn max_of(&self, batch: &RecordBatch) -> Result<Option<Watermark>> {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        if let Some(delay) = self.delay
            && let Some(times) = batch.column_by_name(&self.column)
        {
            let nanos = timestamps_as_nanos(times)?;
            let latest = max(nanos.as_primitive::<TimestampNanosecondType>());
            return Ok(latest.map(|t| Watermark(t.saturating_sub(delay))));
        }
        let values = self.expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let nanos = timestamps_as_nanos(&values)?;
        Ok(max(nanos.as_primitive::<TimestampNanosecondType>()).map(Watermark))
    }
}

/// `batch` without the rows at `rows`.
pub fn without_rows(
    batch: &RecordBatch,
    rows: impl IntoIterator<Item = usize>,
) -> Result<RecordBatch> {
    let mut keep = vec![true; batch.num_rows()];
    for row in rows {
        keep[row] = false;
    }
    let keep = datafusion::arrow::array::BooleanArray::from(keep);
    Ok(datafusion::arrow::compute::filter_record_batch(
        batch, &keep,
    )?)
}

/// The delay of `column` or `column - <interval literal>`, in nanoseconds.
fn constant_delay(expr: &Arc<dyn PhysicalExpr>, column: &str) -> Option<i64> {
    let is_time_column = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Column>()
            .is_some_and(|c| c.name() == column)
    };
    if is_time_column(expr) {
        return Some(0);
    }
    let binary = expr.downcast_ref::<BinaryExpr>()?;
    if *binary.op() != Operator::Minus || !is_time_column(binary.left()) {
        return None;
    }
    match binary.right().downcast_ref::<Literal>()?.value() {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(v.days as i64 * 86_400_000_000_000 + v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(v.days as i64 * 86_400_000_000_000 + v.milliseconds as i64 * 1_000_000)
        }
        _ => None,
    }
}

/// A timestamp array of any unit, as nanoseconds.
pub fn timestamps_as_nanos(values: &ArrayRef) -> Result<ArrayRef> {
    Ok(match values.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, None) => Arc::clone(values),
        _ => cast(values, &DataType::Timestamp(TimeUnit::Nanosecond, None))?,
    })
}

/// How a source's late rows are treated.
#[derive(Debug, Clone, Default)]
pub struct LatenessOptions {
    /// Windows are emitted once the watermark passes their end plus this.
    pub allowed_lateness: Duration,
    /// A split silent for this long stops holding the watermark back.
    pub idle_timeout: Option<Duration>,
    /// A table that receives rows arriving after their window was emitted.
    pub late_data_sink: Option<String>,
}

impl LatenessOptions {
    /// The allowed lateness in nanoseconds.
    pub fn lateness_nanos(&self) -> i64 {
        self.allowed_lateness.as_nanos().min(i64::MAX as u128) as i64
    }
}

/// The values of a timestamp array in nanoseconds, without copying when the array already
/// holds nanoseconds; nulls read as `i64::MIN` (before every window: such rows are late).
pub fn nanos_values(values: &ArrayRef) -> Result<ScalarBuffer<i64>> {
    let nanos = timestamps_as_nanos(values)?;
    let nanos = nanos.as_primitive::<TimestampNanosecondType>();
    if nanos.null_count() == 0 {
        return Ok(nanos.values().clone());
    }
    Ok(nanos.iter().map(|v| v.unwrap_or(i64::MIN)).collect())
}

/// Nanosecond values as an array of the timestamp type `data_type` (any unit).
pub fn time_array_from_nanos(mut nanos: Vec<i64>, data_type: &DataType) -> Result<ArrayRef> {
    if let DataType::Timestamp(unit, _) = data_type {
        let per = nanos_per_unit(*unit);
        if per != 1 {
            nanos.iter_mut().for_each(|v| *v = v.div_euclid(per));
        }
    }
    let data = Int64Array::from(nanos)
        .into_data()
        .into_builder()
        .data_type(data_type.clone())
        .build()?;
    Ok(make_array(data))
}
