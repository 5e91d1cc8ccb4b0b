//! [`VersionStore`]: the versions of a versioned table a temporal join keeps, per key,
//! ordered by the time each starts. A lookup for a time finds the version valid then: the
//! last one starting at or before it. Once no lookup can ask for a time before a horizon,
//! the versions superseded before it are dropped: each key keeps the one valid at the
//! horizon and those after.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::Rows;
use datafusion::common::Result;
use hashbrown::{HashMap as KeyMap, HashSet};

/// A kept version: (batch id, row).
pub type VersionRef = (u64, u32);

/// One version of a key: when it starts, where its row is, and whether it is a delete
/// (the key has no row from then on).
#[derive(Debug, Clone, Copy)]
struct Version {
    start: i64,
    batch: u64,
    row: u32,
    deleted: bool,
}

/// One key's versions, in order of start time.
type Versions = Vec<Version>;

struct StoredBatch {
    batch: RecordBatch,
    /// Rows still kept.
    live: usize,
}

/// The kept versions of one versioned table.
pub struct VersionStore {
    schema: SchemaRef,
    batches: HashMap<u64, StoredBatch>,
    next_id: u64,
    /// Each key's versions in order of start time; versions with the same start time in
    /// order of arrival.
    index: KeyMap<Box<[u8]>, Versions>,
    /// Keys with more than one version, or ending in a delete: the only ones a horizon can
    /// prune.
    prunable: HashSet<Box<[u8]>>,
    /// Versions kept.
    rows: usize,
    /// Bytes of the kept batches.
    bytes: usize,
}

impl VersionStore {
    /// An empty store of rows of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            batches: HashMap::new(),
            next_id: 0,
            index: KeyMap::new(),
            prunable: HashSet::new(),
            rows: 0,
            bytes: 0,
        }
    }

    /// Keeps the rows of `batch` as versions: `keys` (comparable bytes), `starts`
    /// (nanoseconds) and whether each is a delete; rows without a key or a start (`None`)
    /// are no versions.
    pub fn insert(
        &mut self,
        batch: RecordBatch,
        keys: &Rows,
        starts: &[Option<i64>],
        deletes: &[bool],
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let mut live = 0;
        for (row, start) in starts.iter().enumerate() {
            let Some(start) = *start else { continue };
            let key = keys.row(row);
            let versions = self.index.entry(key.as_ref().into()).or_default();
            let at = versions.partition_point(|version| version.start <= start);
            let version = Version {
                start,
                batch: id,
                row: row as u32,
                deleted: deletes[row],
            };
            versions.insert(at, version);
            if versions.len() == 2 || version.deleted {
                self.prunable.insert(key.as_ref().into());
            }
            live += 1;
        }
        if live == 0 {
            return;
        }
        self.rows += live;
        self.bytes += batch.get_array_memory_size();
        self.batches.insert(id, StoredBatch { batch, live });
    }

    /// The version of `key` valid at `time`: the last one starting at or before it, unless
    /// that is a delete.
    pub fn valid_at(&self, key: &[u8], time: i64) -> Option<VersionRef> {
        let versions = self.index.get(key)?;
        let at = versions.partition_point(|version| version.start <= time);
        let version = versions.get(at.checked_sub(1)?)?;
        (!version.deleted).then_some((version.batch, version.row))
    }

    /// Drops the versions no lookup at or after `horizon` can find, and the keys whose
    /// last version before it is a delete with none after.
    pub fn prune(&mut self, horizon: i64) {
        let mut dropped: Vec<(u64, u32)> = Vec::new();
        let index = &mut self.index;
        self.prunable.retain(|key| {
            let Some(versions) = index.get_mut(key) else {
                return false;
            };
            let valid = versions.partition_point(|version| version.start <= horizon);
            if valid > 1 {
                dropped.extend(versions.drain(..valid - 1).map(|v| (v.batch, v.row)));
            }
            if let [only] = versions.as_slice()
                && only.deleted
                && only.start <= horizon
            {
                dropped.push((only.batch, only.row));
                index.remove(key);
                return false;
            }
            versions.len() > 1 || versions.last().is_some_and(|v| v.deleted)
        });
        self.rows -= dropped.len();
        for (id, _) in dropped {
            if let Some(stored) = self.batches.get_mut(&id) {
                stored.live -= 1;
                if stored.live == 0 {
                    self.bytes -= stored.batch.get_array_memory_size();
                    self.batches.remove(&id);
                }
            }
        }
        self.compact_if_sparse();
    }

    /// Copies the kept versions into one batch when most rows held are superseded ones:
    /// a batch is held while any of its rows is kept.
    fn compact_if_sparse(&mut self) {
        let held: usize = self.batches.values().map(|b| b.batch.num_rows()).sum();
        if held < 4096 || held < 4 * self.rows {
            return;
        }
        let Ok(batch) = self.snapshot() else {
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        // The same order as the snapshot's: the index has not changed since.
        for (row, version) in self.index.values_mut().flatten().enumerate() {
            version.batch = id;
            version.row = row as u32;
        }
        self.bytes = batch.get_array_memory_size();
        self.batches = HashMap::from([(
            id,
            StoredBatch {
                live: batch.num_rows(),
                batch,
            },
        )]);
    }

    /// The columns of `versions`, in that order; NULLs where there is none.
    pub fn columns(&self, versions: &[Option<VersionRef>]) -> Result<Vec<ArrayRef>> {
        let mut ids: Vec<u64> = Vec::new();
        let mut slots: HashMap<u64, usize> = HashMap::new();
        // Slot 0 is a row of NULLs.
        let indices: Vec<(usize, usize)> = versions
            .iter()
            .map(|version| match version {
                None => (0, 0),
                Some((id, row)) => {
                    let slot = *slots.entry(*id).or_insert_with(|| {
                        ids.push(*id);
                        ids.len()
                    });
                    (slot, *row as usize)
                }
            })
            .collect();
        let batches: Vec<&RecordBatch> = ids.iter().map(|id| &self.batches[id].batch).collect();
        self.schema
            .fields()
            .iter()
            .enumerate()
            .map(|(column, field)| {
                let nulls = new_null_array(field.data_type(), 1);
                let arrays: Vec<&dyn Array> = std::iter::once(nulls.as_ref())
                    .chain(batches.iter().map(|b| b.column(column).as_ref()))
                    .collect();
                Ok(interleave(&arrays, &indices)?)
            })
            .collect()
    }

    /// Every kept version, in one batch, for a checkpoint.
    pub fn snapshot(&self) -> Result<RecordBatch> {
        let refs: Vec<Option<VersionRef>> = self
            .index
            .values()
            .flatten()
            .map(|version| Some((version.batch, version.row)))
            .collect();
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            self.columns(&refs)?,
        )?)
    }

    /// Versions kept.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Bytes held: the batches and the index.
    pub fn size(&self) -> usize {
        self.bytes + self.index.len() * 64 + self.rows * 24
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::arrow::row::{RowConverter, SortField};

    use super::*;

    /// A store of (key, value) versions starting at `starts`; a negative value is a delete.
    fn store(rows: &[(&str, i64, i64)]) -> (VersionStore, RowConverter) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let converter = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
        let keys: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::clone(&keys),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap();
        let rows_of_keys = converter.convert_columns(&[keys]).unwrap();
        let starts: Vec<Option<i64>> = rows.iter().map(|r| Some(r.2)).collect();
        let deletes: Vec<bool> = rows.iter().map(|r| r.1 < 0).collect();
        let mut store = VersionStore::new(schema);
        store.insert(batch, &rows_of_keys, &starts, &deletes);
        (store, converter)
    }

    fn value_at(
        store: &VersionStore,
        converter: &RowConverter,
        key: &str,
        time: i64,
    ) -> Option<i64> {
        let keys = converter
            .convert_columns(&[Arc::new(StringArray::from(vec![key])) as ArrayRef])
            .unwrap();
        let found = store.valid_at(keys.row(0).as_ref(), time)?;
        let columns = store.columns(&[Some(found)]).unwrap();
        Some(columns[1].as_primitive::<Int64Type>().value(0))
    }

    #[test]
    fn finds_the_version_valid_at_a_time() {
        let (store, converter) = store(&[("a", 1, 10), ("a", 3, 30), ("a", 2, 20), ("b", 9, 5)]);
        assert_eq!(value_at(&store, &converter, "a", 9), None);
        assert_eq!(value_at(&store, &converter, "a", 10), Some(1));
        assert_eq!(value_at(&store, &converter, "a", 29), Some(2));
        assert_eq!(value_at(&store, &converter, "a", 1000), Some(3));
        assert_eq!(value_at(&store, &converter, "b", 5), Some(9));
        assert_eq!(value_at(&store, &converter, "c", 5), None);
    }

    #[test]
    fn a_horizon_keeps_the_version_valid_at_it_and_later_ones() {
        let (mut store, converter) =
            store(&[("a", 1, 10), ("a", 2, 20), ("a", 3, 30), ("b", 9, 5)]);
        store.prune(25);
        assert_eq!(store.len(), 3);
        assert_eq!(value_at(&store, &converter, "a", 25), Some(2));
        assert_eq!(value_at(&store, &converter, "a", 30), Some(3));
        assert_eq!(value_at(&store, &converter, "b", 25), Some(9));
        store.prune(i64::MAX);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_delete_ends_the_versions_of_its_key_until_the_next() {
        let (store, converter) = store(&[("a", 1, 10), ("a", -1, 20), ("a", 3, 30)]);
        assert_eq!(value_at(&store, &converter, "a", 15), Some(1));
        assert_eq!(value_at(&store, &converter, "a", 25), None);
        assert_eq!(value_at(&store, &converter, "a", 30), Some(3));
    }

    #[test]
    fn a_key_deleted_before_the_horizon_is_forgotten() {
        let (mut store, converter) = store(&[("a", 1, 10), ("a", -1, 20), ("b", -1, 5)]);
        store.prune(15);
        assert_eq!(store.len(), 2);
        store.prune(25);
        assert_eq!(store.len(), 0);
        assert!(store.index.is_empty());
        assert_eq!(value_at(&store, &converter, "a", 30), None);
    }

    #[test]
    fn compacts_when_most_rows_held_are_superseded() {
        let rows: Vec<(&str, i64, i64)> = (0..10_000).map(|i| ("a", i, i)).collect();
        let (mut store, converter) = store(&rows);
        store.prune(9_998);
        assert_eq!(store.len(), 2);
        assert_eq!(store.batches.len(), 1);
        assert_eq!(store.batches.values().next().unwrap().batch.num_rows(), 2);
        assert_eq!(value_at(&store, &converter, "a", 9_998), Some(9_998));
        assert_eq!(value_at(&store, &converter, "a", 20_000), Some(9_999));
    }
}
