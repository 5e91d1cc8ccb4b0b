//! The group keys of overlapping windows (`HOP`), interned once into one dictionary that
//! every open window refers to by id. A key lives as long as the latest window holding it:
//! when that window is emitted the key is forgotten and its id reused, so the dictionary holds
//! the keys of open windows only.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use datafusion::arrow::datatypes::{Schema, UInt32Type};
use datafusion::common::{Result, internal_err};

use super::key_dictionary::KeyDictionary;

/// Keys shared by the open windows of one aggregate.
pub struct SharedKeys {
    dictionary: KeyDictionary,
    /// Per id: the end of the latest window that holds the key.
    last_end: Vec<i64>,
    /// The key columns interned last: the window scan hands a pane's rows on once per
    /// window, with the same arrays, so they are hashed once.
    last: Option<Interned>,
}

/// Key columns and their ids.
struct Interned {
    keys: Vec<ArrayRef>,
    ids: ArrayRef,
    /// The latest window end these ids' lifetimes were extended to.
    end: i64,
}

/// Makes each of `ids` live at least until the window ending at `end` is emitted.
fn extend_lifetimes(last_end: &mut [i64], ids: &ArrayRef, end: i64) {
    for &id in ids.as_primitive::<UInt32Type>().values().iter() {
        let last_end = &mut last_end[id as usize];
        *last_end = (*last_end).max(end);
    }
}

impl SharedKeys {
    pub fn try_new(key_schema: &Schema) -> Result<Self> {
        Ok(Self {
            dictionary: KeyDictionary::try_new(key_schema)?,
            last_end: Vec::new(),
            last: None,
        })
    }

    /// The ids (a `UInt32` column) of `keys`, rows of the window ending at `end`.
    pub fn ids(&mut self, keys: &[ArrayRef], end: i64) -> Result<ArrayRef> {
        if let Some(last) = &mut self.last
            && last.keys.len() == keys.len()
            && last.keys.iter().zip(keys).all(|(a, b)| Arc::ptr_eq(a, b))
        {
            if end > last.end {
                last.end = end;
                extend_lifetimes(&mut self.last_end, &last.ids, end);
            }
            return Ok(Arc::clone(&last.ids));
        }
        let mut ids = Vec::with_capacity(keys.first().map_or(0, |k| k.len()));
        self.dictionary.intern_each(keys, |id| ids.push(id))?;
        let ids: ArrayRef = Arc::new(UInt32Array::from(ids));
        self.last_end.resize(
            self.dictionary.id_bound().max(self.last_end.len()),
            i64::MIN,
        );
        extend_lifetimes(&mut self.last_end, &ids, end);
        self.last = Some(Interned {
            keys: keys.to_vec(),
            ids: Arc::clone(&ids),
            end,
        });
        Ok(ids)
    }

    /// The key columns of the groups of the window ending at `end`, given their ids; keys in
    /// no later window are forgotten.
    pub fn release(&mut self, ids: &ArrayRef, end: i64) -> Result<Vec<ArrayRef>> {
        let Some(ids) = ids.as_primitive_opt::<UInt32Type>() else {
            return internal_err!("shared window keys are UInt32 ids");
        };
        if ids.null_count() > 0 {
            return internal_err!("a window emitted a null key id");
        }
        let ids = ids.values();
        let keys = self.dictionary.keys_of(ids.iter().copied())?;
        self.last = None;
        for &id in ids.iter() {
            let last_end = &mut self.last_end[id as usize];
            if *last_end <= end {
                *last_end = i64::MIN;
                self.dictionary.remove(id);
            }
        }
        Ok(keys)
    }

    /// The key columns of `ids`, leaving them held.
    pub fn keys_of(&self, ids: &ArrayRef) -> Result<Vec<ArrayRef>> {
        let Some(ids) = ids.as_primitive_opt::<UInt32Type>() else {
            return internal_err!("shared window keys are UInt32 ids");
        };
        self.dictionary.keys_of(ids.values().iter().copied())
    }

    /// The number of keys held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.dictionary.len()
    }

    /// One more than the largest id handed out.
    pub fn id_bound(&self) -> usize {
        self.dictionary.id_bound()
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.dictionary.size() + self.last_end.capacity() * size_of::<i64>()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;

    #[test]
    fn a_key_lives_until_its_latest_window_is_emitted() {
        let schema = Schema::new(vec![Field::new("user", DataType::Utf8, false)]);
        let mut shared = SharedKeys::try_new(&schema).unwrap();
        let pane: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "a"]));
        // One pane in the windows ending at 10 and 20; "b" alone also in the one ending at 30.
        let in_10 = shared.ids(&[Arc::clone(&pane)], 10).unwrap();
        let in_20 = shared.ids(&[Arc::clone(&pane)], 20).unwrap();
        assert!(
            Arc::ptr_eq(&in_10, &in_20),
            "the same arrays are interned once"
        );
        let later: ArrayRef = Arc::new(StringArray::from(vec!["b"]));
        shared.ids(&[later], 30).unwrap();
        assert_eq!(shared.len(), 2);

        let a_and_b: ArrayRef = Arc::new(UInt32Array::from(vec![0, 1]));
        let keys = shared.release(&a_and_b, 10).unwrap();
        assert_eq!(keys[0].as_string::<i32>().value(1), "b");
        assert_eq!(shared.len(), 2, "both keys are in later windows");
        shared.release(&a_and_b, 20).unwrap();
        assert_eq!(shared.len(), 1, "\"a\" was in no window after 20");
        let b: ArrayRef = Arc::new(UInt32Array::from(vec![1]));
        shared.release(&b, 30).unwrap();
        assert_eq!(shared.len(), 0);
    }
}
