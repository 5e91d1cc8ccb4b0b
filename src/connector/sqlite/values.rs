//! Arrow columns as SQLite values and back. Integers and booleans are `INTEGER`, floats
//! `REAL`, binaries `BLOB`; strings, timestamps, dates and decimals are `TEXT` (timestamps as
//! ISO-8601, so `sqlite3` shows them readably and SQLite's date functions work on them);
//! lists, structs and maps are JSON `TEXT`.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, Float64Array, Float64Builder, Int64Array,
    Int64Builder, StringArray, StringBuilder,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_datafusion_err};
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::format::{from_json_texts, json_texts};

/// How a column is stored in SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageClass {
    Integer,
    Real,
    Text,
    Blob,
    /// Nested values as JSON text.
    Json,
}

impl StorageClass {
    /// The storage class of an Arrow type.
    pub fn of(data_type: &DataType) -> Self {
        use DataType::*;
        match data_type {
            Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => {
                Self::Integer
            }
            Float16 | Float32 | Float64 => Self::Real,
            Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => Self::Blob,
            List(_) | LargeList(_) | ListView(_) | LargeListView(_) | FixedSizeList(..)
            | Struct(_) | Map(..) => Self::Json,
            _ => Self::Text,
        }
    }

    /// The column type in `CREATE TABLE`.
    pub fn sql_type(self) -> &'static str {
        match self {
            Self::Integer => "INTEGER",
            Self::Real => "REAL",
            Self::Text | Self::Json => "TEXT",
            Self::Blob => "BLOB",
        }
    }
}

/// One Arrow column converted once per batch into what SQLite binds.
pub enum SqlColumn {
    Integer(Int64Array),
    Real(Float64Array),
    Text(StringArray),
    Blob(BinaryArray),
}

/// Casts that fail on overflow rather than turning values into NULLs.
const STRICT: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: datafusion::arrow::util::display::FormatOptions::new(),
};

impl SqlColumn {
    /// `array` in its storage class.
    pub fn try_new(array: &ArrayRef) -> Result<Self> {
        let cast = |to: &DataType| cast_with_options(array, to, &STRICT);
        Ok(match StorageClass::of(array.data_type()) {
            StorageClass::Integer => Self::Integer(cast(&DataType::Int64)?.as_primitive().clone()),
            StorageClass::Real => Self::Real(cast(&DataType::Float64)?.as_primitive().clone()),
            StorageClass::Text => Self::Text(cast(&DataType::Utf8)?.as_string::<i32>().clone()),
            StorageClass::Blob => Self::Blob(cast(&DataType::Binary)?.as_binary::<i32>().clone()),
            StorageClass::Json => Self::Text(json_texts(array)?),
        })
    }

    /// The value of `row`, borrowed for binding.
    pub fn value(&self, row: usize) -> ToSqlOutput<'_> {
        let value = match self {
            Self::Integer(a) if a.is_valid(row) => ValueRef::Integer(a.value(row)),
            Self::Real(a) if a.is_valid(row) => ValueRef::Real(a.value(row)),
            Self::Text(a) if a.is_valid(row) => ValueRef::Text(a.value(row).as_bytes()),
            Self::Blob(a) if a.is_valid(row) => ValueRef::Blob(a.value(row)),
            _ => ValueRef::Null,
        };
        ToSqlOutput::Borrowed(value)
    }
}

/// Builds one Arrow column from the SQLite values of a result set.
pub enum ColumnBuilder {
    Integer(Int64Builder),
    Real(Float64Builder),
    Text(StringBuilder),
    Blob(BinaryBuilder),
}

impl ColumnBuilder {
    /// A builder for a column of `data_type`.
    pub fn new(data_type: &DataType) -> Self {
        match StorageClass::of(data_type) {
            StorageClass::Integer => Self::Integer(Int64Builder::new()),
            StorageClass::Real => Self::Real(Float64Builder::new()),
            StorageClass::Text | StorageClass::Json => Self::Text(StringBuilder::new()),
            StorageClass::Blob => Self::Blob(BinaryBuilder::new()),
        }
    }

    /// Appends one stored value; a value of another storage class than the column's is an
    /// error naming the column.
    pub fn append(&mut self, value: ValueRef<'_>, column: &str) -> Result<()> {
        let expected = self.expected();
        let mismatch = |value: &ValueRef<'_>| {
            exec_datafusion_err!(
                "column {column} holds a {} value where {expected} was expected",
                value.data_type()
            )
        };
        match (&mut *self, value) {
            (Self::Integer(b), ValueRef::Null) => b.append_null(),
            (Self::Real(b), ValueRef::Null) => b.append_null(),
            (Self::Text(b), ValueRef::Null) => b.append_null(),
            (Self::Blob(b), ValueRef::Null) => b.append_null(),
            (Self::Integer(b), ValueRef::Integer(v)) => b.append_value(v),
            (Self::Real(b), ValueRef::Real(v)) => b.append_value(v),
            (Self::Real(b), ValueRef::Integer(v)) => b.append_value(v as f64),
            (Self::Text(b), ValueRef::Text(v)) => b.append_value(
                std::str::from_utf8(v).map_err(|e| exec_datafusion_err!("column {column}: {e}"))?,
            ),
            (Self::Blob(b), ValueRef::Blob(v)) => b.append_value(v),
            (_, other) => return Err(mismatch(&other)),
        }
        Ok(())
    }

    fn expected(&self) -> &'static str {
        match self {
            Self::Integer(_) => "INTEGER",
            Self::Real(_) => "REAL",
            Self::Text(_) => "TEXT",
            Self::Blob(_) => "BLOB",
        }
    }

    /// The finished column as `data_type`.
    pub fn finish(self, data_type: &DataType) -> Result<ArrayRef> {
        let stored: ArrayRef = match self {
            Self::Integer(mut b) => Arc::new(b.finish()),
            Self::Real(mut b) => Arc::new(b.finish()),
            Self::Text(mut b) => Arc::new(b.finish()),
            Self::Blob(mut b) => Arc::new(b.finish()),
        };
        if StorageClass::of(data_type) == StorageClass::Json {
            return from_json_texts(stored.as_string::<i32>(), data_type);
        }
        Ok(cast_with_options(&stored, data_type, &STRICT)?)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ListArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{Int32Type, TimeUnit};

    use super::*;

    fn round_trip(array: ArrayRef) -> ArrayRef {
        let column = SqlColumn::try_new(&array).unwrap();
        let mut builder = ColumnBuilder::new(array.data_type());
        for row in 0..array.len() {
            let ToSqlOutput::Borrowed(value) = column.value(row) else {
                panic!("values are borrowed");
            };
            builder.append(value, "c").unwrap();
        }
        builder.finish(array.data_type()).unwrap()
    }

    #[test]
    fn timestamps_are_iso_text_and_come_back() {
        let array: ArrayRef = Arc::new(
            TimestampMillisecondArray::from(vec![Some(1_700_000_000_123), None])
                .with_timezone_opt(None::<String>),
        );
        let SqlColumn::Text(text) = SqlColumn::try_new(&array).unwrap() else {
            panic!("timestamps are text");
        };
        assert_eq!(text.value(0), "2023-11-14T22:13:20.123");
        assert_eq!(&round_trip(Arc::clone(&array)), &array);
        assert_eq!(
            StorageClass::of(&DataType::Timestamp(TimeUnit::Nanosecond, None)),
            StorageClass::Text
        );
    }

    #[test]
    fn lists_are_json_and_come_back() {
        let array: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None, Some(3)]),
            None,
            Some(vec![]),
        ]));
        let SqlColumn::Text(text) = SqlColumn::try_new(&array).unwrap() else {
            panic!("lists are JSON text");
        };
        assert_eq!(text.value(0), "[1,null,3]");
        assert!(text.is_null(1));
        assert_eq!(&round_trip(Arc::clone(&array)), &array);
    }

    #[test]
    fn integers_and_floats_keep_their_values() {
        let ints: ArrayRef = Arc::new(datafusion::arrow::array::UInt32Array::from(vec![
            Some(7),
            None,
            Some(u32::MAX),
        ]));
        assert_eq!(&round_trip(Arc::clone(&ints)), &ints);
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![Some(0.5), None]));
        assert_eq!(&round_trip(Arc::clone(&floats)), &floats);
    }
}
