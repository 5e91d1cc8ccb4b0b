//! Arrow columns as PostgreSQL arrays for `unnest`, and PostgreSQL text back into Arrow.
//! Integers are `BIGINT`, floats `DOUBLE PRECISION`, booleans `BOOLEAN`, strings `TEXT`,
//! binaries `BYTEA`; timestamps, dates and decimals travel as ISO text cast in SQL; lists,
//! structs and maps are `JSONB`.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use datafusion::common::Result;
use tokio_postgres::types::ToSql;

use crate::format::json_texts;

/// Casts that fail on overflow rather than turning values into NULLs.
const STRICT: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: datafusion::arrow::util::display::FormatOptions::new(),
};

/// The PostgreSQL column type for an Arrow type.
pub fn column_type(data_type: &DataType) -> &'static str {
    use DataType::*;
    match data_type {
        Boolean => "BOOLEAN",
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => "BIGINT",
        Float16 | Float32 | Float64 => "DOUBLE PRECISION",
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => "BYTEA",
        Timestamp(_, None) => "TIMESTAMP",
        Timestamp(_, Some(_)) => "TIMESTAMPTZ",
        Date32 | Date64 => "DATE",
        Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => "NUMERIC",
        List(_) | LargeList(_) | ListView(_) | LargeListView(_) | FixedSizeList(..) | Struct(_)
        | Map(..) => "JSONB",
        _ => "TEXT",
    }
}

/// The array type a column's values are bound as, for `unnest($n::…)`.
pub fn array_type(data_type: &DataType) -> &'static str {
    match column_type(data_type) {
        "BOOLEAN" => "boolean[]",
        "BIGINT" => "bigint[]",
        "DOUBLE PRECISION" => "float8[]",
        "BYTEA" => "bytea[]",
        _ => "text[]",
    }
}

/// How a column's text reads back: PostgreSQL's own rendering does not always parse as
/// Arrow's, so timestamps are formatted as ISO-8601 in SQL and binaries as hex.
pub fn select_as_text(column: &str, data_type: &DataType) -> String {
    match data_type {
        DataType::Timestamp(_, None) => {
            format!("to_char({column}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')")
        }
        DataType::Timestamp(_, Some(_)) => {
            format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        }
        _ if column_type(data_type) == "BYTEA" => format!("encode({column}, 'hex')"),
        _ => format!("{column}::text"),
    }
}

/// One column's values, ready to bind as an array parameter.
pub enum BoundColumn {
    Bool(Vec<Option<bool>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bytes(Vec<Option<Vec<u8>>>),
    Text(Vec<Option<String>>),
}

impl BoundColumn {
    /// The values of `array` at `rows`.
    pub fn try_new(array: &ArrayRef, rows: &[usize]) -> Result<Self> {
        let data_type = array.data_type();
        Ok(match array_type(data_type) {
            "boolean[]" => {
                let values = array.as_boolean();
                Self::Bool(
                    rows.iter()
                        .map(|&r| values.is_valid(r).then(|| values.value(r)))
                        .collect(),
                )
            }
            "bigint[]" => {
                let cast = cast_with_options(array, &DataType::Int64, &STRICT)?;
                let values = cast.as_primitive::<Int64Type>();
                Self::Int(
                    rows.iter()
                        .map(|&r| values.is_valid(r).then(|| values.value(r)))
                        .collect(),
                )
            }
            "float8[]" => {
                let cast = cast_with_options(array, &DataType::Float64, &STRICT)?;
                let values = cast.as_primitive::<Float64Type>();
                Self::Float(
                    rows.iter()
                        .map(|&r| values.is_valid(r).then(|| values.value(r)))
                        .collect(),
                )
            }
            "bytea[]" => {
                let cast = cast_with_options(array, &DataType::Binary, &STRICT)?;
                let values = cast.as_binary::<i32>();
                Self::Bytes(
                    rows.iter()
                        .map(|&r| values.is_valid(r).then(|| values.value(r).to_vec()))
                        .collect(),
                )
            }
            _ => {
                let texts = match column_type(data_type) {
                    "JSONB" => json_texts(array)?,
                    _ => {
                        let target = match data_type {
                            // PostgreSQL keeps microseconds.
                            DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
                                let micros = DataType::Timestamp(TimeUnit::Microsecond, tz.clone());
                                cast_with_options(array, &micros, &STRICT)?
                            }
                            _ => array.clone(),
                        };
                        cast_with_options(&target, &DataType::Utf8, &STRICT)?
                            .as_string::<i32>()
                            .clone()
                    }
                };
                Self::Text(
                    rows.iter()
                        .map(|&r| texts.is_valid(r).then(|| texts.value(r).to_string()))
                        .collect(),
                )
            }
        })
    }

    /// The values as a statement parameter.
    pub fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Self::Bool(v) => v,
            Self::Int(v) => v,
            Self::Float(v) => v,
            Self::Bytes(v) => v,
            Self::Text(v) => v,
        }
    }
}

/// Every column of `batch` at `rows`.
pub fn bind_columns(batch: &RecordBatch, rows: &[usize]) -> Result<Vec<BoundColumn>> {
    batch
        .columns()
        .iter()
        .map(|c| BoundColumn::try_new(c, rows))
        .collect()
}
