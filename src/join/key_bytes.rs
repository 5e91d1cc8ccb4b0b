//! [`KeyBytes`]: the join key of each row of a batch as bytes that compare equal exactly
//! when the keys are equal, for the join's key index. A key of one string, binary or
//! fixed-width column is its values' own bytes (short enough, for the usual ids, to be
//! kept inline by the index); several columns, and floats (whose equal values can differ
//! in bits), go through Arrow's row format.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::buffer::Buffer;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::Result;

/// How a join's keys become bytes.
#[derive(Debug)]
pub enum KeyEncoding {
    /// One column, whose values' bytes are the key.
    Column,
    /// Several columns (or one of another type), in Arrow's row format.
    Rows(RowConverter),
}

impl KeyEncoding {
    /// The encoding of keys of `types`, the same on both sides of a join.
    pub fn new(types: &[DataType]) -> Result<Self> {
        match types {
            [data_type] if is_own_bytes(data_type) => Ok(Self::Column),
            _ => Ok(Self::Rows(RowConverter::new(
                types.iter().map(|t| SortField::new(t.clone())).collect(),
            )?)),
        }
    }

    /// The keys of the rows whose key columns are `columns`.
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<KeyBytes> {
        Ok(match (self, columns) {
            (Self::Column, [column]) => KeyBytes::column(column),
            (Self::Rows(converter), _) => KeyBytes::Rows(converter.convert_columns(columns)?),
            (Self::Column, _) => {
                return datafusion::common::internal_err!("a one-column key of several columns");
            }
        })
    }
}

fn is_own_bytes(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary
    ) || (data_type.primitive_width().is_some() && !data_type.is_floating())
}

/// The keys of a batch's rows, as bytes.
pub enum KeyBytes {
    Utf8(ArrayRef),
    LargeUtf8(ArrayRef),
    Utf8View(ArrayRef),
    Binary(ArrayRef),
    /// A fixed-width column: its values buffer, the value width and the array's offset.
    Fixed(Buffer, usize, usize),
    Rows(Rows),
}

impl KeyBytes {
    fn column(column: &ArrayRef) -> Self {
        match column.data_type() {
            DataType::Utf8 => Self::Utf8(column.clone()),
            DataType::LargeUtf8 => Self::LargeUtf8(column.clone()),
            DataType::Utf8View => Self::Utf8View(column.clone()),
            DataType::Binary => Self::Binary(column.clone()),
            other => {
                let data = column.to_data();
                let width = other.primitive_width().unwrap_or(0);
                Self::Fixed(data.buffers()[0].clone(), width, data.offset())
            }
        }
    }

    /// The key of row `row`.
    #[inline]
    pub fn row(&self, row: usize) -> &[u8] {
        match self {
            Self::Utf8(array) => array.as_string::<i32>().value(row).as_bytes(),
            Self::LargeUtf8(array) => array.as_string::<i64>().value(row).as_bytes(),
            Self::Utf8View(array) => array.as_string_view().value(row).as_bytes(),
            Self::Binary(array) => array.as_binary::<i32>().value(row),
            Self::Fixed(values, width, offset) => {
                let at = (offset + row) * width;
                &values.as_slice()[at..at + width]
            }
            Self::Rows(rows) => rows.row(row).data(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn one_column_keys_are_their_own_bytes() {
        let encoding = KeyEncoding::new(&[DataType::Utf8]).unwrap();
        let column: ArrayRef = Arc::new(StringArray::from(vec!["u1", "u22"]));
        let keys = encoding.encode(&[column]).unwrap();
        assert_eq!(keys.row(1), b"u22");
        let encoding = KeyEncoding::new(&[DataType::Int64]).unwrap();
        let column: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]).slice(1, 2));
        let keys = encoding.encode(&[column]).unwrap();
        assert_eq!(keys.row(1), 3i64.to_le_bytes());
    }

    #[test]
    fn several_columns_are_rows() {
        let encoding = KeyEncoding::new(&[DataType::Utf8, DataType::Utf8]).unwrap();
        let a: ArrayRef = Arc::new(StringArray::from(vec!["a\u{1f}b", "a"]));
        let b: ArrayRef = Arc::new(StringArray::from(vec!["c", "b\u{1f}c"]));
        let keys = encoding.encode(&[a, b]).unwrap();
        assert_ne!(keys.row(0), keys.row(1));
    }
}
