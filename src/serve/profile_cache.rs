//! [`ProfileCache`]: the rows of one view that `GET /v1/views/{view}/{key}` has read,
//! kept in the process and kept fresh by the pipeline's own upserts.
//!
//! The cache listens to the view's sink ([`RowListener`]): a committed upsert of a cached
//! key replaces its entry when the version is newer, and a refresh that deleted keys
//! empties the cache. A miss reads the store; while that read is in flight the key's entry
//! is a placeholder that an upsert may fill, and the read's result only lands if it is
//! newer, so a lookup racing an upsert never leaves an older row behind. Entries are
//! bounded; when full, an arbitrary entry makes room.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Array, Int64Array, RecordBatch};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::json_row::row_json;
use crate::profile::{RowListener, StoredRow, now_iso8601};

/// A cached row: the one-row batch (scores are computed on it) and its JSON.
#[derive(Debug, Clone)]
pub struct CachedRow {
    pub row: RecordBatch,
    pub json: Arc<str>,
    pub version: Option<i64>,
    pub updated_at: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
enum Entry {
    /// A store read is in flight; an upsert may fill it meanwhile.
    Loading(Option<Arc<CachedRow>>),
    /// What the store holds (`None`: no row with this key).
    Loaded(Option<Arc<CachedRow>>),
}

/// What a lookup found in the cache.
#[derive(Debug, Clone)]
pub enum Cached {
    /// The key's row, or `None` when the store has none.
    Hit(Option<Arc<CachedRow>>),
    /// Not cached: read the store, then [`ProfileCache::loaded`].
    Miss,
}

/// The cache of one view.
#[derive(Debug)]
pub struct ProfileCache {
    /// The positions of the key columns in the view's schema.
    key_columns: Vec<usize>,
    capacity: usize,
    entries: RwLock<HashMap<String, Entry>>,
}

/// Joins the values of a composite key into one cache key.
const KEY_SEPARATOR: char = '\u{1f}';

/// The cache key of a key given as one text per key column.
pub fn cache_key(key: &[String]) -> String {
    key.join(&KEY_SEPARATOR.to_string())
}

impl ProfileCache {
    /// A cache of at most `capacity` keys of a view keyed by the columns at `key_columns`.
    pub fn new(key_columns: Vec<usize>, capacity: usize) -> Self {
        Self {
            key_columns,
            capacity: capacity.max(1),
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The cached row of `key`, or a miss (marking the key as loading).
    pub fn get(&self, key: &str) -> Cached {
        if let Some(Entry::Loaded(row)) = self.read().get(key) {
            return Cached::Hit(row.clone());
        }
        let mut entries = self.write();
        match entries.get(key) {
            Some(Entry::Loaded(row)) => Cached::Hit(row.clone()),
            Some(Entry::Loading(_)) => Cached::Miss,
            None => {
                self.make_room(&mut entries);
                entries.insert(key.to_string(), Entry::Loading(None));
                Cached::Miss
            }
        }
    }

    /// Records what the store returned for `key` after a miss; returns what the cache
    /// now holds (an upsert during the read may have brought a newer row).
    pub fn loaded(&self, key: &str, stored: Option<StoredRow>) -> Option<Arc<CachedRow>> {
        let read = stored.and_then(|s| {
            let json = row_json(&s.row, 0).ok()?;
            Some(Arc::new(CachedRow {
                row: s.row,
                json: json.into(),
                version: s.version,
                updated_at: s.updated_at.map(Into::into),
            }))
        });
        let mut entries = self.write();
        let kept = match entries.remove(key) {
            Some(Entry::Loading(Some(pushed)) | Entry::Loaded(Some(pushed)))
                if !newer(read.as_deref(), &pushed) =>
            {
                Some(pushed)
            }
            _ => read,
        };
        self.make_room(&mut entries);
        entries.insert(key.to_string(), Entry::Loaded(kept.clone()));
        kept
    }

    /// Gives up a miss whose store read failed: the next lookup reads again.
    pub fn abandon(&self, key: &str) {
        let mut entries = self.write();
        if let Some(Entry::Loading(_)) = entries.get(key) {
            entries.remove(key);
        }
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
        if entries.len() >= self.capacity
            && let Some(victim) = entries
                .iter()
                .find(|(_, e)| matches!(e, Entry::Loaded(_)))
                .map(|(k, _)| k.clone())
        {
            entries.remove(&victim);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The cache keys of every row of `rows`.
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
        let now: Arc<str> = now_iso8601().into();
        let mut entries = self.write();
        for i in cached {
            let Ok(json) = row_json(rows, i) else {
                continue;
            };
            let pushed = Arc::new(CachedRow {
                row: rows.slice(i, 1),
                json: json.into(),
                version: versions.filter(|v| v.is_valid(i)).map(|v| v.value(i)),
                updated_at: Some(Arc::clone(&now)),
            });
            if let Some(entry) = entries.get_mut(&keys[i]) {
                let (Entry::Loading(current) | Entry::Loaded(current)) = entry;
                // A store never applies an older version: neither does its cache.
                if current.as_ref().is_none_or(|c| newer(Some(&*pushed), c)) {
                    *current = Some(pushed);
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

    fn hit(cache: &ProfileCache, key: &str) -> Option<String> {
        match cache.get(key) {
            Cached::Hit(row) => row.map(|r| r.json.to_string()),
            Cached::Miss => panic!("expected {key} cached"),
        }
    }

    #[test]
    fn a_miss_then_a_hit_then_an_upsert_keeps_it_fresh() {
        let cache = ProfileCache::new(vec![0], 10);
        assert!(matches!(cache.get("u1"), Cached::Miss));
        cache.loaded("u1", Some(stored(3, 3)));
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
        assert!(matches!(cache.get("u1"), Cached::Miss));
        cache.upserted(&rows(&["u1"], &[7]), Some(&Int64Array::from(vec![7])));
        let kept = cache.loaded("u1", Some(stored(6, 6))).unwrap();
        assert_eq!(kept.version, Some(7));
        assert_eq!(hit(&cache, "u1").unwrap(), r#"{"user_id":"u1","events":7}"#);
    }

    #[test]
    fn unknown_keys_are_remembered_until_a_row_arrives_and_deletes_empty_the_cache() {
        let cache = ProfileCache::new(vec![0], 10);
        assert!(matches!(cache.get("u1"), Cached::Miss));
        assert!(cache.loaded("u1", None).is_none());
        assert_eq!(hit(&cache, "u1"), None);
        cache.upserted(&rows(&["u1"], &[1]), Some(&Int64Array::from(vec![1])));
        assert!(hit(&cache, "u1").is_some());
        cache.deleted();
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = ProfileCache::new(vec![0], 2);
        for key in ["a", "b", "c", "d"] {
            assert!(matches!(cache.get(key), Cached::Miss));
            cache.loaded(key, None);
        }
        assert!(cache.len() <= 2);
    }
}
