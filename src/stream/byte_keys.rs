//! A set of byte strings with stable 32-bit ids, laid out like Arrow's string views: each
//! id has a 16-byte view holding its length and, for keys of up to 12 bytes (user ids,
//! event ids), the bytes themselves; longer keys keep a prefix in the view and their bytes in
//! a shared buffer. A hash table of 8-byte entries (32 bits of hash, the id) finds them.
//! Comparing a short key is one 16-byte comparison and reading it back touches one view.
//!
//! Ids of removed keys are reused and the buffer is compacted once most of it is garbage, so
//! a set that keys come and go from (the users of the open windows) stays the size of what
//! it holds.

use std::hash::BuildHasher;

use datafusion::common::{Result, internal_err};
use hashbrown::{DefaultHashBuilder, HashTable};

/// Keys up to this long live in their view.
const INLINE: usize = 12;

/// A key's view: bytes 0..4 its length (`FREE` for a free id), then either the key itself
/// (zero-padded) or its first 4 bytes and its offset in the buffer.
type View = [u8; 16];

const FREE: u32 = u32::MAX;

/// Garbage below this many bytes is never worth a compaction.
const MIN_COMPACTION_BYTES: usize = 1 << 20;

fn view_len(view: &View) -> u32 {
    u32::from_le_bytes([view[0], view[1], view[2], view[3]])
}

fn view_offset(view: &View) -> usize {
    u32::from_le_bytes([view[8], view[9], view[10], view[11]]) as usize
}

/// The view of a key of at most [`INLINE`] bytes. Overlapping fixed-size copies instead of
/// a `memcpy` call of variable length: this runs once per row.
#[inline]
fn inline_view(key: &[u8]) -> View {
    let len = key.len();
    let mut view = [0u8; 16];
    view[..4].copy_from_slice(&(len as u32).to_le_bytes());
    if len >= 8 {
        view[4..12].copy_from_slice(&key[..8]);
        view[len..len + 4].copy_from_slice(&key[len - 4..]);
    } else if len >= 4 {
        view[4..8].copy_from_slice(&key[..4]);
        view[len..len + 4].copy_from_slice(&key[len - 4..]);
    } else {
        for (slot, &byte) in view[4..].iter_mut().zip(key) {
            *slot = byte;
        }
    }
    view
}

/// The view of a longer key whose bytes start at `offset` in the buffer.
fn buffer_view(key: &[u8], offset: u32) -> View {
    let mut view = [0u8; 16];
    view[..4].copy_from_slice(&(key.len() as u32).to_le_bytes());
    view[4..8].copy_from_slice(&key[..4]);
    view[8..12].copy_from_slice(&offset.to_le_bytes());
    view
}

/// Interns byte strings into stable ids.
#[derive(Default)]
pub struct ByteKeys {
    /// (low 32 bits of the key's hash, id)
    table: HashTable<(u32, u32)>,
    views: Vec<View>,
    /// The bytes of keys longer than [`INLINE`].
    bytes: Vec<u8>,
    free: Vec<u32>,
    /// Bytes of removed keys still in `bytes`.
    garbage: usize,
    hasher: DefaultHashBuilder,
}

/// The table's hash for a stored 32-bit hash: low bits pick the bucket, high bits tag it.
fn table_hash(short: u32) -> u64 {
    (short as u64) | ((short as u64) << 32)
}

impl ByteKeys {
    /// The id of `key`, added if it is new.
    #[inline]
    pub fn intern(&mut self, key: &[u8]) -> Result<u32> {
        let (found, short) = self.lookup(key);
        if let Some(id) = found {
            return Ok(id);
        }
        if key.len() <= INLINE {
            return self.insert(inline_view(key), short);
        }
        let Ok(offset) = u32::try_from(self.bytes.len()) else {
            return internal_err!("more than 4 GiB of group keys");
        };
        if u32::try_from(self.bytes.len() + key.len()).is_err() {
            return internal_err!("more than 4 GiB of group keys");
        }
        self.bytes.extend_from_slice(key);
        self.insert(buffer_view(key, offset), short)
    }

    /// The id of `key` if interned, and its short hash.
    #[inline]
    fn lookup(&self, key: &[u8]) -> (Option<u32>, u32) {
        if key.len() <= INLINE {
            let view = inline_view(key);
            let short = self.hasher.hash_one(u128::from_le_bytes(view)) as u32;
            let views = &self.views;
            let found = self.table.find(table_hash(short), |&(hash, id)| {
                hash == short && views[id as usize] == view
            });
            return (found.map(|&(_, id)| id), short);
        }
        let short = self.hasher.hash_one(key) as u32;
        let (views, bytes) = (&self.views, &self.bytes);
        let found = self.table.find(table_hash(short), |&(hash, id)| {
            let view = &views[id as usize];
            hash == short
                && view_len(view) as usize == key.len()
                && view[4..8] == key[..4]
                && bytes[view_offset(view)..view_offset(view) + key.len()] == *key
        });
        (found.map(|&(_, id)| id), short)
    }

    /// A new id that no key interns to (a null key, say); its bytes are empty.
    pub fn detached(&mut self) -> Result<u32> {
        self.store(inline_view(&[]))
    }

    /// The bytes of a live id.
    #[inline]
    pub fn get(&self, id: u32) -> &[u8] {
        let view = &self.views[id as usize];
        let len = view_len(view) as usize;
        match len <= INLINE {
            true => &view[4..4 + len],
            false => &self.bytes[view_offset(view)..view_offset(view) + len],
        }
    }

    /// Forgets `id` (interned or detached); the id may be handed out again.
    pub fn remove(&mut self, id: u32) {
        let Some(&view) = self.views.get(id as usize) else {
            return;
        };
        let len = view_len(&view);
        if len == FREE {
            return;
        }
        let short = match len as usize <= INLINE {
            true => self.hasher.hash_one(u128::from_le_bytes(view)),
            false => self.hasher.hash_one(self.get(id)),
        } as u32;
        if let Ok(entry) = self
            .table
            .find_entry(table_hash(short), |&(_, stored)| stored == id)
        {
            entry.remove();
        }
        self.views[id as usize] = [0; 16];
        self.views[id as usize][..4].copy_from_slice(&FREE.to_le_bytes());
        self.free.push(id);
        if len as usize > INLINE {
            self.garbage += len as usize;
            if self.garbage >= MIN_COMPACTION_BYTES && self.garbage * 2 > self.bytes.len() {
                self.compact();
            }
        }
    }

    /// The number of live ids.
    pub fn len(&self) -> usize {
        self.views.len() - self.free.len()
    }

    /// One more than the largest id handed out.
    pub fn id_bound(&self) -> usize {
        self.views.len()
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.table.capacity() * (size_of::<(u32, u32)>() + 1)
            + self.views.capacity() * size_of::<View>()
            + self.bytes.capacity()
            + self.free.capacity() * size_of::<u32>()
    }

    /// Appends the bytes of live ids to `out`, back to back, calling `end` with the length
    /// of `out` after each. A short key is copied from its view as a fixed-size word, which
    /// is several times faster than a `memcpy` call per key.
    pub fn copy_into(
        &self,
        ids: impl Iterator<Item = u32>,
        out: &mut Vec<u8>,
        mut end: impl FnMut(usize) -> Result<()>,
    ) -> Result<()> {
        for id in ids {
            let view = &self.views[id as usize];
            let len = view_len(view) as usize;
            if len <= INLINE {
                let at = out.len();
                out.extend_from_slice(&view[4..]);
                out.truncate(at + len);
            } else {
                out.extend_from_slice(&self.bytes[view_offset(view)..view_offset(view) + len]);
            }
            end(out.len())?;
        }
        Ok(())
    }

    fn insert(&mut self, view: View, short: u32) -> Result<u32> {
        let id = self.store(view)?;
        self.table
            .insert_unique(table_hash(short), (short, id), |&(hash, _)| {
                table_hash(hash)
            });
        Ok(id)
    }

    fn store(&mut self, view: View) -> Result<u32> {
        match self.free.pop() {
            Some(id) => {
                self.views[id as usize] = view;
                Ok(id)
            }
            None => {
                let Ok(id) = u32::try_from(self.views.len()) else {
                    return internal_err!("more than 4 billion group keys");
                };
                self.views.push(view);
                Ok(id)
            }
        }
    }

    /// Copies the live long keys into a buffer of their own size.
    fn compact(&mut self) {
        let mut bytes = Vec::with_capacity(self.bytes.len() - self.garbage);
        for view in self.views.iter_mut() {
            let len = view_len(view);
            if len == FREE || len as usize <= INLINE {
                continue;
            }
            let offset = view_offset(view);
            view[8..12].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&self.bytes[offset..offset + len as usize]);
        }
        self.bytes = bytes;
        self.garbage = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_share_an_id_and_detached_ids_match_nothing() {
        let mut keys = ByteKeys::default();
        let a = keys.intern(b"a").unwrap();
        let empty = keys.detached().unwrap();
        assert_eq!(keys.intern(b"a").unwrap(), a);
        assert_ne!(keys.intern(b"").unwrap(), empty);
        assert_eq!(keys.get(a), b"a");
        assert_eq!(keys.len(), 3);
    }

    #[test]
    fn keys_of_every_length_round_trip_and_stay_distinct() {
        let mut keys = ByteKeys::default();
        let text = b"abcdefghijklmnopqrstuvwxyz";
        let mut ids = Vec::new();
        for len in 0..=20 {
            ids.push(keys.intern(&text[..len]).unwrap());
            // Same length, one byte different at the end.
            let mut other = text[..len].to_vec();
            if let Some(last) = other.last_mut() {
                *last = b'_';
                assert_ne!(keys.intern(&other).unwrap(), ids[len]);
            }
        }
        for (len, &id) in ids.iter().enumerate() {
            assert_eq!(keys.get(id), &text[..len]);
            assert_eq!(keys.intern(&text[..len]).unwrap(), id);
        }
        for &id in &ids {
            keys.remove(id);
        }
        assert_eq!(keys.len(), 20);
        assert_eq!(
            keys.intern(b"abcdefghijkl").unwrap(),
            ids[20],
            "the last freed id"
        );
    }

    #[test]
    fn copies_short_long_and_trailing_keys_exactly() {
        let mut keys = ByteKeys::default();
        let long = "a key longer than one sixteen-byte word";
        let ids: Vec<u32> = ["u1", long, "", "user-000000000042", "z"]
            .iter()
            .map(|k| keys.intern(k.as_bytes()).unwrap())
            .collect();
        let mut out = Vec::new();
        let mut ends = Vec::new();
        let order = [ids[4], ids[1], ids[2], ids[0], ids[3], ids[4]];
        keys.copy_into(order.into_iter(), &mut out, |end| {
            ends.push(end);
            Ok(())
        })
        .unwrap();
        let expected = format!("z{long}u1user-000000000042z");
        assert_eq!(out, expected.as_bytes());
        assert_eq!(
            ends,
            vec![
                1,
                1 + long.len(),
                1 + long.len(),
                3 + long.len(),
                20 + long.len(),
                21 + long.len()
            ]
        );
    }

    #[test]
    fn removed_ids_are_reused_and_compaction_keeps_live_keys() {
        let mut keys = ByteKeys::default();
        let names: Vec<String> = (0..200_000).map(|i| format!("user-{i:08}")).collect();
        let ids: Vec<u32> = names
            .iter()
            .map(|n| keys.intern(n.as_bytes()).unwrap())
            .collect();
        // Removing all but every tenth key leaves mostly garbage, which compaction drops.
        for (i, &id) in ids.iter().enumerate() {
            if i % 10 != 0 {
                keys.remove(id);
            }
        }
        assert_eq!(keys.len(), 20_000);
        assert!(keys.bytes.len() < 20_000 * 13 + MIN_COMPACTION_BYTES);
        for (i, name) in names.iter().enumerate().step_by(10) {
            assert_eq!(keys.get(ids[i]), name.as_bytes());
            assert_eq!(keys.intern(name.as_bytes()).unwrap(), ids[i]);
        }
        let again = keys.intern(b"user-00000001").unwrap();
        assert!(again < 200_000, "a freed id is reused");
        assert_eq!(keys.id_bound(), 200_000);
        assert_eq!(keys.get(again), b"user-00000001");
    }
}
