//! Reading a function's arguments: constants given at planning time (a model file, a rule
//! file, a half-life) and the evaluated columns at run time.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;

/// The string constant a function was given as argument `index`, at planning time.
pub fn constant_string<'a>(
    function: &str,
    what: &str,
    scalars: &[Option<&'a ScalarValue>],
    index: usize,
) -> Result<&'a str> {
    match scalars.get(index).copied().flatten() {
        Some(value) => match string_of(value) {
            Some(Some(text)) => Ok(text),
            Some(None) => plan_err!("{function}: the {what} is NULL"),
            None => plan_err!(
                "{function}: the {what} must be a string, not {}",
                value.data_type()
            ),
        },
        None => plan_err!("{function}: the {what} must be a constant string"),
    }
}

/// The string in a scalar, if it is one: `Some(None)` for a NULL string.
pub fn string_of(value: &ScalarValue) -> Option<Option<&str>> {
    match value {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
            Some(s.as_deref())
        }
        _ => None,
    }
}

/// The string constant argument `index` evaluates to, at run time.
pub fn scalar_string<'a>(
    function: &str,
    args: &'a [ColumnarValue],
    index: usize,
) -> Result<&'a str> {
    match args.get(index) {
        Some(ColumnarValue::Scalar(value)) => match string_of(value) {
            Some(Some(text)) => Ok(text),
            _ => exec_err!(
                "{function}: argument {} must be a constant string",
                index + 1
            ),
        },
        _ => exec_err!(
            "{function}: argument {} must be a constant string",
            index + 1
        ),
    }
}

/// The constant a physical aggregate argument holds, as given in SQL.
pub fn literal_of<'a>(
    function: &str,
    what: &str,
    expr: &'a Arc<dyn PhysicalExpr>,
) -> Result<&'a ScalarValue> {
    match expr.downcast_ref::<Literal>() {
        Some(literal) => Ok(literal.value()),
        None => plan_err!("{function}: the {what} must be a constant"),
    }
}

/// An argument as a Float64 array of `rows` rows (casting integers and decimals).
pub fn float64_column(value: &ColumnarValue, rows: usize) -> Result<Arc<Float64Array>> {
    let array: ArrayRef = value.to_array(rows)?;
    let array = if array.data_type() == &DataType::Float64 {
        array
    } else {
        cast(&array, &DataType::Float64)?
    };
    Ok(Arc::new(array.as_primitive().clone()))
}

/// True for the numeric types a feature may have.
pub fn is_numeric(data_type: &DataType) -> bool {
    data_type.is_numeric() || matches!(data_type, DataType::Boolean | DataType::Null)
}

/// Float64 for every numeric argument type, or a planning error naming the argument.
pub fn coerce_features(
    function: &str,
    arg_types: &[DataType],
    first: usize,
) -> Result<Vec<DataType>> {
    let mut coerced = arg_types.to_vec();
    for (i, data_type) in arg_types.iter().enumerate().skip(first) {
        if !is_numeric(data_type) {
            return plan_err!(
                "{function}: feature {} must be numeric, not {data_type}",
                i - first + 1
            );
        }
        coerced[i] = DataType::Float64;
    }
    Ok(coerced)
}

/// The number of rows to answer: the length of the first array argument, or `rows` when
/// every argument is a scalar.
pub fn array_len(args: &[ColumnarValue], rows: usize) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(array) => Some(array.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(rows)
}

/// An argument as an array, and whether it was a scalar: a scalar is read as one row, and
/// the answer for it is given back as a scalar by [`answer`].
pub fn argument_array(value: &ColumnarValue, rows: usize) -> Result<(ArrayRef, bool)> {
    match value {
        ColumnarValue::Scalar(scalar) => Ok((scalar.to_array_of_size(1)?, true)),
        ColumnarValue::Array(array) => {
            debug_assert_eq!(array.len(), rows);
            Ok((Arc::clone(array), false))
        }
    }
}

/// The answer for an argument [`argument_array`] read: a scalar for a scalar.
pub fn answer(out: ArrayRef, scalar: bool) -> Result<ColumnarValue> {
    if scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
    } else {
        Ok(ColumnarValue::Array(out))
    }
}
