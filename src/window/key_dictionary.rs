//! Group keys of any types interned into dense 32-bit ids, and back. A single string key is
//! stored as its own bytes; any other key as its Arrow row encoding. As [`GroupValues`] it
//! holds the keys of one window compactly (window state is mostly keys: one group per user
//! per open window); shared by the open windows of a `HOP`, it lets each row be hashed once
//! however many windows it lands in.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::row::{RowConverter, RowParser, SortField};
use datafusion::common::{Result, internal_err};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::GroupValues;

use crate::stream::ByteKeys;

/// How keys become bytes.
enum Encoding {
    /// One `Utf8` column: a key is its string; a null key gets a detached id.
    Utf8 { null_id: Option<u32> },
    /// Anything else: a key is its row in Arrow's row format.
    Rows {
        converter: RowConverter,
        parser: RowParser,
    },
}

/// Interns keys of one schema into ids.
pub struct KeyDictionary {
    encoding: Encoding,
    keys: ByteKeys,
}

impl KeyDictionary {
    /// A dictionary for keys of `key_schema`'s columns.
    pub fn try_new(key_schema: &Schema) -> Result<Self> {
        Self::with_capacity(key_schema, 0)
    }

    /// A dictionary for keys of `key_schema`'s columns with room for `keys` keys before it
    /// grows (a window expecting as many users as the last one had, say).
    pub fn with_capacity(key_schema: &Schema, keys: usize) -> Result<Self> {
        let encoding = match key_schema.fields().as_ref() {
            [key] if key.data_type() == &DataType::Utf8 => Encoding::Utf8 { null_id: None },
            fields => {
                let converter = RowConverter::new(
                    fields
                        .iter()
                        .map(|f| SortField::new(f.data_type().clone()))
                        .collect(),
                )?;
                let parser = converter.parser();
                Encoding::Rows { converter, parser }
            }
        };
        Ok(Self {
            encoding,
            keys: ByteKeys::with_capacity(keys),
        })
    }

    /// Calls `found` with the id of each row's key, in row order, adding new keys.
    #[inline]
    pub fn intern_each(&mut self, cols: &[ArrayRef], mut found: impl FnMut(u32)) -> Result<()> {
        match &mut self.encoding {
            Encoding::Utf8 { null_id } => {
                let Some(strings) = cols.first().and_then(|c| c.as_string_opt::<i32>()) else {
                    return internal_err!("a string key dictionary takes one Utf8 column");
                };
                if strings.null_count() == 0 {
                    let bytes = strings.value_data();
                    let keys = strings.value_offsets().windows(2);
                    let keys = keys.map(|key| &bytes[key[0] as usize..key[1] as usize]);
                    return self.keys.intern_all(keys, found);
                }
                for key in strings.iter() {
                    let id = match key {
                        Some(key) => self.keys.intern(key.as_bytes())?,
                        None => match *null_id {
                            Some(id) => id,
                            None => *null_id.insert(self.keys.detached()?),
                        },
                    };
                    found(id);
                }
            }
            Encoding::Rows { converter, .. } => {
                let rows = converter.convert_columns(cols)?;
                self.keys
                    .intern_all(rows.iter().map(|row| row.data()), found)?;
            }
        }
        Ok(())
    }

    /// The key columns of `ids`, in their order.
    pub fn keys_of(
        &self,
        ids: impl ExactSizeIterator<Item = u32> + Clone,
    ) -> Result<Vec<ArrayRef>> {
        let total = || ids.clone().map(|id| self.keys.get(id).len()).sum();
        self.keys_of_total(ids.clone(), total)
    }

    /// [`Self::keys_of`], with `total` the bytes of the keys of `ids` together: for all ids
    /// the set knows it without reading every key, which at a window's end are out of the
    /// cache.
    fn keys_of_total(
        &self,
        ids: impl ExactSizeIterator<Item = u32> + Clone,
        total: impl FnOnce() -> usize,
    ) -> Result<Vec<ArrayRef>> {
        match &self.encoding {
            Encoding::Utf8 { null_id } => {
                let total = total();
                if i32::try_from(total).is_err() {
                    return internal_err!("more than 2 GiB of string keys in one window");
                }
                // Room for the last short key's whole-word copy.
                let mut bytes = Vec::with_capacity(total + 16);
                let mut offsets = Vec::with_capacity(ids.len() + 1);
                offsets.push(0i32);
                // Every end is at most `total`, which fits.
                self.keys
                    .copy_into(ids.clone(), &mut bytes, |end| offsets.push(end as i32));
                let nulls = null_id.map(|null| NullBuffer::from_iter(ids.map(|id| id != null)));
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                // SAFETY: every key of this encoding was interned from a `Utf8` value (a
                // null key's detached id has no bytes), and each offset ends a key.
                let keys =
                    unsafe { StringArray::new_unchecked(offsets, Buffer::from_vec(bytes), nulls) };
                Ok(vec![Arc::new(keys)])
            }
            Encoding::Rows { converter, parser } => {
                Ok(converter.convert_rows(ids.map(|id| parser.parse(self.keys.get(id))))?)
            }
        }
    }

    /// Forgets the key of `id`; the id may be handed out again.
    pub fn remove(&mut self, id: u32) {
        if let Encoding::Utf8 { null_id } = &mut self.encoding
            && *null_id == Some(id)
        {
            *null_id = None;
        }
        self.keys.remove(id);
    }

    /// One more than the largest id handed out.
    pub fn id_bound(&self) -> usize {
        self.keys.id_bound()
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.keys.size()
            + match &self.encoding {
                Encoding::Utf8 { .. } => 0,
                Encoding::Rows { converter, .. } => converter.size(),
            }
    }

    /// Every key in id order, leaving the dictionary empty.
    fn take_all(&mut self) -> Result<Vec<ArrayRef>> {
        let keys = self.keys_of_total(0..self.keys.id_bound() as u32, || self.keys.key_bytes())?;
        self.clear();
        Ok(keys)
    }

    fn clear(&mut self) {
        self.keys.clear();
        if let Encoding::Utf8 { null_id } = &mut self.encoding {
            *null_id = None;
        }
    }
}

impl GroupValues for KeyDictionary {
    fn intern(&mut self, cols: &[ArrayRef], groups: &mut Vec<usize>) -> Result<()> {
        groups.clear();
        groups.reserve(cols.first().map_or(0, |c| c.len()));
        self.intern_each(cols, |id| groups.push(id as usize))
    }

    fn size(&self) -> usize {
        KeyDictionary::size(self)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        KeyDictionary::len(self)
    }

    fn emit(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        if !matches!(emit_to, EmitTo::All) {
            return internal_err!("a key dictionary emits all groups at once");
        }
        self.take_all()
    }

    fn clear_shrink(&mut self, _num_rows: usize) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::Field;

    use super::*;

    fn strings() -> KeyDictionary {
        KeyDictionary::try_new(&Schema::new(vec![Field::new("k", DataType::Utf8, true)])).unwrap()
    }

    #[test]
    fn interns_equal_strings_to_one_group_and_emits_them_in_order() {
        let mut groups = strings();
        let mut ids = Vec::new();
        let batch: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            Some("a"),
            None,
            Some("b"),
            Some(""),
            None,
        ]));
        groups.intern(&[batch], &mut ids).unwrap();
        assert_eq!(ids, vec![0, 1, 2, 0, 3, 2]);
        let next: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), Some("c")]));
        groups.intern(&[next], &mut ids).unwrap();
        assert_eq!(ids, vec![1, 4]);
        assert_eq!(GroupValues::len(&groups), 5);
        let emitted = groups.emit(EmitTo::All).unwrap();
        let expected: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            Some("a"),
            None,
            Some(""),
            Some("c"),
        ]));
        assert_eq!(&emitted[0], &expected);
        assert!(GroupValues::is_empty(&groups));
    }

    #[test]
    fn many_strings_survive_table_growth() {
        let mut groups = strings();
        let mut ids = Vec::new();
        let keys: Vec<String> = (0..50_000).map(|i| format!("user-{i}")).collect();
        let batch: ArrayRef = Arc::new(StringArray::from(keys.clone()));
        groups.intern(&[Arc::clone(&batch)], &mut ids).unwrap();
        groups.intern(&[batch], &mut ids).unwrap();
        assert_eq!(ids, (0..50_000).collect::<Vec<_>>());
        let emitted = groups.emit(EmitTo::All).unwrap();
        assert_eq!(emitted[0].as_string::<i32>().value(49_999), "user-49999");
    }

    #[test]
    fn composite_keys_round_trip_through_rows_and_removed_ids_come_back() {
        let schema = Schema::new(vec![
            Field::new("user", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]);
        let mut dictionary = KeyDictionary::try_new(&schema).unwrap();
        let users: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "a", "a"]));
        let numbers: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), Some(1), Some(1), None]));
        let mut ids = Vec::new();
        dictionary
            .intern_each(&[users, numbers], |id| ids.push(id))
            .unwrap();
        assert_eq!(ids, vec![0, 1, 0, 2]);
        dictionary.remove(1);
        assert_eq!(dictionary.len(), 2);
        let keys = dictionary.keys_of([2u32, 0].into_iter()).unwrap();
        assert_eq!(keys[0].as_string::<i32>().value(0), "a");
        assert!(keys[1].is_null(0));
        assert_eq!(
            keys[1]
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .value(1),
            1
        );
    }

    #[test]
    fn string_keys_by_id_keep_nulls() {
        let mut dictionary = strings();
        let batch: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None]));
        let mut ids = Vec::new();
        dictionary.intern_each(&[batch], |id| ids.push(id)).unwrap();
        let keys = dictionary.keys_of([1u32, 0, 1].into_iter()).unwrap();
        let expected: ArrayRef = Arc::new(StringArray::from(vec![None, Some("x"), None]));
        assert_eq!(&keys[0], &expected);
    }
}
