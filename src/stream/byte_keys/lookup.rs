//! How [`ByteKeys`] finds a key: its hashing, a key on its way through the lookup
//! pipeline, and the table a lookup reads, borrowed from the set between two inserts.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

use super::{ByteKeys, EMPTY, INLINE, Slot, View, inline_word, is_inline, long_key, tag, view_len};

/// Asks the core to bring the line holding `value` into its cache; a hint only, so
/// `value` need not point into anything.
#[inline(always)]
fn prefetch<T>(value: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and never faults, whatever the
    // address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(value.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// How keys are hashed: short keys by one folded multiply of their view, longer ones by
/// the set's random hasher. Both draw on seeds of the set's own.
pub(super) struct KeyHashing {
    hasher: DefaultHashBuilder,
    /// The seeds of [`Self::hash_word`], drawn from `hasher`.
    seeds: [u64; 2],
}

impl KeyHashing {
    pub(super) fn new() -> Self {
        let hasher = DefaultHashBuilder::default();
        Self {
            seeds: [hasher.hash_one(1u8), hasher.hash_one(2u8)],
            hasher,
        }
    }

    /// A short key's view as a word, or a longer key's length alone (see [`is_inline`]),
    /// and the key's short hash.
    #[inline(always)]
    pub(super) fn word_and_hash(&self, key: &[u8]) -> (u128, u32) {
        match key.len() <= INLINE {
            true => {
                let word = inline_word(key);
                (word, self.hash_word(word))
            }
            false => (key.len() as u128, self.hasher.hash_one(key) as u32),
        }
    }

    /// The short hash of the key of `view`, whose bytes, if it is longer than [`INLINE`], are
    /// in `bytes`.
    pub(super) fn view_hash(&self, view: &View, bytes: &[u8]) -> u32 {
        match view_len(view) as usize <= INLINE {
            true => self.hash_word(u128::from_le_bytes(*view)),
            false => self.hasher.hash_one(long_key(view, bytes)) as u32,
        }
    }

    /// The short hash of a short key's word: one folded multiply of its two halves, each
    /// mixed with a seed.
    #[inline(always)]
    fn hash_word(&self, word: u128) -> u32 {
        let [low_seed, high_seed] = self.seeds;
        let product =
            ((word as u64 ^ low_seed) as u128) * (((word >> 64) as u64 ^ high_seed) as u128);
        (product as u64 ^ (product >> 64) as u64) as u32
    }
}

/// A key on its way to its id: read and hashed once, its slot fetched some rows before it
/// is looked up.
#[derive(Clone, Copy, Default)]
pub(super) struct Pending<'k> {
    /// As [`KeyHashing::word_and_hash`] gives it.
    pub(super) word: u128,
    pub(super) short: u32,
    pub(super) key: &'k [u8],
}

/// What a lookup reads, borrowed from the set between two inserts: held in registers
/// rather than read again from the set after every store, with slots indexed by a masked
/// position and so never out of bounds.
#[derive(Clone, Copy)]
pub(super) struct Table<'a> {
    /// Both `mask + 1` long.
    tags: &'a [u8],
    slots: &'a [Slot],
    views: &'a [View],
    bytes: &'a [u8],
    mask: usize,
    hashing: &'a KeyHashing,
}

impl<'a> Table<'a> {
    /// What lookups in `keys` read until its next insert.
    #[inline(always)]
    pub(super) fn new(keys: &'a ByteKeys) -> Self {
        let mask = keys.mask();
        Table {
            tags: &keys.tags[..=mask],
            slots: &keys.slots[..=mask],
            views: &keys.views,
            bytes: &keys.bytes,
            mask,
            hashing: &keys.hashing,
        }
    }

    /// `key`, read and hashed.
    #[inline(always)]
    pub(super) fn pending<'k>(&self, key: &'k [u8]) -> Pending<'k> {
        let (word, short) = self.hashing.word_and_hash(key);
        Pending { word, short, key }
    }

    /// `key`, read and hashed, its home tag and slot fetched into the cache.
    #[inline(always)]
    pub(super) fn fetch_slot<'k>(&self, key: &'k [u8]) -> Pending<'k> {
        let pending = self.pending(key);
        let home = pending.short as usize & self.mask;
        prefetch(self.tags.as_ptr().wrapping_add(home));
        prefetch(self.slots.as_ptr().wrapping_add(home));
        pending
    }

    /// The tag of the slot at `position` (masked).
    #[inline(always)]
    fn tag(&self, position: usize) -> u8 {
        let at = position & self.mask;
        // SAFETY: `at` is at most `mask`, and `tags` is `mask + 1` long (`Self::new`).
        unsafe { *self.tags.get_unchecked(at) }
    }

    /// The id in the slot at `position` (masked).
    #[inline(always)]
    fn slot(&self, position: usize) -> u32 {
        let at = position & self.mask;
        // SAFETY: as for `tag`: `slots` is `mask + 1` long.
        unsafe { *self.slots.get_unchecked(at) }
    }

    /// Fetches into the cache the view of the key whose short hash is `short`, if its home
    /// slot holds one of that tag (the tag and slot were fetched some rows before); else the
    /// end of the views, where a new key's goes. Chosen without a branch: which of the two
    /// it is varies from row to row (most of a window's rows are new to it).
    #[inline(always)]
    pub(super) fn fetch_view(&self, short: u32) {
        let id = std::hint::select_unpredictable(
            self.tag(short as usize) == tag(short),
            self.slot(short as usize) as usize,
            self.views.len(),
        );
        // A hint: an address past the views is never read.
        prefetch(self.views.as_ptr().wrapping_add(id));
    }

    /// The id of the key of `pending`; else the empty slot where it would go.
    #[inline(always)]
    pub(super) fn find(&self, pending: &Pending) -> Result<u32, usize> {
        match is_inline(pending.word) {
            true => self.probe(pending.short, |view| {
                u128::from_le_bytes(*view) == pending.word
            }),
            false => {
                let key = pending.key;
                self.probe(pending.short, |view| {
                    view_len(view) as usize == key.len()
                        && view[4..8] == key[..4]
                        && long_key(view, self.bytes) == key
                })
            }
        }
    }

    /// The id in the slot whose tag is `short`'s and whose view `holds_key`; else the
    /// empty slot where such a key would go. The eight tags from the home slot on are
    /// compared at once, so that how far a probe goes costs no mispredicted branch.
    #[inline(always)]
    fn probe(&self, short: u32, holds_key: impl Fn(&View) -> bool) -> Result<u32, usize> {
        let home = short as usize & self.mask;
        let Some(group) = self.tags.get(home..home + 8) else {
            // The last seven slots: probed one at a time, wrapping around.
            return self.probe_from(home, short, holds_key);
        };
        let group = u64::from_le_bytes([
            group[0], group[1], group[2], group[3], group[4], group[5], group[6], group[7],
        ]);
        let empty = zero_bytes(group);
        // The key can only be before the first empty slot.
        let before_empty = match empty {
            0 => u64::MAX,
            _ => (empty & empty.wrapping_neg()) - 1,
        };
        let mut candidates = zero_bytes(group ^ (tag(short) as u64 * LOW_BYTES)) & before_empty;
        while candidates != 0 {
            let id = self.slot(home + candidates.trailing_zeros() as usize / 8);
            if holds_key(&self.views[id as usize]) {
                return Ok(id);
            }
            candidates &= candidates - 1;
        }
        match empty {
            0 => self.probe_from(home + 8, short, holds_key),
            _ => Err(home + empty.trailing_zeros() as usize / 8),
        }
    }

    /// [`Self::probe`] one slot at a time, from the slot at `position` (masked) on.
    #[cold]
    fn probe_from(
        &self,
        position: usize,
        short: u32,
        holds_key: impl Fn(&View) -> bool,
    ) -> Result<u32, usize> {
        let tag = tag(short);
        let mut at = position;
        loop {
            let held = self.tag(at);
            if held == EMPTY {
                return Err(at & self.mask);
            }
            if held == tag {
                let id = self.slot(at);
                if holds_key(&self.views[id as usize]) {
                    return Ok(id);
                }
            }
            at = at.wrapping_add(1);
        }
    }
}

/// A one in the lowest bit of every byte of a word.
const LOW_BYTES: u64 = 0x0101_0101_0101_0101;

/// The high bit of the lowest zero byte of `word` set, and perhaps of bytes above it; no
/// other bits. Its lowest set bit marks exactly the first zero byte.
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(LOW_BYTES) & !word & (LOW_BYTES << 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_flagged_byte_is_the_first_zero_byte() {
        let words = [
            0,
            1,
            0x0100,
            0x0001_0000_0000_0000,
            0xff00_0000_0000_0001,
            0x0101_0101_0101_0100,
            0x8080_8080_8080_8080,
            u64::MAX,
        ];
        for word in words {
            let first = word.to_le_bytes().iter().position(|&byte| byte == 0);
            let flagged = zero_bytes(word);
            let lowest = (flagged != 0).then_some(flagged.trailing_zeros() as usize / 8);
            assert_eq!(lowest, first, "{word:#x}");
        }
    }
}
