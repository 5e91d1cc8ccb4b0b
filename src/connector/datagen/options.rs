//! `WITH` options of the `datagen` connector.

use std::time::Duration;

use datafusion::common::ScalarValue;

use crate::error::Error;
use crate::sql::WithOptions;

/// How `datagen` generates events.
#[derive(Debug, Clone, PartialEq)]
pub struct DatagenOptions {
    /// Rows per second of wall-clock time; `None` generates as fast as possible.
    pub rows_per_second: Option<u64>,
    /// Total rows to generate; `None` generates forever (an unbounded source).
    pub count: Option<u64>,
    /// Number of distinct users.
    pub users: u64,
    /// Seed of the generator: the same seed gives the same rows.
    pub seed: u64,
    /// Rows' event times are moved back by up to this much, at random.
    pub out_of_order: Duration,
    /// Fraction of rows that repeat an earlier event (same `event_id`).
    pub duplicate_rate: f64,
    /// Fraction of rows whose event time is `late_by` in the past.
    pub late_rate: f64,
    /// How far back late rows are.
    pub late_by: Duration,
    /// Event time of the first row, in nanoseconds since the epoch.
    pub start_nanos: i64,
    /// Event time between consecutive rows.
    pub step: Duration,
    /// Rows per batch.
    pub batch_size: usize,
}

impl DatagenOptions {
    /// Consumes the `datagen` options.
    pub fn parse(options: &mut WithOptions) -> Result<Self, Error> {
        let rate = |key: &str, options: &mut WithOptions| -> Result<f64, Error> {
            let value = options.parse::<f64>(key)?.unwrap_or(0.0);
            if !(0.0..=1.0).contains(&value) {
                return Err(options.error(format!(
                    "option '{key}' has a bad value '{value}': expected a fraction between 0 and 1"
                )));
            }
            Ok(value)
        };
        let rows_per_second = options.parse::<u64>("rows_per_second")?.filter(|&r| r > 0);
        let count = options.parse::<u64>("count")?;
        let users = options.parse::<u64>("users")?.unwrap_or(1000);
        if users == 0 {
            return Err(options.error("option 'users' has a bad value '0': expected at least 1"));
        }
        let seed = options.parse::<u64>("seed")?.unwrap_or(42);
        let out_of_order = options.duration("out_of_order")?.unwrap_or_default();
        let duplicate_rate = rate("duplicate_rate", options)?;
        let late_rate = rate("late_rate", options)?;
        let late_by = options
            .duration("late_by")?
            .unwrap_or(Duration::from_secs(600));
        let start_nanos = match options.take("start") {
            None => 1_767_225_600_000_000_000, // 2026-01-01T00:00:00Z
            Some(text) => parse_timestamp(&text).ok_or_else(|| {
                options.error(format!(
                    "option 'start' has a bad value '{text}': expected a timestamp like 2026-01-01T00:00:00Z"
                ))
            })?,
        };
        let step = options
            .duration("step")?
            .unwrap_or(Duration::from_millis(1));
        let batch_size = options.parse::<usize>("batch_size")?.unwrap_or(8192).max(1);
        Ok(Self {
            rows_per_second,
            count,
            users,
            seed,
            out_of_order,
            duplicate_rate,
            late_rate,
            late_by,
            start_nanos,
            step,
            batch_size,
        })
    }
}

fn parse_timestamp(text: &str) -> Option<i64> {
    let value = ScalarValue::Utf8(Some(text.to_string()));
    match value.cast_to(&datafusion::arrow::datatypes::DataType::Timestamp(
        datafusion::arrow::datatypes::TimeUnit::Nanosecond,
        None,
    )) {
        Ok(ScalarValue::TimestampNanosecond(Some(nanos), _)) => Some(nanos),
        _ => None,
    }
}
