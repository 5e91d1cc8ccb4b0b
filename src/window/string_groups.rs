//! Group values for a single string key, kept compact: every key's bytes in one buffer and
//! a hash table of 8-byte entries (32 bits of hash, a 32-bit group id). Window state is
//! mostly this table (one group per user per open window), so its size is what a memory
//! limit buys. Used by window aggregates whose only key besides the window is a string.

use std::hash::BuildHasher;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::common::{Result, internal_err};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::GroupValues;
use hashbrown::{DefaultHashBuilder, HashTable};

/// Interns `Utf8` keys into dense group ids.
#[derive(Default)]
pub struct StringGroupValues {
    /// (low 32 bits of the key's hash, group id)
    table: HashTable<(u32, u32)>,
    bytes: Vec<u8>,
    /// `offsets[i]..offsets[i + 1]` are the bytes of group `i`; starts with 0 once used.
    offsets: Vec<i32>,
    null_group: Option<u32>,
    hasher: DefaultHashBuilder,
}

/// The table's hash for a stored 32-bit hash: low bits pick the bucket, high bits tag it.
fn table_hash(short: u32) -> u64 {
    (short as u64) | ((short as u64) << 32)
}

impl StringGroupValues {
    fn key<'a>(bytes: &'a [u8], offsets: &[i32], id: u32) -> &'a [u8] {
        let id = id as usize;
        &bytes[offsets[id] as usize..offsets[id + 1] as usize]
    }

    fn push(&mut self, key: &[u8]) -> Result<u32> {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.bytes.extend_from_slice(key);
        let Ok(end) = i32::try_from(self.bytes.len()) else {
            return internal_err!("more than 2 GiB of string keys in one window");
        };
        self.offsets.push(end);
        Ok((self.offsets.len() - 2) as u32)
    }
}

impl GroupValues for StringGroupValues {
    fn intern(&mut self, cols: &[ArrayRef], groups: &mut Vec<usize>) -> Result<()> {
        let Some(keys) = cols.first().and_then(|c| c.as_string_opt::<i32>()) else {
            return internal_err!("StringGroupValues takes one Utf8 column");
        };
        groups.clear();
        groups.reserve(keys.len());
        for row in 0..keys.len() {
            if keys.is_null(row) {
                let id = match self.null_group {
                    Some(id) => id,
                    None => {
                        let id = self.push(&[])?;
                        self.null_group = Some(id);
                        id
                    }
                };
                groups.push(id as usize);
                continue;
            }
            let key = keys.value(row).as_bytes();
            let short = self.hasher.hash_one(key) as u32;
            let (bytes, offsets, null_group) = (&self.bytes, &self.offsets, self.null_group);
            let found = self.table.find(table_hash(short), |&(hash, id)| {
                hash == short && Some(id) != null_group && Self::key(bytes, offsets, id) == key
            });
            let id = match found {
                Some(&(_, id)) => id,
                None => {
                    let id = self.push(key)?;
                    self.table
                        .insert_unique(table_hash(short), (short, id), |&(hash, _)| {
                            table_hash(hash)
                        });
                    id
                }
            };
            groups.push(id as usize);
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.table.capacity() * (size_of::<(u32, u32)>() + 1)
            + self.bytes.capacity()
            + self.offsets.capacity() * size_of::<i32>()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn emit(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        if !matches!(emit_to, EmitTo::All) {
            return internal_err!("StringGroupValues emits all groups at once");
        }
        let taken = std::mem::take(self);
        let mut offsets = taken.offsets;
        if offsets.is_empty() {
            offsets.push(0);
        }
        let groups = offsets.len() - 1;
        let nulls = taken
            .null_group
            .map(|null| NullBuffer::from_iter((0..groups).map(|i| i != null as usize)));
        let keys = StringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(taken.bytes),
            nulls,
        )?;
        self.hasher = taken.hasher;
        Ok(vec![Arc::new(keys)])
    }

    fn clear_shrink(&mut self, _num_rows: usize) {
        let hasher = std::mem::take(&mut self.hasher);
        *self = Self {
            hasher,
            ..Self::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_equal_keys_to_one_group_and_emits_them_in_order() {
        let mut groups = StringGroupValues::default();
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
        assert_eq!(groups.len(), 5);
        let emitted = groups.emit(EmitTo::All).unwrap();
        let expected: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            Some("a"),
            None,
            Some(""),
            Some("c"),
        ]));
        assert_eq!(&emitted[0], &expected);
        assert!(groups.is_empty());
    }

    #[test]
    fn many_keys_survive_table_growth() {
        let mut groups = StringGroupValues::default();
        let mut ids = Vec::new();
        let keys: Vec<String> = (0..50_000).map(|i| format!("user-{i}")).collect();
        let batch: ArrayRef = Arc::new(StringArray::from(keys.clone()));
        groups.intern(&[Arc::clone(&batch)], &mut ids).unwrap();
        groups.intern(&[batch], &mut ids).unwrap();
        assert_eq!(ids, (0..50_000).collect::<Vec<_>>());
        let emitted = groups.emit(EmitTo::All).unwrap();
        assert_eq!(emitted[0].as_string::<i32>().value(49_999), "user-49999");
    }
}
