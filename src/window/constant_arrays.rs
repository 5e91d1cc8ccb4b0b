//! Arrays that repeat one value, kept and handed out as slices. Every batch of a window
//! carries the same `window_start`, `window_end` and `window_time`, and `count(*)` counts a
//! literal: writing such a column out per batch costs a store per row, slicing a kept one
//! costs nothing per row.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::ColumnarValue;

/// How many values are kept unless said otherwise: a literal or two.
const KEPT: usize = 4;

/// Kept arrays of repeated values, the most recently made last.
#[derive(Debug, Clone)]
pub struct ConstantArrays {
    kept: Vec<(ScalarValue, ArrayRef)>,
    /// How many values are kept: an array no longer asked for is dropped soon, so that
    /// its memory is reused while it is still in the cache.
    room: usize,
    /// The longest array asked for: a new value's array is made this long, so that the
    /// batches of one window, whatever their sizes, slice one array.
    longest: usize,
}

impl Default for ConstantArrays {
    fn default() -> Self {
        Self::new(KEPT)
    }
}

impl ConstantArrays {
    /// Arrays for `room` values at a time (at least one).
    pub fn new(room: usize) -> Self {
        Self {
            kept: Vec::new(),
            room: room.max(1),
            longest: 0,
        }
    }

    /// An array of `len` copies of `value`.
    pub fn of(&mut self, value: &ScalarValue, len: usize) -> Result<ArrayRef> {
        if let Some((_, array)) = self
            .kept
            .iter()
            .find(|(kept, array)| array.len() >= len && kept == value)
        {
            return Ok(array.slice(0, len));
        }
        self.longest = self.longest.max(len);
        let array = value.to_array_of_size(self.longest)?;
        self.kept.retain(|(kept, _)| kept != value);
        if self.kept.len() == self.room {
            self.kept.remove(0);
        }
        self.kept.push((value.clone(), Arc::clone(&array)));
        Ok(array.slice(0, len))
    }

    /// `value` as an array of `len` rows.
    pub fn array(&mut self, value: ColumnarValue, len: usize) -> Result<ArrayRef> {
        match value {
            ColumnarValue::Array(array) => Ok(array),
            ColumnarValue::Scalar(scalar) => self.of(&scalar, len),
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;

    #[test]
    fn repeated_values_are_slices_of_one_kept_array() {
        let mut constants = ConstantArrays::default();
        let seven = ScalarValue::Int64(Some(7));
        let first = constants.of(&seven, 10).unwrap();
        let second = constants.of(&seven, 3).unwrap();
        assert_eq!(second.as_ref(), &Int64Array::from(vec![7; 3]) as &dyn Array);
        assert_eq!(first.len(), 10);
        assert!(
            first
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .all(|&v| v == 7)
        );
        let (first, second) = (first.to_data(), second.to_data());
        assert_eq!(first.buffers()[0].as_ptr(), second.buffers()[0].as_ptr());
    }

    #[test]
    fn a_longer_array_than_kept_is_made_anew_and_nulls_repeat_too() {
        let mut constants = ConstantArrays::default();
        constants.of(&ScalarValue::Int64(Some(1)), 5).unwrap();
        let long = constants.of(&ScalarValue::Int64(Some(1)), 50).unwrap();
        assert_eq!(long.len(), 50);
        assert_eq!(
            constants.kept.len(),
            1,
            "the longer array replaces the shorter"
        );
        let other = constants.of(&ScalarValue::Int64(Some(2)), 3).unwrap();
        assert_eq!(other.len(), 3);
        assert_eq!(
            constants.kept[1].1.len(),
            50,
            "made as long as the longest asked for"
        );
        let nulls = constants.of(&ScalarValue::Int64(None), 4).unwrap();
        assert_eq!(nulls.null_count(), 4);
        for value in 0..2 * KEPT as i64 {
            constants.of(&ScalarValue::Int64(Some(value)), 2).unwrap();
        }
        assert_eq!(constants.kept.len(), KEPT);
    }
}
