//! Open windows of `TUMBLE`, `HOP` and `CUMULATE`: one aggregation per window (a bin),
//! keyed by the window's end, then start. Each batch the window scan hands on belongs to one window. A bin is
//! emitted, and its memory freed, once the watermark passes its end.
//!
//! Windows that overlap (`HOP`, `CUMULATE`) share their keys: a row lands in `size / slide` windows, so
//! its key is interned once into [`SharedKeys`] and each bin groups by the key's id.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::physical_expr::PhysicalExpr;

use super::constant_arrays::ConstantArrays;
use super::grouped::{AggregateExprs, GroupedAggregation};
use super::id_groups::IdGroupValues;
use super::shared_keys::SharedKeys;
use crate::stream::{StateSnapshot, Watermark, nanos_values};

/// Where the window columns sit among the GROUP BY expressions.
#[derive(Debug, Clone)]
pub struct WindowColumns {
    pub start: Arc<dyn PhysicalExpr>,
    pub end: Arc<dyn PhysicalExpr>,
    /// Positions of `window_start` and `window_end` in the GROUP BY list.
    pub start_position: usize,
    pub end_position: usize,
}

struct Bin {
    end_nanos: i64,
    start: ScalarValue,
    end: ScalarValue,
    aggregation: GroupedAggregation,
}

/// The open bins of one window aggregate.
pub struct WindowBins {
    exprs: AggregateExprs,
    window: WindowColumns,
    lateness: i64,
    output: SchemaRef,
    /// By (end, start): emitted in the order they close.
    bins: BTreeMap<(i64, i64), Bin>,
    /// The keys of overlapping windows, interned once for all of them.
    shared_keys: Option<Box<SharedKeys>>,
    /// Groups in the last emitted bin: what a new bin makes room for.
    expected_groups: usize,
    /// The emptied aggregation of the last emitted bin, for the next new bin: its keys'
    /// memory is already mapped and warm.
    spare: Option<GroupedAggregation>,
    /// Literal arguments, kept as arrays across batches.
    constants: ConstantArrays,
    /// Rows dropped because their bin was already emitted.
    pub late_rows: usize,
}

impl WindowBins {
    /// `exprs` holds the GROUP BY keys other than the window columns; `overlapping` says
    /// whether a row can be in several windows.
    pub fn try_new(
        exprs: AggregateExprs,
        window: WindowColumns,
        lateness: i64,
        output: SchemaRef,
        overlapping: bool,
    ) -> Result<Self> {
        let shared_keys = match overlapping && !exprs.keys.is_empty() {
            true => Some(Box::new(SharedKeys::try_new(&exprs.key_schema)?)),
            false => None,
        };
        Ok(Self {
            exprs,
            window,
            lateness,
            output,
            bins: BTreeMap::new(),
            shared_keys,
            expected_groups: 0,
            spare: None,
            constants: ConstantArrays::default(),
            late_rows: 0,
        })
    }

    /// Folds `batch`, whose rows share one window (the window scan hands on one batch per
    /// pane and window), into that window's bin; nothing is added to a bin already emitted
    /// under `applied`.
    pub fn insert(&mut self, batch: &RecordBatch, applied: Watermark) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let starts = self.window.start.evaluate(batch)?.into_array(n)?;
        let ends = self.window.end.evaluate(batch)?.into_array(n)?;
        let start = ScalarValue::try_from_array(&starts, 0)?;
        let end = ScalarValue::try_from_array(&ends, 0)?;
        let start_nanos = nanos_values(&starts)?;
        // Every start equal to the first, in a pass without branches.
        let first = start_nanos[0];
        if start_nanos
            .iter()
            .fold(0, |differ, &s| differ | (s ^ first))
            != 0
        {
            return internal_err!(
                "a window aggregate received rows of several windows in one batch"
            );
        }
        let end_nanos = nanos_values(&ends)?[0];
        if end_nanos.saturating_add(self.lateness) <= applied.0 {
            self.late_rows += n;
            return Ok(());
        }
        let mut rows = self.exprs.evaluate(batch, &mut self.constants)?;
        if let Some(shared) = &mut self.shared_keys {
            rows.keys = vec![shared.ids(&rows.keys, end_nanos)?];
        }
        let key = (end_nanos, start_nanos[0]);
        let aggregation = match self.bins.contains_key(&key) {
            true => None,
            false => Some(self.new_aggregation()?),
        };
        let bin = match self.bins.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let Some(aggregation) = aggregation else {
                    return internal_err!("a new window bin without an aggregation");
                };
                entry.insert(Bin {
                    end_nanos,
                    start,
                    end,
                    aggregation,
                })
            }
        };
        bin.aggregation.update(&rows)
    }

    /// An empty aggregation for a new bin.
    fn new_aggregation(&mut self) -> Result<GroupedAggregation> {
        if let Some(spare) = self.spare.take() {
            return Ok(spare);
        }
        match &self.shared_keys {
            Some(shared) => GroupedAggregation::with_groups(
                &self.exprs,
                Some(Box::new(IdGroupValues::with_capacity(
                    self.expected_groups,
                    shared.id_bound(),
                ))),
            ),
            None => GroupedAggregation::try_new(&self.exprs, self.expected_groups),
        }
    }

    /// The columns of a checkpointed bin: window start and end, keys, intermediate states.
    pub fn state_schema(&self) -> Result<SchemaRef> {
        let mut fields = vec![
            self.output.field(self.window.start_position).clone(),
            self.output.field(self.window.end_position).clone(),
        ];
        fields.extend(
            self.exprs
                .key_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone()),
        );
        fields.extend(self.exprs.state_fields()?);
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Every open bin as a batch of [`Self::state_schema`], for a checkpoint; the bins stay
    /// open.
    pub fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let schema = self.state_schema()?;
        let mut batches = Vec::with_capacity(self.bins.len());
        for bin in self.bins.values_mut() {
            let groups = bin.aggregation.num_groups();
            let (keys, states) = bin.aggregation.take_state()?;
            bin.aggregation.merge_state(&self.exprs, &keys, &states)?;
            if groups == 0 {
                continue;
            }
            let keys = match (&self.shared_keys, keys.as_slice()) {
                (Some(shared), [ids]) => shared.keys_of(ids)?,
                _ => keys,
            };
            let mut columns = vec![
                bin.start.to_array_of_size(groups)?,
                bin.end.to_array_of_size(groups)?,
            ];
            columns.extend(keys);
            columns.extend(states);
            batches.push(StateSnapshot::conform(&schema, columns)?);
        }
        Ok(batches)
    }

    /// Reopens the bins of a snapshot taken by [`Self::snapshot`].
    pub fn restore(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let key_count = self.exprs.keys.len();
        for batch in batches {
            let (starts, ends) = (batch.column(0), batch.column(1));
            let start_nanos = nanos_values(starts)?[0];
            let end_nanos = nanos_values(ends)?[0];
            let mut keys = batch.columns()[2..2 + key_count].to_vec();
            let states = &batch.columns()[2 + key_count..];
            if let Some(shared) = &mut self.shared_keys {
                keys = vec![shared.ids(&keys, end_nanos)?];
            }
            let mut aggregation = self.new_aggregation()?;
            aggregation.merge_state(&self.exprs, &keys, states)?;
            self.bins.insert(
                (end_nanos, start_nanos),
                Bin {
                    end_nanos,
                    start: ScalarValue::try_from_array(starts, 0)?,
                    end: ScalarValue::try_from_array(ends, 0)?,
                    aggregation,
                },
            );
        }
        Ok(())
    }

    /// Emits, in window order, every bin whose end plus the allowed lateness is at or
    /// below `watermark`.
    pub fn advance(&mut self, watermark: Watermark, out: &mut Vec<RecordBatch>) -> Result<()> {
        while let Some(entry) = self.bins.first_entry() {
            if entry.get().end_nanos.saturating_add(self.lateness) > watermark.0 {
                // Bins are kept in the order they end.
                break;
            }
            let bin = entry.remove();
            out.push(self.emit(bin)?);
        }
        Ok(())
    }

    fn emit(&mut self, mut bin: Bin) -> Result<RecordBatch> {
        let num_groups = bin.aggregation.num_groups();
        self.expected_groups = num_groups;
        let (mut keys, values) = bin.aggregation.emit()?;
        match (&mut self.shared_keys, keys.as_slice()) {
            (Some(shared), [ids]) => keys = shared.release(ids, bin.end_nanos)?,
            (Some(_), _) => {}
            (None, _) => self.spare = Some(bin.aggregation),
        }
        let mut keys = keys.into_iter();
        let group_count = self.exprs.keys.len() + 2;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        for position in 0..group_count {
            let column = if position == self.window.start_position {
                bin.start.to_array_of_size(num_groups)?
            } else if position == self.window.end_position {
                bin.end.to_array_of_size(num_groups)?
            } else {
                keys.next().ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal("missing group key column".into())
                })?
            };
            columns.push(column);
        }
        columns.extend(values);
        Ok(RecordBatch::try_new(Arc::clone(&self.output), columns)?)
    }

    /// Bytes held by the open bins and their keys.
    pub fn size(&self) -> usize {
        self.bins
            .values()
            .map(|b| b.aggregation.size())
            .sum::<usize>()
            + self.shared_keys.as_ref().map_or(0, |keys| keys.size())
            + self.spare.as_ref().map_or(0, |spare| spare.size())
    }

    /// The start of the earliest open window, in nanoseconds, if any is open.
    pub fn earliest_start(&self) -> Option<i64> {
        // Open windows end after every emitted one, so the first to close starts earliest.
        self.bins.keys().next().map(|&(_, start)| start)
    }

    /// The number of open windows and of groups across them.
    pub fn open(&self) -> (usize, usize) {
        (
            self.bins.len(),
            self.bins.values().map(|b| b.aggregation.num_groups()).sum(),
        )
    }
}
