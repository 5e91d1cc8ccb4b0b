//! Open windows of `SESSION`, kept incrementally: each row joins (or merges) the open
//! sessions of its key that it falls within the gap of, as it arrives, so a watermark only
//! visits the sessions it closes. A session closes once its last row plus the gap, plus the
//! allowed lateness, is at or below the watermark; its rows then get their real
//! `window_start` and `window_end` and go through one aggregation with the other sessions
//! closed at that watermark.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, interleave};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::Result;
use datafusion::physical_expr::PhysicalExpr;

use super::constant_arrays::ConstantArrays;
use super::grouped::{AggregateExprs, GroupedAggregation};
use crate::stream::{ByteKeys, Watermark, nanos_values, time_array_from_nanos};

/// A row held: (batch id, row).
type RowRef = (u64, u32);

/// An open session of one key.
struct Session {
    key: u32,
    /// The earliest row's time, and the latest row's time plus the gap.
    start: i64,
    end: i64,
    rows: Vec<RowRef>,
}

/// A batch whose rows wait in open sessions.
struct HeldBatch {
    batch: RecordBatch,
    /// Rows still in an open session.
    held: Vec<bool>,
    live: usize,
}

/// Session windows of one aggregate.
pub struct SessionWindows {
    /// GROUP BY keys other than the window columns: they define whose session a row is in.
    session_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The whole aggregation, window columns included as keys.
    exprs: AggregateExprs,
    /// Literal arguments, kept as arrays across batches.
    constants: ConstantArrays,
    input: SchemaRef,
    output: SchemaRef,
    /// Input column indices of `window_start` and `window_end` (each row's event time and
    /// event time + gap, as the scan assigned them).
    start_column: usize,
    end_column: usize,
    /// Input column index of `window_time`, when the aggregation groups by it.
    time_column: Option<usize>,
    gap: i64,
    lateness: i64,
    converter: Option<RowConverter>,
    keys: ByteKeys,
    batches: HashMap<u64, HeldBatch>,
    next_batch: u64,
    /// Open sessions by id; closed ones leave a free slot.
    sessions: Vec<Option<Session>>,
    free: Vec<u32>,
    /// The open sessions of each key.
    by_key: HashMap<u32, Vec<u32>>,
    /// (end, session): a session closes when the watermark passes its end plus the
    /// lateness. Entries whose session has since grown or merged are skipped.
    closing: BinaryHeap<Reverse<(i64, u32)>>,
    /// (start, session), for the earliest time held; stale entries likewise.
    starts: BinaryHeap<Reverse<(i64, u32)>>,
    held_rows: usize,
    held_bytes: usize,
}

impl SessionWindows {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        session_keys: Vec<Arc<dyn PhysicalExpr>>,
        exprs: AggregateExprs,
        input: SchemaRef,
        output: SchemaRef,
        start_column: usize,
        end_column: usize,
        time_column: Option<usize>,
        gap: i64,
        lateness: i64,
    ) -> Result<Self> {
        let converter = match session_keys.is_empty() {
            true => None,
            false => Some(RowConverter::new(
                session_keys
                    .iter()
                    .map(|k| Ok(SortField::new(k.data_type(&input)?)))
                    .collect::<Result<_>>()?,
            )?),
        };
        Ok(Self {
            session_keys,
            exprs,
            constants: ConstantArrays::default(),
            input,
            output,
            start_column,
            end_column,
            time_column,
            gap,
            lateness,
            converter,
            keys: ByteKeys::default(),
            batches: HashMap::new(),
            next_batch: 0,
            sessions: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            closing: BinaryHeap::new(),
            starts: BinaryHeap::new(),
            held_rows: 0,
            held_bytes: 0,
        })
    }

    /// The rows of open sessions (the window scan's columns), for a checkpoint.
    pub fn snapshot(&self) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut ids: Vec<&u64> = self.batches.keys().collect();
        ids.sort_unstable();
        let rows = ids
            .into_iter()
            .map(|id| {
                let held = &self.batches[id];
                let mask = BooleanArray::from(held.held.clone());
                Ok(filter_record_batch(&held.batch, &mask)?)
            })
            .collect::<Result<_>>()?;
        Ok((Arc::clone(&self.input), rows))
    }

    /// Holds the rows of a snapshot taken by [`Self::snapshot`] again.
    pub fn restore(&mut self, batches: &[RecordBatch]) -> Result<()> {
        for batch in batches {
            let batch = RecordBatch::try_new(Arc::clone(&self.input), batch.columns().to_vec())?;
            self.insert(batch)?;
        }
        Ok(())
    }

    /// Adds the rows of `batch` to their keys' sessions.
    pub fn insert(&mut self, batch: RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let times = nanos_values(batch.column(self.start_column))?;
        let key_rows = match &self.converter {
            Some(converter) => {
                let keys = self
                    .session_keys
                    .iter()
                    .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(n)))
                    .collect::<Result<Vec<ArrayRef>>>()?;
                Some(converter.convert_columns(&keys)?)
            }
            None => None,
        };
        let id = self.next_batch;
        self.next_batch += 1;
        for (row, &time) in times.iter().enumerate() {
            let key = match &key_rows {
                Some(rows) => self.keys.intern(rows.row(row).as_ref())?,
                None => 0,
            };
            self.add_row(key, time, (id, row as u32));
        }
        self.held_rows += n;
        self.held_bytes += batch.get_array_memory_size();
        self.batches.insert(
            id,
            HeldBatch {
                batch,
                held: vec![true; n],
                live: n,
            },
        );
        self.settle_starts();
        Ok(())
    }

    /// Puts one row at `time` into its key's session: a new one, one it extends, or the
    /// one that results from merging every session it bridges.
    fn add_row(&mut self, key: u32, time: i64, row: RowRef) {
        let row_end = time.saturating_add(self.gap);
        let open = self.by_key.entry(key).or_default();
        let mut target: Option<u32> = None;
        let mut merged = false;
        let mut index = 0;
        while index < open.len() {
            let id = open[index];
            let Some(session) = self.sessions[id as usize].as_ref() else {
                open.swap_remove(index);
                continue;
            };
            if time >= session.end || row_end <= session.start {
                index += 1;
                continue;
            }
            match target {
                None => {
                    target = Some(id);
                    index += 1;
                }
                Some(into) => {
                    // The row bridges two sessions: they become one.
                    open.swap_remove(index);
                    let other = self.sessions[id as usize].take();
                    self.free.push(id);
                    if let (Some(other), Some(Some(kept))) =
                        (other, self.sessions.get_mut(into as usize))
                    {
                        kept.start = kept.start.min(other.start);
                        kept.end = kept.end.max(other.end);
                        kept.rows.extend(other.rows);
                        merged = true;
                    }
                }
            }
        }
        let id = match target {
            Some(id) => id,
            None => {
                let session = Session {
                    key,
                    start: time,
                    end: row_end,
                    rows: Vec::new(),
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.sessions[id as usize] = Some(session);
                        id
                    }
                    None => {
                        self.sessions.push(Some(session));
                        (self.sessions.len() - 1) as u32
                    }
                };
                open.push(id);
                id
            }
        };
        let Some(session) = self.sessions[id as usize].as_mut() else {
            return;
        };
        let (start, end) = (session.start, session.end);
        session.start = start.min(time);
        session.end = end.max(row_end);
        session.rows.push(row);
        let new = session.rows.len() == 1;
        if session.end != end || new || merged {
            self.closing.push(Reverse((session.end, id)));
        }
        if session.start != start || new || merged {
            self.starts.push(Reverse((session.start, id)));
        }
    }

    /// Emits every session closed at `watermark`.
    pub fn advance(&mut self, watermark: Watermark, out: &mut Vec<RecordBatch>) -> Result<()> {
        let mut closed: Vec<Session> = Vec::new();
        while let Some(&Reverse((end, id))) = self.closing.peek() {
            if end.saturating_add(self.lateness) > watermark.0 {
                break;
            }
            self.closing.pop();
            let current = self.sessions[id as usize].as_ref().map(|s| s.end);
            if current != Some(end) {
                continue;
            }
            if let Some(session) = self.sessions[id as usize].take() {
                self.free.push(id);
                if let Some(open) = self.by_key.get_mut(&session.key) {
                    open.retain(|&other| other != id);
                    if open.is_empty() {
                        self.by_key.remove(&session.key);
                        if self.converter.is_some() {
                            self.keys.remove(session.key);
                        }
                    }
                }
                closed.push(session);
            }
        }
        if closed.is_empty() {
            return Ok(());
        }
        self.settle_starts();
        let sessions = self.closed_rows(&closed)?;
        let mut aggregation = GroupedAggregation::try_new(&self.exprs, 0)?;
        aggregation.update(&self.exprs.evaluate(&sessions, &mut self.constants)?)?;
        let (mut columns, values) = aggregation.emit()?;
        columns.extend(values);
        out.push(RecordBatch::try_new(Arc::clone(&self.output), columns)?);
        self.release(&closed);
        Ok(())
    }

    /// The rows of `closed` sessions with their sessions' start, end and time.
    fn closed_rows(&self, closed: &[Session]) -> Result<RecordBatch> {
        let mut ids: Vec<u64> = Vec::new();
        let mut slots: HashMap<u64, usize> = HashMap::new();
        let rows: usize = closed.iter().map(|s| s.rows.len()).sum();
        let mut indices: Vec<(usize, usize)> = Vec::with_capacity(rows);
        let mut starts: Vec<i64> = Vec::with_capacity(rows);
        let mut ends: Vec<i64> = Vec::with_capacity(rows);
        for session in closed {
            for &(batch, row) in &session.rows {
                let slot = *slots.entry(batch).or_insert_with(|| {
                    ids.push(batch);
                    ids.len() - 1
                });
                indices.push((slot, row as usize));
            }
            starts.extend(std::iter::repeat_n(session.start, session.rows.len()));
            ends.extend(std::iter::repeat_n(session.end, session.rows.len()));
        }
        let batches: Vec<&RecordBatch> = ids.iter().map(|id| &self.batches[id].batch).collect();
        let mut columns = (0..self.input.fields().len())
            .map(|column| {
                let arrays: Vec<&dyn Array> =
                    batches.iter().map(|b| b.column(column).as_ref()).collect();
                Ok(interleave(&arrays, &indices)?)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let type_of = |column: usize| self.input.field(column).data_type();
        if let Some(time_column) = self.time_column {
            let times = ends.iter().map(|end| end - 1).collect();
            columns[time_column] = time_array_from_nanos(times, type_of(time_column))?;
        }
        columns[self.start_column] = time_array_from_nanos(starts, type_of(self.start_column))?;
        columns[self.end_column] = time_array_from_nanos(ends, type_of(self.end_column))?;
        Ok(RecordBatch::try_new(Arc::clone(&self.input), columns)?)
    }

    /// Lets go of the rows of `closed` sessions, and of batches with none held any more.
    fn release(&mut self, closed: &[Session]) {
        for &(batch, row) in closed.iter().flat_map(|s| s.rows.iter()) {
            let Some(held) = self.batches.get_mut(&batch) else {
                continue;
            };
            held.held[row as usize] = false;
            held.live -= 1;
            self.held_rows -= 1;
            if held.live == 0 {
                self.held_bytes -= held.batch.get_array_memory_size();
                self.batches.remove(&batch);
            }
        }
    }

    /// Bytes held by waiting rows and the sessions.
    pub fn size(&self) -> usize {
        self.held_bytes
            + self.keys.size()
            + self.held_rows * 12
            + self.sessions.len() * 64
            + (self.starts.len() + self.closing.len()) * 16
    }

    /// The earliest event time among waiting rows, if any wait.
    pub fn earliest_time(&self) -> Option<i64> {
        self.starts.peek().map(|&Reverse((start, _))| start)
    }

    /// Drops the entries of sessions closed, merged or grown earlier from the top of
    /// `starts`, so that its top is the earliest open session's start; and rebuilds it when
    /// stale entries behind a long-open session outnumber the open sessions.
    fn settle_starts(&mut self) {
        let open = self.sessions.len() - self.free.len();
        if self.starts.len() > 2 * open + 1024 {
            self.starts = (self.sessions.iter().enumerate())
                .filter_map(|(id, s)| s.as_ref().map(|s| Reverse((s.start, id as u32))))
                .collect();
        }
        while let Some(&Reverse((start, id))) = self.starts.peek() {
            match self.sessions[id as usize].as_ref() {
                Some(session) if session.start == start => return,
                _ => {
                    self.starts.pop();
                }
            }
        }
    }

    /// The number of waiting rows.
    pub fn pending_rows(&self) -> usize {
        self.held_rows
    }
}
