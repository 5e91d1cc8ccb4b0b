//! A set of byte strings with stable 32-bit ids, laid out like Arrow's string views: each
//! id has a 16-byte view holding its length and, for keys of up to 12 bytes (user ids,
//! event ids), the bytes themselves; longer keys keep a prefix in the view and their bytes in
//! a shared buffer. Comparing a short key is one 16-byte comparison and reading it back
//! touches one view.
//!
//! The ids are found through an open-addressing table of 4-byte slots (the id), probed
//! linearly and at most half full, with a one-byte tag per slot in an array of its own
//! (zero for an empty slot, else seven bits of the hash); a lookup compares the eight tags
//! from its home slot on in one word, so how far it probes costs no mispredicted branch.
//! A window's tags fit in the
//! core's cache where its slots do not: a key new to the table (most of a window's rows) is
//! found absent from its tags alone, without waiting on its slot, and clearing the table
//! clears only the tags. A set of keys larger than the core's cache still costs a miss per
//! key found, in the slot and in the view, so [`ByteKeys::intern_all`] looks a batch up in
//! a pipeline: the tag and slot of a key some rows ahead are fetched into the cache, then
//! the view its slot points at, and the key is looked up once they are there. The fetches
//! are hints; the lookups themselves are the plain ones. Each key is read and hashed once,
//! a new short key's view goes from registers straight to its place, and what a lookup
//! reads of the set stays in registers between inserts.
//!
//! A removed key's slot is tagged removed, and its id is reused. When removed and live slots
//! together fill half the table, it is built again from the views, read in id order: at the
//! same size if few keys are live, else at twice the size. The buffer is compacted once most
//! of it is garbage. So a set that keys come and go from (the users of the open windows)
//! stays the size of what it holds.

mod lookup;

use datafusion::common::{Result, internal_err};

use lookup::{KeyHashing, Pending, Table};

/// Keys up to this long live in their view.
const INLINE: usize = 12;

/// A key's view: bytes 0..4 its length (`FREE` for a free id), then either the key itself
/// (zero-padded) or its first 4 bytes and its offset in the buffer.
type View = [u8; 16];

const FREE: u32 = u32::MAX;

/// A slot of the table: the id of the key it holds (its tag says whether it holds one).
type Slot = u32;

/// The tag of a slot no key holds; what a slot holds is read only when its tag is not.
const EMPTY: u8 = 0;

/// The tag of a slot whose key was removed: lookups pass over it, as over a slot of another
/// key, and a rebuild of the table sweeps it out.
const REMOVED: u8 = 1;

/// The tag of a slot holding a key whose short hash is `short`: its top seven bits, with
/// the high bit set so that it is never [`EMPTY`]. The home slot comes from the low bits.
fn tag(short: u32) -> u8 {
    (short >> 25) as u8 | 0x80
}

/// The table's size before its first growth.
const MIN_SLOTS: usize = 16;

/// How many rows ahead [`ByteKeys::intern_all`] fetches a key's view (and twice that, its
/// slot).
const AHEAD: usize = 16;

/// Garbage below this many bytes is never worth a compaction.
const MIN_COMPACTION_BYTES: usize = 1 << 20;

fn view_len(view: &View) -> u32 {
    u32::from_le_bytes([view[0], view[1], view[2], view[3]])
}

fn view_offset(view: &View) -> usize {
    u32::from_le_bytes([view[8], view[9], view[10], view[11]]) as usize
}

/// The bytes, in the buffer `bytes`, of the key longer than [`INLINE`] whose view is `view`.
fn long_key<'b>(view: &View, bytes: &'b [u8]) -> &'b [u8] {
    let offset = view_offset(view);
    &bytes[offset..offset + view_len(view) as usize]
}

/// The view of a key of at most [`INLINE`] bytes, as one 128-bit word built in registers
/// from two overlapping loads: a view assembled byte by byte in memory and read back whole
/// stalls the core, and this runs once per row.
#[inline]
fn inline_word(key: &[u8]) -> u128 {
    let len = key.len();
    let load = |at: usize, n: usize| {
        let mut word = [0u8; 8];
        word[..n].copy_from_slice(&key[at..at + n]);
        u64::from_le_bytes(word)
    };
    let bytes: u128 = if len >= 8 {
        // The first eight bytes, and the last four shifted to sit right after them.
        let tail = load(len - 4, 4) >> (8 * (12 - len));
        load(0, 8) as u128 | ((tail as u128) << 64)
    } else if len >= 4 {
        let tail = load(len - 4, 4) >> (8 * (8 - len));
        (load(0, 4) | (tail << 32)) as u128
    } else {
        key.iter()
            .rev()
            .fold(0u128, |word, &byte| (word << 8) | byte as u128)
    };
    len as u128 | (bytes << 32)
}

/// Whether a word of [`KeyHashing::word_and_hash`] is a short key's view (whose first four
/// bytes are the key's length) rather than a longer key's length alone.
#[inline]
fn is_inline(word: u128) -> bool {
    word as u32 as usize <= INLINE
}

fn inline_view(key: &[u8]) -> View {
    inline_word(key).to_le_bytes()
}

/// The view of a longer key whose bytes start at `offset` in the buffer.
fn buffer_view(key: &[u8], offset: u32) -> View {
    let mut view = [0u8; 16];
    view[..4].copy_from_slice(&(key.len() as u32).to_le_bytes());
    view[4..8].copy_from_slice(&key[..4]);
    view[8..12].copy_from_slice(&offset.to_le_bytes());
    view
}

/// The most keys a table of `slots` slots holds before it doubles: one in two.
fn max_load(slots: usize) -> usize {
    slots / 2
}

/// The slots of a table with room for `keys` keys.
fn slots_for(keys: usize) -> usize {
    (keys * 2).next_power_of_two().max(MIN_SLOTS)
}

/// Interns byte strings into stable ids.
pub struct ByteKeys {
    /// Open addressing, linear probing; a power of two long, at most half full.
    slots: Vec<Slot>,
    /// By slot: its [`tag`], or [`EMPTY`].
    tags: Vec<u8>,
    /// Slots that are not [`EMPTY`]: they hold a key, or held a removed one.
    occupied: usize,
    views: Vec<View>,
    /// The bytes of keys longer than [`INLINE`].
    bytes: Vec<u8>,
    free: Vec<u32>,
    /// Ids handed out by [`Self::detached`], which have no slot.
    detached: Vec<u32>,
    /// Bytes of removed keys still in `bytes`.
    garbage: usize,
    /// The bytes of the live keys, long and short: what [`Self::copy_into`] copies for all
    /// of them.
    key_bytes: usize,
    hashing: KeyHashing,
}

impl Default for ByteKeys {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl ByteKeys {
    /// A set with room for `keys` keys before it grows.
    pub fn with_capacity(keys: usize) -> Self {
        let slots = slots_for(keys);
        Self {
            slots: vec![0; slots],
            tags: vec![EMPTY; slots],
            occupied: 0,
            views: Vec::with_capacity(keys),
            bytes: Vec::new(),
            free: Vec::new(),
            detached: Vec::new(),
            garbage: 0,
            key_bytes: 0,
            hashing: KeyHashing::new(),
        }
    }

    /// Forgets every key, keeping room for as many as were held: the next window's keys
    /// are written over memory already mapped and in the cache.
    pub fn clear(&mut self) {
        let room = slots_for(self.len());
        match self.slots.len() > 2 * room {
            true => (self.slots, self.tags) = (vec![0; room], vec![EMPTY; room]),
            false => self.tags.fill(EMPTY),
        }
        self.occupied = 0;
        self.views.clear();
        self.bytes.clear();
        self.free.clear();
        self.detached.clear();
        self.garbage = 0;
        self.key_bytes = 0;
    }

    /// The id of `key`, added if it is new.
    #[inline]
    pub fn intern(&mut self, key: &[u8]) -> Result<u32> {
        self.check_room(1)?;
        let table = self.table();
        let pending = table.pending(key);
        match table.find(&pending) {
            Ok(id) => Ok(id),
            Err(at) => self.insert_new(at, &pending),
        }
    }

    /// Calls `found` with the id of each of `keys`, in order, adding new ones. The same as
    /// [`Self::intern`] on each, with the cache misses of keys a few rows apart overlapped.
    #[inline]
    pub fn intern_all<'k>(
        &mut self,
        mut keys: impl ExactSizeIterator<Item = &'k [u8]>,
        mut found: impl FnMut(u32),
    ) -> Result<()> {
        let count = keys.len();
        self.check_room(count)?;
        let mut table = self.table();
        // Keys `i` to `i + 2 * AHEAD`, by `i % (2 * AHEAD)`: each is read and hashed once.
        let mut ahead = [Pending::default(); 2 * AHEAD];
        for (pending, key) in ahead.iter_mut().zip(keys.by_ref()) {
            *pending = table.fetch_slot(key);
        }
        for i in 0..count {
            let place = i % (2 * AHEAD);
            let pending = ahead[place];
            // Key `i + 2 * AHEAD` takes the place of key `i`.
            if let Some(key) = keys.next() {
                ahead[place] = table.fetch_slot(key);
            }
            if i + AHEAD < count {
                table.fetch_view(ahead[(i + AHEAD) % (2 * AHEAD)].short);
            }
            let id = match table.find(&pending) {
                Ok(id) => id,
                Err(at) => {
                    let id = self.insert_new(at, &pending)?;
                    table = self.table();
                    id
                }
            };
            found(id);
        }
        Ok(())
    }

    /// Fails unless `count` more keys can each have an id of their own (ids stop short of
    /// `u32::MAX`), so that adding a key never fails past this point.
    fn check_room(&self, count: usize) -> Result<()> {
        match self.views.len().checked_add(count) {
            Some(ids) if ids < u32::MAX as usize => Ok(()),
            _ => internal_err!("more than 4 billion group keys"),
        }
    }

    /// What lookups read until the next insert.
    #[inline(always)]
    fn table(&self) -> Table<'_> {
        Table::new(self)
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Gives the key of `pending`, absent from the table, an id and puts it in the empty
    /// slot `at`. [`Self::check_room`] has made room for its id.
    #[inline(always)]
    fn insert_new(&mut self, at: usize, pending: &Pending) -> Result<u32> {
        let view = match is_inline(pending.word) {
            true => pending.word.to_le_bytes(),
            false => self.append_long(pending.key)?,
        };
        Ok(self.insert(at, pending.short, view, pending.key.len()))
    }

    /// Gives `view` (of a key `len` bytes long) an id and puts it in the empty slot `at`.
    /// Inlined, so that a short key's view goes from registers to its place: passed through
    /// memory and read back whole, it would stall the core on every new key.
    #[inline(always)]
    fn insert(&mut self, at: usize, short: u32, view: View, len: usize) -> u32 {
        self.key_bytes += len;
        let id = self.store(view);
        self.slots[at] = id;
        self.tags[at] = tag(short);
        self.occupied += 1;
        if self.occupied > max_load(self.slots.len()) {
            self.rebuild();
        }
        id
    }

    /// Appends a key longer than [`INLINE`] to the buffer: its view.
    fn append_long(&mut self, key: &[u8]) -> Result<View> {
        let Ok(offset) = u32::try_from(self.bytes.len()) else {
            return internal_err!("more than 4 GiB of group keys");
        };
        if u32::try_from(self.bytes.len() + key.len()).is_err() {
            return internal_err!("more than 4 GiB of group keys");
        }
        self.bytes.extend_from_slice(key);
        Ok(buffer_view(key, offset))
    }

    /// Builds the table again from the views, in id order, sweeping out the slots of removed
    /// keys: at the same size when fewer than a quarter of its slots hold keys, else at
    /// twice the size. The views are read in order, each key hashed again from its view.
    fn rebuild(&mut self) {
        let keys = self.len() - self.detached.len();
        let size = match keys < max_load(self.slots.len()) / 2 {
            true => self.slots.len(),
            false => self.slots.len() * 2,
        };
        self.slots = vec![0; size];
        self.tags = vec![EMPTY; size];
        self.occupied = keys;
        let mask = size - 1;
        for (id, view) in self.views.iter().enumerate() {
            let id = id as u32;
            if view_len(view) == FREE || self.detached.contains(&id) {
                continue;
            }
            let short = self.hashing.view_hash(view, &self.bytes);
            let mut at = short as usize & mask;
            while self.tags[at] != EMPTY {
                at = (at + 1) & mask;
            }
            self.slots[at] = id;
            self.tags[at] = tag(short);
        }
    }

    /// A new id that no key interns to (a null key, say); its bytes are empty.
    pub fn detached(&mut self) -> Result<u32> {
        self.check_room(1)?;
        let id = self.store(inline_view(&[]));
        self.detached.push(id);
        Ok(id)
    }

    /// The bytes of a live id.
    #[inline]
    pub fn get(&self, id: u32) -> &[u8] {
        let view = &self.views[id as usize];
        let len = view_len(view) as usize;
        match len <= INLINE {
            true => &view[4..4 + len],
            false => long_key(view, &self.bytes),
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
        match self.detached.iter().position(|&detached| detached == id) {
            Some(at) => _ = self.detached.swap_remove(at),
            None => self.unslot(self.hashing.view_hash(&view, &self.bytes), id),
        }
        self.views[id as usize] = [0; 16];
        self.views[id as usize][..4].copy_from_slice(&FREE.to_le_bytes());
        self.free.push(id);
        self.key_bytes -= len as usize;
        if len as usize > INLINE {
            self.garbage += len as usize;
            if self.garbage >= MIN_COMPACTION_BYTES && self.garbage * 2 > self.bytes.len() {
                self.compact();
            }
        }
    }

    /// Marks the slot of `id` removed, if it has one (a detached id has none).
    fn unslot(&mut self, short: u32, id: u32) {
        let mask = self.mask();
        let mut at = short as usize & mask;
        loop {
            match self.tags[at] {
                EMPTY => return,
                held if held == tag(short) && self.slots[at] == id => {
                    self.tags[at] = REMOVED;
                    return;
                }
                _ => at = (at + 1) & mask,
            }
        }
    }

    /// The bytes of all live keys together.
    pub fn key_bytes(&self) -> usize {
        self.key_bytes
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
        self.slots.capacity() * size_of::<Slot>()
            + self.tags.capacity()
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
        mut end: impl FnMut(usize),
    ) {
        for id in ids {
            let view = &self.views[id as usize];
            let len = view_len(view) as usize;
            if len <= INLINE {
                let at = out.len();
                out.extend_from_slice(&view[4..]);
                out.truncate(at + len);
            } else {
                out.extend_from_slice(long_key(view, &self.bytes));
            }
            end(out.len());
        }
    }

    /// A new id for `view`, a freed one if there is one. [`Self::check_room`] has made room.
    #[inline(always)]
    fn store(&mut self, view: View) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.views[id as usize] = view;
                id
            }
            None => {
                self.views.push(view);
                (self.views.len() - 1) as u32
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
        keys.copy_into(order.into_iter(), &mut out, |end| ends.push(end));
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

    #[test]
    fn keys_coming_and_going_stay_found_as_a_map_finds_them() {
        let mut keys = ByteKeys::default();
        let mut model: std::collections::HashMap<Vec<u8>, u32> = Default::default();
        // A small xorshift, so that the run is the same every time.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..200 {
            // A batch through the pipelined path, then removals of about a third.
            let batch: Vec<Vec<u8>> = (0..500)
                .map(|_| {
                    let n = next() % 3000;
                    match n % 5 {
                        0 => format!("a long key number {n:08} of many bytes").into_bytes(),
                        _ => format!("u{n}").into_bytes(),
                    }
                })
                .collect();
            let mut ids = Vec::new();
            keys.intern_all(batch.iter().map(Vec::as_slice), |id| ids.push(id))
                .unwrap();
            for (key, id) in batch.iter().zip(&ids) {
                assert_eq!(*model.entry(key.clone()).or_insert(*id), *id, "{round}");
                assert_eq!(keys.get(*id), key.as_slice());
            }
            let gone: Vec<Vec<u8>> = model.keys().filter(|_| next() % 3 == 0).cloned().collect();
            for key in gone {
                keys.remove(model.remove(&key).unwrap());
            }
            assert_eq!(keys.len(), model.len());
            let key_bytes: usize = model.keys().map(|key| key.len()).sum();
            assert_eq!(keys.key_bytes(), key_bytes, "{round}");
            for (key, &id) in &model {
                assert_eq!(keys.intern(key).unwrap(), id, "{round}");
            }
        }
    }

    #[test]
    fn keys_coming_and_going_keep_the_table_its_size_and_detached_ids_apart() {
        let mut keys = ByteKeys::default();
        let detached = keys.detached().unwrap();
        for round in 0..100 {
            let ids: Vec<u32> = (0..1000)
                .map(|i| keys.intern(format!("u{round}-{i}").as_bytes()).unwrap())
                .collect();
            for id in ids {
                keys.remove(id);
            }
        }
        assert_eq!(keys.len(), 1);
        assert!(keys.slots.len() <= 4096, "{} slots", keys.slots.len());
        assert_ne!(keys.intern(b"").unwrap(), detached);
        let again = keys.intern(b"u99-999").unwrap();
        assert_eq!(keys.intern(b"u99-999").unwrap(), again);
        assert_eq!(keys.len(), 3);
    }

    #[test]
    fn a_cleared_set_starts_over_with_its_room_kept() {
        let mut keys = ByteKeys::default();
        let names: Vec<String> = (0..10_000).map(|i| format!("user {i} of many")).collect();
        keys.intern_all(names.iter().map(String::as_bytes), |_| {})
            .unwrap();
        let slots = keys.slots.len();
        keys.clear();
        assert_eq!((keys.len(), keys.id_bound(), keys.key_bytes()), (0, 0, 0));
        assert_eq!(keys.slots.len(), slots, "room for as many keys is kept");
        assert_eq!(keys.intern(names[9_999].as_bytes()).unwrap(), 0);
        assert_eq!(keys.get(0), names[9_999].as_bytes());
        assert_eq!(keys.intern(b"u1").unwrap(), 1);
    }
}
