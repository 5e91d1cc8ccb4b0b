//! [`KeyedAggregates`]: the running aggregates of every key of an unbounded `GROUP BY`. Each
//! key holds one DataFusion [`Accumulator`] per aggregate, so any aggregate (built-in or
//! UDAF, `count(DISTINCT …)`, `last_value(… ORDER BY …)`, `array_agg`) keeps working; a key's
//! value is read with `evaluate`, which leaves the state as it was, every time it changes.
//!
//! Each key also counts the rows folded into it. That count is the key's *version*: it
//! grows with every change, and two runs over the same input reach the same version with
//! the same value, whatever the order partitions interleave in, so a store can skip a
//! replayed upsert by comparing versions. Keys forgotten by a state TTL and seen again
//! start over in a later *generation*, whose versions are above every earlier one's, so
//! the store takes the restarted row.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array, new_empty_array,
};
use datafusion::arrow::compute::{filter, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::Accumulator;

use crate::stream::{ByteKeys, StateSnapshot};
use crate::window::{AggregateExprs, ConstantArrays};

/// The state of one key.
struct KeyState {
    accumulators: Vec<Box<dyn Accumulator>>,
    /// The key's first version: its generation, in the high 32 bits.
    base: i64,
    /// Rows folded in so far.
    version: i64,
    /// When a row last arrived for the key, in milliseconds of the pipeline's clock.
    touched_at: u64,
    /// The accumulators' size when last measured.
    size: usize,
}

/// The aggregates of every key, and which keys the last batch changed.
pub struct KeyedAggregates {
    exprs: AggregateExprs,
    /// Literal arguments, kept as arrays across batches.
    constants: ConstantArrays,
    output: SchemaRef,
    converter: RowConverter,
    keys: ByteKeys,
    states: Vec<Option<KeyState>>,
    /// Bytes held by accumulators.
    accumulated: usize,
    /// Bumped whenever a TTL sweep forgets keys.
    generation: i64,
    /// Scratch, reused between batches.
    batch_slot: Vec<u32>,
    row_ids: Vec<u32>,
}

impl KeyedAggregates {
    /// An empty state for `exprs`, producing rows of `output` (keys, then aggregates).
    pub fn try_new(exprs: AggregateExprs, output: SchemaRef) -> Result<Self> {
        let converter = RowConverter::new(
            exprs
                .key_schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        Ok(Self {
            exprs,
            constants: ConstantArrays::default(),
            output,
            converter,
            keys: ByteKeys::default(),
            states: Vec::new(),
            accumulated: 0,
            generation: 0,
            batch_slot: Vec::new(),
            row_ids: Vec::new(),
        })
    }

    /// Folds `batch` in and returns the ids of the keys it changed, in the order they first
    /// appear in it.
    pub fn fold(&mut self, batch: &RecordBatch, now_ms: u64) -> Result<Vec<u32>> {
        let rows = self.exprs.evaluate(batch, &mut self.constants)?;
        let n = rows.num_rows;
        if n == 0 {
            return Ok(Vec::new());
        }
        // Each row's key id, and the keys in first-seen order.
        self.row_ids.clear();
        if self.exprs.keys.is_empty() {
            let id = self.keys.intern(&[])?;
            self.row_ids.resize(n, id);
        } else {
            let encoded = self.converter.convert_columns(&rows.keys)?;
            for row in encoded.iter() {
                self.row_ids.push(self.keys.intern(row.as_ref())?);
            }
        }
        let bound = self.keys.id_bound();
        if self.states.len() < bound {
            self.states.resize_with(bound, || None);
        }
        if self.batch_slot.len() < bound {
            self.batch_slot.resize(bound, u32::MAX);
        }
        let mut touched: Vec<u32> = Vec::new();
        let mut counts: Vec<u32> = Vec::new();
        for &id in &self.row_ids {
            let slot = &mut self.batch_slot[id as usize];
            if *slot == u32::MAX {
                *slot = touched.len() as u32;
                touched.push(id);
                counts.push(0);
            }
            counts[*slot as usize] += 1;
        }
        // The rows grouped by key: a counting sort into one permutation.
        let mut starts = Vec::with_capacity(touched.len() + 1);
        let mut at = 0u32;
        for &count in &counts {
            starts.push(at);
            at += count;
        }
        starts.push(at);
        let mut next = starts.clone();
        let mut order = vec![0u32; n];
        for (row, &id) in self.row_ids.iter().enumerate() {
            let slot = self.batch_slot[id as usize] as usize;
            order[next[slot] as usize] = row as u32;
            next[slot] += 1;
        }
        let order = UInt32Array::from(order);
        for &id in &touched {
            self.batch_slot[id as usize] = u32::MAX;
        }

        for (index, &id) in touched.iter().enumerate() {
            if self.states[id as usize].is_none() {
                self.states[id as usize] = Some(KeyState {
                    accumulators: self
                        .exprs
                        .aggregates
                        .iter()
                        .map(|a| a.create_accumulator())
                        .collect::<Result<_>>()?,
                    base: self.generation << 32,
                    version: 0,
                    touched_at: now_ms,
                    size: 0,
                });
            }
            if let Some(state) = self.states[id as usize].as_mut() {
                state.version += i64::from(starts[index + 1] - starts[index]);
                state.touched_at = now_ms;
            }
        }
        for (aggregate, arguments) in rows.arguments.iter().enumerate() {
            let arguments = arguments
                .iter()
                .map(|a| take(a.as_ref(), &order, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let mask = match &rows.filters[aggregate] {
                Some(f) => Some(take(f.as_ref(), &order, None)?),
                None => None,
            };
            for (index, &id) in touched.iter().enumerate() {
                let (from, to) = (starts[index] as usize, starts[index + 1] as usize);
                let mut slice: Vec<ArrayRef> =
                    arguments.iter().map(|a| a.slice(from, to - from)).collect();
                if let Some(mask) = &mask {
                    let keep = mask.slice(from, to - from);
                    let keep: &BooleanArray = keep.as_boolean();
                    slice = slice
                        .iter()
                        .map(|a| filter(a.as_ref(), keep))
                        .collect::<std::result::Result<_, _>>()?;
                }
                if let Some(state) = self.states[id as usize].as_mut() {
                    state.accumulators[aggregate].update_batch(&slice)?;
                }
            }
        }
        for &id in &touched {
            if let Some(state) = self.states[id as usize].as_mut() {
                let size: usize = state.accumulators.iter().map(|a| a.size()).sum();
                self.accumulated = self.accumulated + size - state.size;
                state.size = size;
            }
        }
        Ok(touched)
    }

    /// The current rows of `ids` (keys, then aggregate values) and their versions.
    pub fn rows(&mut self, ids: &[u32]) -> Result<(RecordBatch, Int64Array)> {
        let mut columns: Vec<ArrayRef> = if self.exprs.keys.is_empty() {
            Vec::new()
        } else {
            let parser = self.converter.parser();
            let keys = &self.keys;
            self.converter
                .convert_rows(ids.iter().map(|&id| parser.parse(keys.get(id))))?
        };
        let mut versions = Vec::with_capacity(ids.len());
        let mut values: Vec<Vec<ScalarValue>> =
            vec![Vec::with_capacity(ids.len()); self.exprs.aggregates.len()];
        for &id in ids {
            let Some(state) = self.states[id as usize].as_mut() else {
                continue;
            };
            versions.push(state.base + state.version);
            for (value, accumulator) in values.iter_mut().zip(state.accumulators.iter_mut()) {
                value.push(accumulator.evaluate()?);
            }
        }
        for (index, value) in values.into_iter().enumerate() {
            let expected = self.output.field(self.exprs.keys.len() + index).data_type();
            let array = match value.is_empty() {
                true => datafusion::arrow::array::new_empty_array(expected),
                false => ScalarValue::iter_to_array(value)?,
            };
            columns.push(if array.data_type() == expected {
                array
            } else {
                datafusion::arrow::compute::cast(&array, expected)?
            });
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.output), columns)?;
        Ok((batch, Int64Array::from(versions)))
    }

    /// Every key's state, for a checkpoint: its key columns, version base and count, how
    /// long it has been idle (`now_ms` is the operator's clock), and its aggregates'
    /// intermediate states; the generation as a scalar. The keys stay as they were.
    pub fn snapshot(&mut self, now_ms: u64) -> Result<StateSnapshot> {
        let mut fields: Vec<Field> = self
            .exprs
            .key_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for name in ["_version_base", "_version", "_idle_ms"] {
            fields.push(Field::new(name, DataType::Int64, false));
        }
        let state_fields = self.exprs.state_fields()?;
        fields.extend(state_fields.iter().cloned());
        let schema = Arc::new(Schema::new(fields));
        let live: Vec<u32> = (0..self.states.len() as u32)
            .filter(|&id| self.states[id as usize].is_some())
            .collect();
        let mut columns: Vec<ArrayRef> = if self.exprs.keys.is_empty() {
            Vec::new()
        } else {
            let parser = self.converter.parser();
            let keys = &self.keys;
            self.converter
                .convert_rows(live.iter().map(|&id| parser.parse(keys.get(id))))?
        };
        let mut bases = Vec::with_capacity(live.len());
        let mut versions = Vec::with_capacity(live.len());
        let mut idle = Vec::with_capacity(live.len());
        let mut values: Vec<Vec<ScalarValue>> =
            vec![Vec::with_capacity(live.len()); state_fields.len()];
        for &id in &live {
            let Some(state) = self.states[id as usize].as_mut() else {
                continue;
            };
            bases.push(state.base);
            versions.push(state.version);
            idle.push(now_ms.saturating_sub(state.touched_at) as i64);
            let mut field = 0;
            for accumulator in &mut state.accumulators {
                for value in accumulator.state()? {
                    values[field].push(value);
                    field += 1;
                }
            }
        }
        columns.push(Arc::new(Int64Array::from(bases)));
        columns.push(Arc::new(Int64Array::from(versions)));
        columns.push(Arc::new(Int64Array::from(idle)));
        for (value, field) in values.into_iter().zip(&state_fields) {
            columns.push(match value.is_empty() {
                true => new_empty_array(field.data_type()),
                false => ScalarValue::iter_to_array(value)?,
            });
        }
        let batch = StateSnapshot::conform(&schema, columns)?;
        // `state` hands the accumulators' state over: build them again from it.
        let first_state = batch.num_columns() - state_fields.len();
        let widths = self.state_widths()?;
        for (row, &id) in live.iter().enumerate() {
            let accumulators =
                self.accumulators_from(&widths, &batch.columns()[first_state..], row)?;
            if let Some(state) = self.states[id as usize].as_mut() {
                state.accumulators = accumulators;
            }
        }
        StateSnapshot::new(schema, vec![batch], &[("generation", self.generation)])
    }

    /// Takes back the keys of a snapshot taken by [`Self::snapshot`].
    pub fn restore(&mut self, snapshot: &StateSnapshot, now_ms: u64) -> Result<()> {
        self.generation = snapshot.scalar("generation")?;
        let key_count = self.exprs.keys.len();
        let widths = self.state_widths()?;
        for batch in &snapshot.batches {
            let columns = batch.columns();
            let mut ids = Vec::with_capacity(batch.num_rows());
            if key_count == 0 {
                ids.push(self.keys.intern(&[])?);
            } else {
                let rows = self.converter.convert_columns(&columns[..key_count])?;
                for row in rows.iter() {
                    ids.push(self.keys.intern(row.as_ref())?);
                }
            }
            let int64 = |i: usize| -> Result<&Int64Array> {
                columns[i].as_primitive_opt().ok_or_else(|| {
                    datafusion::common::internal_datafusion_err!(
                        "checkpointed key state: column {i} is not Int64"
                    )
                })
            };
            let (bases, versions, idle) = (
                int64(key_count)?,
                int64(key_count + 1)?,
                int64(key_count + 2)?,
            );
            let bound = self.keys.id_bound();
            if self.states.len() < bound {
                self.states.resize_with(bound, || None);
            }
            for (row, &id) in ids.iter().enumerate() {
                let accumulators =
                    self.accumulators_from(&widths, &columns[key_count + 3..], row)?;
                let size = accumulators.iter().map(|a| a.size()).sum();
                self.accumulated += size;
                self.states[id as usize] = Some(KeyState {
                    accumulators,
                    base: bases.value(row),
                    version: versions.value(row),
                    touched_at: now_ms.saturating_sub(idle.value(row) as u64),
                    size,
                });
            }
        }
        Ok(())
    }

    /// How many state columns each aggregate has.
    fn state_widths(&self) -> Result<Vec<usize>> {
        self.exprs
            .aggregates
            .iter()
            .map(|a| Ok(a.state_fields()?.len()))
            .collect()
    }

    /// Fresh accumulators merged with the intermediate states in row `row` of `states`.
    /// `widths` holds each aggregate's number of state columns.
    fn accumulators_from(
        &self,
        widths: &[usize],
        states: &[ArrayRef],
        row: usize,
    ) -> Result<Vec<Box<dyn Accumulator>>> {
        let mut at = 0;
        let mut accumulators = Vec::with_capacity(self.exprs.aggregates.len());
        for (aggregate, &fields) in self.exprs.aggregates.iter().zip(widths) {
            let mut accumulator = aggregate.create_accumulator()?;
            let slices: Vec<ArrayRef> = states[at..at + fields]
                .iter()
                .map(|s| s.slice(row, 1))
                .collect();
            accumulator.merge_batch(&slices)?;
            accumulators.push(accumulator);
            at += fields;
        }
        Ok(accumulators)
    }

    /// Forgets keys no row has arrived for in `ttl`; returns how many.
    pub fn expire(&mut self, now_ms: u64, ttl: Duration) -> usize {
        let ttl = ttl.as_millis() as u64;
        let mut expired = 0;
        for (id, slot) in self.states.iter_mut().enumerate() {
            if slot
                .as_ref()
                .is_some_and(|s| s.touched_at.saturating_add(ttl) < now_ms)
            {
                if let Some(state) = slot.take() {
                    self.accumulated -= state.size;
                }
                self.keys.remove(id as u32);
                expired += 1;
            }
        }
        if expired > 0 {
            self.generation += 1;
        }
        expired
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held, for the memory pool.
    pub fn size(&self) -> usize {
        self.accumulated
            + self.keys.size()
            + self.states.capacity() * size_of::<Option<KeyState>>()
            + self.batch_slot.capacity() * size_of::<u32>()
    }
}
