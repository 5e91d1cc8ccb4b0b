//! [`ProfileCache`]: the rows of one view that `GET /v1/views/{view}/{key}` has read,
//! kept in the process and kept fresh by the pipeline's own upserts.
//!
//! The cache listens to the view's sink ([`RowListener`]): right after each commit, an
//! upsert of a cached key replaces its entry when the version is newer, and a refresh that
//! deleted keys empties the cache. A miss reads the store under a [`Load`] ticket; while
//! the read is in flight the key's entry is a placeholder that an upsert may fill, and the
//! read's result is kept only if the placeholder is still its own (not emptied by a delete,
//! evicted, or taken by a later load) and not older than what an upsert brought meanwhile.
//! A load dropped half-way (the client went away) removes its placeholder. Entries are
//! bounded; when full, an arbitrary entry makes room.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Array, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::json_row::row_json;
use crate::connector::store::{RowListener, StoredRow, now_iso8601};

/// A cached row: the one-row batch (scores are computed on it) and its JSON.
#[derive(Debug, Clone)]
pub struct CachedRow {
    pub row: RecordBatch,
    pub json: Arc<str>,
    pub version: Option<i64>,
    pub updated_at: Option<Arc<str>>,
}

impl CachedRow {
    /// A row read from the store, with its JSON; a row that cannot be shown is an error.
    pub fn of(stored: StoredRow) -> Result<Self, String> {
        Ok(Self {
            json: row_json(&stored.row, 0).map_err(|e| e.to_string())?.into(),
            row: stored.row,
            version: stored.version,
            updated_at: stored.updated_at.map(Into::into),
        })
    }
}

#[derive(Debug, Clone)]
enum Entry {
    /// The store read with this ticket is in flight; an upsert may fill it meanwhile.
    Loading(u64, Option<Arc<CachedRow>>),
    /// What the store holds (`None`: no row with this key).
    Loaded(Option<Arc<CachedRow>>),
}

/// What a lookup found in the cache.
pub enum Cached<'a> {
    /// The key's row, or `None` when the store has none.
    Hit(Option<Arc<CachedRow>>),
    /// Not cached: read the store, then [`Load::finish`].
    Miss(Load<'a>),
}

/// A store read on behalf of the cache; dropped unfinished, it gives its placeholder up.
pub struct Load<'a> {
    cache: &'a ProfileCache,
    key: String,
    ticket: u64,
    finished: bool,
}

/// The cache of one view.
#[derive(Debug)]
pub struct ProfileCache {
    /// The positions of the key columns in the view's schema.
    key_columns: Vec<usize>,
    capacity: usize,
    entries: RwLock<HashMap<String, Entry>>,
    tickets: AtomicU64,
}

/// The cache key of a key given as one text per key column: each value preceded by its
/// length, so that no two keys share one whatever their values hold (values joined by a
/// separator would let `("a␟b", "c")` and `("a", "b␟c")` meet).
pub fn cache_key(key: &[String]) -> String {
    let mut joined = String::with_capacity(key.iter().map(|part| part.len() + 4).sum());
    for part in key {
        joined.push_str(&part.len().to_string());
        joined.push(':');
        joined.push_str(part);
    }
    joined
}

impl ProfileCache {
    /// A cache of at most `capacity` keys of a view keyed by the columns at `key_columns`.
    pub fn new(key_columns: Vec<usize>, capacity: usize) -> Self {
        Self {
            key_columns,
            capacity: capacity.max(1),
            entries: RwLock::new(HashMap::new()),
            tickets: AtomicU64::new(0),
        }
    }

    /// The cached row of `key`, or a miss with the ticket of a new load.
    pub fn get(&self, key: &str) -> Cached<'_> {
        if let Some(Entry::Loaded(row)) = self.read().get(key) {
            return Cached::Hit(row.clone());
        }
        let mut entries = self.write();
        if let Some(Entry::Loaded(row)) = entries.get(key) {
            return Cached::Hit(row.clone());
        }
        // A new load takes the placeholder over (with what upserts brought to it so far).
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let pushed = match entries.remove(key) {
            Some(Entry::Loading(_, pushed)) => pushed,
            _ => None,
        };
        self.make_room(&mut entries);
        entries.insert(key.to_string(), Entry::Loading(ticket, pushed));
        Cached::Miss(Load {
            cache: self,
            key: key.to_string(),
            ticket,
            finished: false,
        })
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn make_room(&self, entries: &mut HashMap<String, Entry>) {
        while entries.len() >= self.capacity {
            let Some(victim) = entries.keys().next().cloned() else {
                return;
            };
            entries.remove(&victim);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The cache keys of every row of `rows`, as key values print.
    fn keys_of(&self, rows: &RecordBatch) -> Option<Vec<String>> {
        let options = FormatOptions::default();
        let formatters = self
            .key_columns
            .iter()
            .map(|&i| ArrayFormatter::try_new(rows.column(i).as_ref(), &options).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(
            (0..rows.num_rows())
                .map(|row| {
                    let parts: Vec<String> = formatters
                        .iter()
                        .map(|f| f.value(row).to_string())
                        .collect();
                    cache_key(&parts)
                })
                .collect(),
        )
    }
}

impl Load<'_> {
    /// Records what the store returned; returns the row to answer with (an upsert during
    /// the read may have brought a newer one). A row that cannot be shown is an error.
    pub fn finish(mut self, stored: Option<StoredRow>) -> Result<Option<Arc<CachedRow>>, String> {
        self.finished = true;
        let read = stored.map(CachedRow::of).transpose()?.map(Arc::new);
        let mut entries = self.cache.write();
        match entries.get(&self.key) {
            Some(Entry::Loading(ticket, pushed)) if *ticket == self.ticket => {
                let kept = match pushed {
                    Some(pushed) if !newer(read.as_deref(), pushed) => Some(Arc::clone(pushed)),
                    _ => read,
                };
                entries.insert(self.key.clone(), Entry::Loaded(kept.clone()));
                Ok(kept)
            }
            // Emptied, evicted or taken over meanwhile: answer with the read, keep nothing.
            _ => Ok(read),
        }
    }
}

impl Drop for Load<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut entries = self.cache.write();
        if let Some(Entry::Loading(ticket, _)) = entries.get(&self.key)
            && *ticket == self.ticket
        {
            entries.remove(&self.key);
        }
    }
}

/// True when `candidate` should replace `current`: it has a newer version, or rows carry
/// none (the latest write wins).
fn newer(candidate: Option<&CachedRow>, current: &CachedRow) -> bool {
    match candidate {
        None => false,
        Some(candidate) => match (candidate.version, current.version) {
            (Some(a), Some(b)) => a > b,
            _ => true,
        },
    }
}

impl RowListener for ProfileCache {
    fn upserted(&self, rows: &RecordBatch, versions: Option<&Int64Array>) {
        if self.is_empty() {
            return;
        }
        let Some(keys) = self.keys_of(rows) else {
            return;
        };
        let cached: Vec<usize> = {
            let entries = self.read();
            (0..keys.len())
                .filter(|&i| entries.contains_key(&keys[i]))
                .collect()
        };
        if cached.is_empty() {
            return;
        }
        // Rows are rendered before the lock is taken.
        let now: Arc<str> = now_iso8601().into();
        let pushed: Vec<(usize, Arc<CachedRow>)> = cached
            .into_iter()
            .filter_map(|i| {
                let json = row_json(rows, i).ok()?;
                Some((
                    i,
                    Arc::new(CachedRow {
                        // A copy of the row: a slice would keep the whole batch alive.
                        row: take_record_batch(rows, &UInt32Array::from(vec![i as u32])).ok()?,
                        json: json.into(),
                        version: versions.filter(|v| v.is_valid(i)).map(|v| v.value(i)),
                        updated_at: Some(Arc::clone(&now)),
                    }),
                ))
            })
            .collect();
        let mut entries = self.write();
        for (i, row) in pushed {
            if let Some(entry) = entries.get_mut(&keys[i]) {
                let (Entry::Loading(_, current) | Entry::Loaded(current)) = entry;
                // A store never applies an older version: neither does its cache.
                if current.as_ref().is_none_or(|c| newer(Some(&*row), c)) {
                    *current = Some(row);
                }
            }
        }
    }

    fn deleted(&self) {
        self.write().clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(keys: &[&str], events: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("events", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(events.to_vec())),
            ],
        )
        .unwrap()
    }

    fn stored(events: i64, version: i64) -> StoredRow {
        StoredRow {
            row: rows(&["u1"], &[events]),
            version: Some(version),
            updated_at: Some("2026-01-01T00:00:00.000Z".into()),
        }
    }

    /// The cached row of the single-column key `key`.
    fn hit(cache: &ProfileCache, key: &str) -> Option<String> {
        match cache.get(&cache_key(&[key.to_string()])) {
            Cached::Hit(row) => row.map(|r| r.json.to_string()),
            Cached::Miss(_) => panic!("expected {key} cached"),
        }
    }

    /// The load of the single-column key `key`, which is not cached.
    fn miss<'a>(cache: &'a ProfileCache, key: &str) -> Load<'a> {
        match cache.get(&cache_key(&[key.to_string()])) {
            Cached::Miss(load) => load,
            Cached::Hit(_) => panic!("expected a miss for {key}"),
        }
    }

    #[test]
    fn a_miss_then_a_hit_then_an_upsert_keeps_it_fresh() {
        let cache = ProfileCache::new(vec![0], 10);
        miss(&cache, "u1").finish(Some(stored(3, 3))).unwrap();
        assert_eq!(hit(&cache, "u1").unwrap(), r#"{"user_id":"u1","events":3}"#);
        cache.upserted(
            &rows(&["u1", "u9"], &[5, 1]),
            Some(&Int64Array::from(vec![5, 1])),
        );
        assert_eq!(hit(&cache, "u1").unwrap(), r#"{"user_id":"u1","events":5}"#);
        // Keys nobody asked for are not cached.
        assert_eq!(cache.len(), 1);
        // An older version is not applied.
        cache.upserted(&rows(&["u1"], &[4]), Some(&Int64Array::from(vec![4])));
        assert_eq!(hit(&cache, "u1").unwrap(), r#"{"user_id":"u1","events":5}"#);
    }

    #[test]
    fn an_upsert_during_the_store_read_wins_over_the_older_read() {
        let cache = ProfileCache::new(vec![0], 10);
        let load = miss(&cache, "u1");
        cache.upserted(&rows(&["u1"], &[7]), Some(&Int64Array::from(vec![7])));
        let kept = load.finish(Some(stored(6, 6))).unwrap().unwrap();
        assert_eq!(kept.version, Some(7));
        assert_eq!(hit(&cache, "u1").unwrap(), r#"{"user_id":"u1","events":7}"#);
    }

    #[test]
    fn a_delete_during_the_store_read_keeps_the_read_out_of_the_cache() {
        let cache = ProfileCache::new(vec![0], 10);
        let load = miss(&cache, "u1");
        cache.deleted();
        // The read answers its own request, but is not cached: the next lookup reads again.
        assert!(load.finish(Some(stored(6, 6))).unwrap().is_some());
        assert!(cache.is_empty());
        drop(miss(&cache, "u1"));
        // A load dropped half-way leaves no placeholder behind.
        assert!(cache.is_empty());
    }

    #[test]
    fn unknown_keys_are_remembered_until_a_row_arrives_and_deletes_empty_the_cache() {
        let cache = ProfileCache::new(vec![0], 10);
        assert!(miss(&cache, "u1").finish(None).unwrap().is_none());
        assert_eq!(hit(&cache, "u1"), None);
        cache.upserted(&rows(&["u1"], &[1]), Some(&Int64Array::from(vec![1])));
        assert!(hit(&cache, "u1").is_some());
        cache.deleted();
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_stays_within_its_capacity_even_with_loads_in_flight() {
        let cache = ProfileCache::new(vec![0], 2);
        let mut loads = Vec::new();
        for key in ["a", "b", "c", "d"] {
            loads.push(miss(&cache, key));
            assert!(cache.len() <= 2);
        }
        for load in loads {
            load.finish(None).unwrap();
        }
        assert!(cache.len() <= 2);
    }
}
