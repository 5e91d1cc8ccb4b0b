//! `to_epoch_millis(x [, unit])` and `to_epoch_millis_strict`: one integer time for the
//! many ways events carry one — Arrow timestamps and dates, ISO-8601 / RFC 3339 / RFC 2822
//! text, and epoch numbers in seconds, milliseconds, microseconds or nanoseconds.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, Int64Builder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::civil_time::parse_epoch_millis;
use crate::arguments::{answer, argument_array, scalar_string};
use crate::docs::NORMALIZATION;

/// What a bare number counts since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EpochUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl EpochUnit {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" | "seconds" => Self::Seconds,
            "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => Self::Millis,
            "us" | "micro" | "micros" | "microsecond" | "microseconds" => Self::Micros,
            "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => Self::Nanos,
            _ => return None,
        })
    }

    /// The unit an epoch number most likely has, by its magnitude: below 1e11 seconds (up
    /// to the year 5138), below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds.
    fn by_magnitude(value: f64) -> Self {
        match value.abs() {
            v if v < 1e11 => Self::Seconds,
            v if v < 1e14 => Self::Millis,
            v if v < 1e17 => Self::Micros,
            _ => Self::Nanos,
        }
    }

    fn millis_per_unit(self) -> f64 {
        match self {
            Self::Seconds => 1e3,
            Self::Millis => 1.0,
            Self::Micros => 1e-3,
            Self::Nanos => 1e-6,
        }
    }

    fn to_millis_i64(self, value: i64) -> i64 {
        match self {
            Self::Seconds => value.saturating_mul(1000),
            Self::Millis => value,
            Self::Micros => value.div_euclid(1000),
            Self::Nanos => value.div_euclid(1_000_000),
        }
    }

    fn to_millis_f64(self, value: f64) -> Option<i64> {
        let millis = (value * self.millis_per_unit()).floor();
        (millis.is_finite() && millis.abs() < 9.2e18).then_some(millis as i64)
    }
}

/// `to_epoch_millis` (NULL for text that is not a time) or, strict, `to_epoch_millis_strict`
/// (an error naming the value).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToEpochMillis {
    strict: bool,
    signature: Signature,
}

impl ToEpochMillis {
    /// The lenient function: text that is not a time gives NULL.
    pub fn lenient() -> Self {
        Self {
            strict: false,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// The strict function: text that is not a time is an error.
    pub fn strict() -> Self {
        Self {
            strict: true,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn unit(&self, args: &[ColumnarValue]) -> Result<Option<EpochUnit>> {
        if args.len() < 2 {
            return Ok(None);
        }
        let text = scalar_string(self.name(), args, 1)?;
        match EpochUnit::parse(text) {
            Some(unit) => Ok(Some(unit)),
            None => exec_err!(
                "{}: unknown unit '{text}' (expected s, ms, us or ns)",
                self.name()
            ),
        }
    }

    fn parse_text(&self, array: &ArrayRef, unit: Option<EpochUnit>) -> Result<Int64Array> {
        let strings = cast(array, &DataType::Utf8)?;
        let strings = strings.as_string::<i32>();
        let mut out = Int64Builder::with_capacity(strings.len());
        for (row, text) in strings.iter().enumerate() {
            let Some(text) = text else {
                out.append_null();
                continue;
            };
            let millis = parse_epoch_millis(text).or_else(|| {
                let number: f64 = text.trim().parse().ok()?;
                unit.unwrap_or(EpochUnit::by_magnitude(number))
                    .to_millis_f64(number)
            });
            match millis {
                Some(millis) => out.append_value(millis),
                None if self.strict => {
                    return exec_err!("{}: '{text}' (row {}) is not a time", self.name(), row + 1);
                }
                None => out.append_null(),
            }
        }
        Ok(out.finish())
    }
}

impl ScalarUDFImpl for ToEpochMillis {
    fn name(&self) -> &str {
        if self.strict {
            "to_epoch_millis_strict"
        } else {
            "to_epoch_millis"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let (value, unit) = match arg_types {
            [value] => (value, None),
            [value, unit] => (value, Some(unit)),
            _ => return plan_err!("{} takes a time and, optionally, a unit", self.name()),
        };
        let value = match value {
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => value.clone(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
            DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..) => DataType::Float64,
            DataType::Null => DataType::Utf8,
            t if t.is_integer() => DataType::Int64,
            other => {
                return plan_err!(
                    "{}: cannot read a time from {other} (expected a timestamp, a date, text or an epoch number)",
                    self.name()
                );
            }
        };
        let mut coerced = vec![value];
        if let Some(unit) = unit {
            if !matches!(
                unit,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) {
                return plan_err!(
                    "{}: the unit must be a string such as 'ms', not {unit}",
                    self.name()
                );
            }
            coerced.push(DataType::Utf8);
        }
        Ok(coerced)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let unit = self.unit(&args.args)?;
        let (array, scalar) = argument_array(&args.args[0], args.number_rows)?;
        let millis: Int64Array = match array.data_type() {
            DataType::Utf8 => self.parse_text(&array, unit)?,
            DataType::Int64 => {
                let values = array.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                values.unary(|v| {
                    unit.unwrap_or(EpochUnit::by_magnitude(v as f64))
                        .to_millis_i64(v)
                })
            }
            DataType::Float64 => {
                let values = array.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
                let out: Int64Array = values
                    .iter()
                    .map(|v| {
                        v.and_then(|v| unit.unwrap_or(EpochUnit::by_magnitude(v)).to_millis_f64(v))
                    })
                    .collect();
                out
            }
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
                let as_millis = cast(&array, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
                let as_millis = cast(&as_millis, &DataType::Int64)?;
                as_millis.as_primitive().clone()
            }
            other => return exec_err!("{}: unexpected argument type {other}", self.name()),
        };
        let millis: ArrayRef = Arc::new(millis);
        answer(millis, scalar)
    }

    fn documentation(&self) -> Option<&Documentation> {
        if self.strict {
            Some(&STRICT_DOC)
        } else {
            Some(&LENIENT_DOC)
        }
    }
}

static LENIENT_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        NORMALIZATION,
        "Milliseconds since the Unix epoch of a timestamp, a date, a time written as text \
         (ISO-8601, RFC 3339 or RFC 2822; without an offset it is UTC) or an epoch number. \
         The unit of a number is told by the second argument or, without one, detected by \
         its magnitude: below 1e11 seconds, below 1e14 milliseconds, below 1e17 microseconds, \
         else nanoseconds. Text that is not a time gives NULL.",
        "to_epoch_millis(expression[, unit])",
    )
    .with_sql_example(
        "```sql\n> SELECT to_epoch_millis('2024-05-01T12:00:00.250+02:00'), to_epoch_millis(1714557600);\n\
         +------------------------------------------+----------------------------------+\n\
         | to_epoch_millis(Utf8(\"2024-05-01T12...\")) | to_epoch_millis(Int64(1714557600)) |\n\
         +------------------------------------------+----------------------------------+\n\
         | 1714557600250                            | 1714557600000                    |\n\
         +------------------------------------------+----------------------------------+\n```",
    )
    .with_argument("expression", "A timestamp, a date, text or an epoch number.")
    .with_argument("unit", "Optional: what an epoch number counts, 's', 'ms', 'us' or 'ns'.")
    .with_related_udf("to_epoch_millis_strict")
    .build()
});

static STRICT_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        NORMALIZATION,
        "Like to_epoch_millis, but text that is not a time is an error that names the value \
         and its row, for pipelines that must not let a bad time through as NULL.",
        "to_epoch_millis_strict(expression[, unit])",
    )
    .with_sql_example(
        "```sql\n> SELECT to_epoch_millis_strict('yesterday');\n\
         Execution error: to_epoch_millis_strict: 'yesterday' (row 1) is not a time\n```",
    )
    .with_argument(
        "expression",
        "A timestamp, a date, text or an epoch number.",
    )
    .with_argument(
        "unit",
        "Optional: what an epoch number counts, 's', 'ms', 'us' or 'ns'.",
    )
    .with_related_udf("to_epoch_millis")
    .build()
});
