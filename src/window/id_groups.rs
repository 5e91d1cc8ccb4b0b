//! The groups of one window whose keys were interned once, into a [`KeyDictionary`] shared
//! by every open window: the window maps dictionary ids (a `UInt32` column) to its own dense
//! group indices through an array indexed by id, so a row that lands in several windows is
//! hashed only once.
//!
//! The array costs four bytes per dictionary id in every open window. Dictionary ids are
//! dense (freed ids are reused) and a `HOP` row lands in every window of its pane, so a key
//! is in most open windows and the array is smaller than a hash table would be.
//!
//! [`KeyDictionary`]: super::key_dictionary::KeyDictionary

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, UInt32Array};
use datafusion::arrow::datatypes::UInt32Type;
use datafusion::common::{Result, internal_err};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::GroupValues;

/// Dictionary ids to group indices, for one window.
#[derive(Default)]
pub struct IdGroupValues {
    /// By dictionary id: its group index plus one, or 0 when the id has no group here.
    slots: Vec<u32>,
    /// The dictionary id of each group.
    ids: Vec<u32>,
}

impl IdGroupValues {
    /// Room for `groups` groups with ids below `id_bound`, when the previous window and the
    /// dictionary say what to expect.
    pub fn with_capacity(groups: usize, id_bound: usize) -> Self {
        Self {
            slots: vec![0; id_bound],
            ids: Vec::with_capacity(groups),
        }
    }
}

impl GroupValues for IdGroupValues {
    fn intern(&mut self, cols: &[ArrayRef], groups: &mut Vec<usize>) -> Result<()> {
        let Some(ids) = cols
            .first()
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
        else {
            return internal_err!("IdGroupValues takes one UInt32 column of dictionary ids");
        };
        groups.clear();
        groups.reserve(ids.len());
        if let Some(&largest) = ids.values().iter().max()
            && largest as usize >= self.slots.len()
        {
            self.slots
                .resize((largest as usize + 1).next_power_of_two(), 0);
        }
        for &id in ids.values().iter() {
            let slot = &mut self.slots[id as usize];
            if *slot == 0 {
                self.ids.push(id);
                *slot = self.ids.len() as u32;
            }
            groups.push(*slot as usize - 1);
        }
        Ok(())
    }

    fn size(&self) -> usize {
        (self.slots.capacity() + self.ids.capacity()) * size_of::<u32>()
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// The dictionary ids of the groups, in group order.
    fn emit(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        if !matches!(emit_to, EmitTo::All) {
            return internal_err!("IdGroupValues emits all groups at once");
        }
        let ids = std::mem::take(&mut self.ids);
        self.slots = Vec::new();
        Ok(vec![Arc::new(UInt32Array::from(ids))])
    }

    fn clear_shrink(&mut self, _num_rows: usize) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_dense_groups_in_first_seen_order() {
        let mut groups = IdGroupValues::default();
        let mut indices = Vec::new();
        let ids: ArrayRef = Arc::new(UInt32Array::from(vec![7, 3, 7, 1_000_000, 3]));
        groups.intern(&[ids], &mut indices).unwrap();
        assert_eq!(indices, vec![0, 1, 0, 2, 1]);
        let emitted = groups.emit(EmitTo::All).unwrap();
        assert_eq!(
            emitted[0].as_primitive::<UInt32Type>().values().to_vec(),
            vec![7, 3, 1_000_000]
        );
        assert!(groups.is_empty());
    }
}
