//! The shape shared by the text-to-text normalizers: one string in, one string (or NULL)
//! out, applied row by row over any string array.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};

use crate::arguments::{answer, argument_array};
use datafusion::logical_expr::ColumnarValue;

/// Applies `normalize` to every string of the single argument; NULL in, NULL out.
pub fn map_strings(
    args: &[ColumnarValue],
    rows: usize,
    mut normalize: impl FnMut(&str, &mut String) -> bool,
) -> Result<ColumnarValue> {
    let (array, scalar) = argument_array(&args[0], rows)?;
    let strings = cast(&array, &DataType::Utf8)?;
    let strings = strings.as_string::<i32>();
    let mut out = StringBuilder::with_capacity(strings.len(), strings.values().len());
    let mut buffer = String::new();
    for text in strings.iter() {
        buffer.clear();
        match text {
            Some(text) if normalize(text, &mut buffer) => out.append_value(&buffer),
            _ => out.append_null(),
        }
    }
    let out: ArrayRef = Arc::new(out.finish());
    answer(out, scalar)
}

/// The one string argument of a normalizer, as Utf8.
pub fn coerce_one_string(function: &str, arg_types: &[DataType]) -> Result<Vec<DataType>> {
    match arg_types {
        [DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null] => {
            Ok(vec![DataType::Utf8])
        }
        [other] => plan_err!("{function} takes a string, not {other}"),
        _ => plan_err!(
            "{function} takes one string argument, not {}",
            arg_types.len()
        ),
    }
}
