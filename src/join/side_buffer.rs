//! [`SideBuffer`]: the rows one input of a stream-stream join keeps, indexed by join key
//! and ordered by when they expire. A row expires once the other input's watermark has
//! passed every time a match for it could have; an outer side's row that never matched is
//! then handed back, to be emitted with NULLs.
//!
//! The index allocates nothing per key or row: the join interns keys into ids shared by
//! both sides ([`ByteKeys`](crate::stream::ByteKeys)), and each key's rows are a doubly
//! linked chain through one flat array of slots.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, internal_err};

/// A row in the buffer: (batch id, row).
pub type RowRef = (u64, u32);

/// The time of a row that arrived before its input's first watermark and has no time
/// column: it is timed by that watermark when it comes.
pub const UNTIMED: i64 = i64::MAX;

/// No slot, the end of a chain, or no key (a NULL one).
pub const NONE: u32 = u32::MAX;

/// A kept row in its key's chain.
#[derive(Clone, Copy)]
struct Slot {
    row: RowRef,
    key: u32,
    prev: u32,
    next: u32,
}

/// The first and last slot of a key's rows.
#[derive(Clone, Copy)]
struct Chain {
    head: u32,
    tail: u32,
}

const EMPTY: Chain = Chain {
    head: NONE,
    tail: NONE,
};

struct BufferedBatch {
    batch: RecordBatch,
    /// The slot of each row in its key's chain; [`NONE`] for a NULL key.
    slots: Vec<u32>,
    times: Vec<i64>,
    matched: Vec<bool>,
    /// Rows not yet expired.
    live: usize,
}

/// The kept rows of one join input.
pub struct SideBuffer {
    schema: SchemaRef,
    batches: HashMap<u64, BufferedBatch>,
    next_id: u64,
    /// Each key id's chain of rows.
    chains: Vec<Chain>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    /// (expiry time, row), earliest first: a row expires when the other side's watermark
    /// passes its expiry time.
    expiry: BinaryHeap<Reverse<(i64, u64, u32)>>,
    /// How long past its own time a row may still match: its expiry is its time plus this.
    keep: i64,
    /// Rows that arrived before their input's first watermark, without a time of their
    /// own: they are timed by that first watermark when it comes.
    untimed: Vec<RowRef>,
    bytes: usize,
}

impl SideBuffer {
    /// An empty buffer of rows of `schema`, each kept until `keep` past its time.
    pub fn new(schema: SchemaRef, keep: i64) -> Self {
        Self {
            schema,
            batches: HashMap::new(),
            next_id: 0,
            chains: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            expiry: BinaryHeap::new(),
            keep,
            untimed: Vec::new(),
            bytes: 0,
        }
    }

    /// The rows with key id `key`, oldest first.
    pub fn matches(&self, key: u32) -> impl Iterator<Item = RowRef> + '_ {
        let head = self
            .chains
            .get(key as usize)
            .map_or(NONE, |chain| chain.head);
        std::iter::successors((head != NONE).then_some(head), |&slot| {
            let next = self.slots[slot as usize].next;
            (next != NONE).then_some(next)
        })
        .map(|slot| self.slots[slot as usize].row)
    }

    /// True while rows with key id `key` are kept.
    pub fn holds_key(&self, key: u32) -> bool {
        self.chains
            .get(key as usize)
            .is_some_and(|chain| chain.head != NONE)
    }

    /// Links `row` at the end of key `key`'s chain; returns its slot.
    fn link(&mut self, key: u32, row: RowRef) -> u32 {
        if self.chains.len() <= key as usize {
            self.chains.resize(key as usize + 1, EMPTY);
        }
        let chain = self.chains[key as usize];
        let entry = Slot {
            row,
            key,
            prev: chain.tail,
            next: NONE,
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot as usize] = entry;
                slot
            }
            None => {
                self.slots.push(entry);
                (self.slots.len() - 1) as u32
            }
        };
        match chain.tail {
            NONE => self.chains[key as usize].head = slot,
            tail => self.slots[tail as usize].next = slot,
        }
        self.chains[key as usize].tail = slot;
        slot
    }

    /// Takes `slot` out of its key's chain; returns the key when it has no rows left.
    fn unlink(&mut self, slot: u32) -> Option<u32> {
        let Slot {
            key, prev, next, ..
        } = self.slots[slot as usize];
        match prev {
            NONE => self.chains[key as usize].head = next,
            prev => self.slots[prev as usize].next = next,
        }
        match next {
            NONE => self.chains[key as usize].tail = prev,
            next => self.slots[next as usize].prev = prev,
        }
        self.free_slots.push(slot);
        (self.chains[key as usize].head == NONE).then_some(key)
    }

    /// Keeps `batch`: its rows' key ids ([`NONE`] for a NULL key), times (event time of
    /// each row; `i64::MIN` for NULL) and which rows have matched already.
    pub fn insert(
        &mut self,
        batch: RecordBatch,
        keys: &[u32],
        times: Vec<i64>,
        matched: Vec<bool>,
    ) {
        if batch.num_rows() == 0 {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut slots = vec![NONE; batch.num_rows()];
        for row in 0..batch.num_rows() {
            if keys[row] != NONE {
                slots[row] = self.link(keys[row], (id, row as u32));
            }
            if times[row] == UNTIMED {
                self.untimed.push((id, row as u32));
                continue;
            }
            let expires = times[row].saturating_add(self.keep);
            self.expiry.push(Reverse((expires, id, row as u32)));
        }
        self.bytes += batch.get_array_memory_size() + times.len() * 13;
        self.batches.insert(
            id,
            BufferedBatch {
                live: batch.num_rows(),
                batch,
                slots,
                times,
                matched,
            },
        );
    }

    /// Times the rows that arrived before their input's first watermark by `watermark`.
    pub fn time_untimed(&mut self, watermark: i64) {
        for (id, row) in std::mem::take(&mut self.untimed) {
            let expires = watermark.saturating_add(self.keep);
            self.expiry.push(Reverse((expires, id, row)));
        }
    }

    /// Marks `rows` as matched; returns those that had not matched before, once each.
    pub fn mark_matched(&mut self, rows: &[RowRef]) -> Vec<RowRef> {
        let mut newly = Vec::new();
        for &(id, row) in rows {
            if let Some(buffered) = self.batches.get_mut(&id)
                && !buffered.matched[row as usize]
            {
                buffered.matched[row as usize] = true;
                newly.push((id, row));
            }
        }
        newly
    }

    /// Forgets every row whose expiry is before `watermark`; returns those that never
    /// matched, in expiry order. Appends to `emptied` the key ids left without rows.
    pub fn expire(&mut self, watermark: i64, emptied: &mut Vec<u32>) -> Vec<RowRef> {
        if watermark == i64::MAX {
            return self.expire_all(emptied);
        }
        let mut unmatched = Vec::new();
        while let Some(Reverse((expires, id, row))) = self.expiry.peek().copied() {
            // The end of input expires every row.
            if expires >= watermark && watermark != i64::MAX {
                break;
            }
            self.expiry.pop();
            let Some(buffered) = self.batches.get_mut(&id) else {
                continue;
            };
            let at = row as usize;
            let slot = buffered.slots[at];
            let matched = buffered.matched[at];
            buffered.live -= 1;
            if slot != NONE {
                emptied.extend(self.unlink(slot));
            }
            if !matched {
                unmatched.push((id, row));
            }
        }
        unmatched
    }

    /// The end of input: every row goes at once, without undoing the index row by row;
    /// returns those that never matched, in expiry order.
    fn expire_all(&mut self, emptied: &mut Vec<u32>) -> Vec<RowRef> {
        let untimed = std::mem::take(&mut self.untimed)
            .into_iter()
            .map(|(id, row)| Reverse((i64::MAX, id, row)));
        let mut unmatched: Vec<(i64, RowRef)> = std::mem::take(&mut self.expiry)
            .into_iter()
            .chain(untimed)
            .filter_map(|Reverse((expires, id, row))| {
                let buffered = self.batches.get(&id)?;
                (!buffered.matched[row as usize]).then_some((expires, (id, row)))
            })
            .collect();
        unmatched.sort_unstable();
        let held = self
            .chains
            .iter()
            .enumerate()
            .filter(|(_, c)| c.head != NONE);
        emptied.extend(held.map(|(key, _)| key as u32));
        self.chains = Vec::new();
        self.slots = Vec::new();
        self.free_slots = Vec::new();
        for buffered in self.batches.values_mut() {
            buffered.live = 0;
        }
        unmatched.into_iter().map(|(_, row)| row).collect()
    }

    /// Drops the batches whose rows have all expired, once their unmatched rows are out.
    pub fn release_expired(&mut self) {
        let mut freed = 0;
        self.batches.retain(|_, buffered| {
            let keep = buffered.live > 0;
            if !keep {
                freed += buffered.batch.get_array_memory_size() + buffered.times.len() * 13;
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
    }

    /// The columns of `rows`, in that order.
    pub fn columns(&self, rows: &[RowRef]) -> Result<Vec<ArrayRef>> {
        let mut ids: Vec<u64> = Vec::new();
        let mut slots: HashMap<u64, usize> = HashMap::new();
        let indices: Vec<(usize, usize)> = rows
            .iter()
            .map(|&(id, row)| {
                let slot = *slots.entry(id).or_insert_with(|| {
                    ids.push(id);
                    ids.len() - 1
                });
                (slot, row as usize)
            })
            .collect();
        let batches = ids
            .iter()
            .map(|id| match self.batches.get(id) {
                Some(buffered) => Ok(&buffered.batch),
                None => internal_err!("a join row names batch {id}, which is gone"),
            })
            .collect::<Result<Vec<&RecordBatch>>>()?;
        (0..self.schema.fields().len())
            .map(|column| {
                let arrays: Vec<&dyn Array> =
                    batches.iter().map(|b| b.column(column).as_ref()).collect();
                Ok(interleave(&arrays, &indices)?)
            })
            .collect()
    }

    /// NULL columns of this side's schema, `len` rows long.
    pub fn null_columns(schema: &SchemaRef, len: usize) -> Vec<ArrayRef> {
        schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), len))
            .collect()
    }

    /// The earliest time of a kept row, if any.
    pub fn earliest_time(&self) -> Option<i64> {
        self.expiry
            .peek()
            .map(|Reverse((expires, _, _))| expires.saturating_sub(self.keep))
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.bytes
            + self.chains.capacity() * size_of::<Chain>()
            + self.slots.capacity() * size_of::<Slot>()
            + self.expiry.len() * 24
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.expiry.len() + self.untimed.len()
    }

    /// The kept rows with a trailing `matched` column, for a checkpoint.
    pub fn snapshot(&self, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
        let mut live: HashMap<u64, Vec<u32>> = HashMap::new();
        let untimed = self.untimed.iter().map(|&(id, row)| (id, row));
        for (id, row) in self
            .expiry
            .iter()
            .map(|Reverse((_, id, row))| (*id, *row))
            .chain(untimed)
        {
            live.entry(id).or_default().push(row);
        }
        let mut ids: Vec<u64> = live.keys().copied().collect();
        ids.sort_unstable();
        let mut batches = Vec::with_capacity(ids.len());
        for id in ids {
            let (Some(buffered), Some(rows)) = (self.batches.get(&id), live.get_mut(&id)) else {
                continue;
            };
            rows.sort_unstable();
            let indices = UInt32Array::from(rows.clone());
            let mut columns: Vec<ArrayRef> = buffered
                .batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &indices, None))
                .collect::<std::result::Result<_, _>>()?;
            let matched: BooleanArray = rows
                .iter()
                .map(|&r| Some(buffered.matched[r as usize]))
                .collect();
            columns.push(Arc::new(matched));
            batches.push(RecordBatch::try_new(Arc::clone(schema), columns)?);
        }
        Ok(batches)
    }
}
