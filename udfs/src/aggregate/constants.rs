//! The constant arguments of the behavioural aggregates (a half-life, a gap, a count) and
//! their event-time argument, read as epoch milliseconds whatever the timestamp's unit.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::physical_expr::PhysicalExpr;

use crate::arguments::literal_of;

/// A positive duration given as an INTERVAL constant (`INTERVAL '30' MINUTE`), in
/// milliseconds. Months are refused: they have no fixed length.
pub fn duration_millis(function: &str, what: &str, expr: &Arc<dyn PhysicalExpr>) -> Result<i64> {
    let millis = match literal_of(function, what, expr)? {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            v.days as i64 * 86_400_000 + v.nanoseconds / 1_000_000
        }
        ScalarValue::IntervalDayTime(Some(v)) => v.days as i64 * 86_400_000 + v.milliseconds as i64,
        ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)) => {
            return plan_err!(
                "{function}: the {what} must not count months or years, which have no fixed length"
            );
        }
        other => {
            return plan_err!(
                "{function}: the {what} must be an INTERVAL such as INTERVAL '1' HOUR, not {other}"
            );
        }
    };
    if millis <= 0 {
        return plan_err!("{function}: the {what} must be positive");
    }
    Ok(millis)
}

/// The type an interval argument is coerced to, or a planning error.
pub fn coerce_interval(function: &str, what: &str, data_type: &DataType) -> Result<DataType> {
    match data_type {
        DataType::Interval(_) => Ok(data_type.clone()),
        other => plan_err!(
            "{function}: the {what} must be an INTERVAL such as INTERVAL '1' HOUR, not {other}"
        ),
    }
}

/// The type an event-time argument is coerced to: a timestamp in milliseconds (keeping its
/// time zone), or an integer of epoch milliseconds.
pub fn coerce_event_time(function: &str, data_type: &DataType) -> Result<DataType> {
    match data_type {
        DataType::Timestamp(_, tz) => Ok(DataType::Timestamp(TimeUnit::Millisecond, tz.clone())),
        DataType::Date32 | DataType::Date64 => Ok(DataType::Timestamp(TimeUnit::Millisecond, None)),
        t if t.is_integer() => Ok(DataType::Int64),
        other => {
            plan_err!("{function}: the time must be a timestamp or epoch milliseconds, not {other}")
        }
    }
}

/// An event-time column as epoch milliseconds.
pub fn event_millis(array: &ArrayRef) -> Result<Int64Array> {
    let millis = match array.data_type() {
        DataType::Int64 => Arc::clone(array),
        DataType::Timestamp(TimeUnit::Millisecond, _) => cast(array, &DataType::Int64)?,
        _ => cast(
            &cast(array, &DataType::Timestamp(TimeUnit::Millisecond, None))?,
            &DataType::Int64,
        )?,
    };
    Ok(millis.as_primitive().clone())
}

/// A positive integer constant, at most `max`.
pub fn positive_count(
    function: &str,
    what: &str,
    expr: &Arc<dyn PhysicalExpr>,
    max: usize,
) -> Result<usize> {
    let value = literal_of(function, what, expr)?;
    let count = match value {
        ScalarValue::Int8(Some(v)) => *v as i64,
        ScalarValue::Int16(Some(v)) => *v as i64,
        ScalarValue::Int32(Some(v)) => *v as i64,
        ScalarValue::Int64(Some(v)) => *v,
        ScalarValue::UInt8(Some(v)) => *v as i64,
        ScalarValue::UInt16(Some(v)) => *v as i64,
        ScalarValue::UInt32(Some(v)) => *v as i64,
        ScalarValue::UInt64(Some(v)) => (*v).min(i64::MAX as u64) as i64,
        other => {
            return plan_err!("{function}: the {what} must be an integer constant, not {other}");
        }
    };
    if count < 1 || count as u64 > max as u64 {
        return plan_err!("{function}: the {what} must be between 1 and {max}, not {count}");
    }
    Ok(count as usize)
}

/// True when row `row` passes the aggregate's FILTER clause (or there is none).
pub fn passes(filter: Option<&datafusion::arrow::array::BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}
