//! [`TemporalState`]: a temporal join between messages. The versioned input's rows go into
//! the [`VersionStore`]; each stream row waits until the versioned input's watermark has
//! passed its time (every version that could be valid then has arrived), and is then
//! joined with the version valid at its time, or with NULLs in a LEFT join. The output
//! watermark is the earliest time a stream row still to come or still waiting can carry.

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::{and, filter_record_batch, not};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, Rows};
use datafusion::common::{JoinSide, JoinType, Result};
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_plan::joins::utils::JoinFilter;

use super::versions::{VersionRef, VersionStore};
use crate::join::run::TwoInputState;
use crate::stream::{StateSlot, StateSnapshot, Watermark, nanos_values};

/// What a temporal join is: its inputs' shapes, keys, conditions and output.
pub(super) struct TemporalShape {
    /// The side of the versioned input in the join's schema.
    pub(super) versioned_side: JoinSide,
    pub(super) join_type: JoinType,
    /// The stream's key expressions, and the versioned input's, pairwise equal.
    pub(super) stream_keys: Vec<PhysicalExprRef>,
    pub(super) version_keys: Vec<PhysicalExprRef>,
    pub(super) converter: RowConverter,
    /// Conditions in `ON` beyond the keys, on the stream row and its version.
    pub(super) filter: Option<JoinFilter>,
    /// Conditions on the versioned table alone: a version they reject is no match.
    pub(super) version_condition: Option<PhysicalExprRef>,
    pub(super) stream_time: usize,
    pub(super) version_time: usize,
    /// The versions' change kind: a `d` row ends its key's versions.
    pub(super) change_op: Option<usize>,
    pub(super) stream_schema: SchemaRef,
    pub(super) version_schema: SchemaRef,
    pub(super) output_schema: SchemaRef,
    pub(super) projection: Option<Vec<usize>>,
}

/// Stream rows waiting for the versioned input's watermark to pass their times.
struct WaitingBatch {
    batch: RecordBatch,
    earliest: i64,
}

/// A temporal join's state between messages; a checkpoint snapshots it.
pub(super) struct TemporalState {
    pub(super) shape: TemporalShape,
    pub(super) versions: VersionStore,
    waiting: VecDeque<WaitingBatch>,
    waiting_bytes: usize,
    pub(super) stream_watermark: Watermark,
    pub(super) version_watermark: Watermark,
    forwarded: Watermark,
    /// Output batches not yet handed on, last first.
    pub(super) pending: Vec<RecordBatch>,
}

impl TemporalState {
    pub(super) fn new(shape: TemporalShape) -> Self {
        Self {
            versions: VersionStore::new(Arc::clone(&shape.version_schema)),
            shape,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            stream_watermark: Watermark::MIN,
            version_watermark: Watermark::MIN,
            forwarded: Watermark::MIN,
            pending: Vec::new(),
        }
    }

    fn is_stream(&self, side: JoinSide) -> bool {
        side != self.shape.versioned_side
    }

    fn keep_versions(&mut self, batch: RecordBatch) -> Result<()> {
        let keys = self.keys(&self.shape.version_keys, &batch)?;
        let starts = nanos_values(batch.column(self.shape.version_time))?;
        let valid = batch.column(self.shape.version_time);
        let starts: Vec<Option<i64>> = (0..batch.num_rows())
            .map(|row| (valid.is_valid(row) && keys.1[row]).then_some(starts[row]))
            .collect();
        let deletes: Vec<bool> = match self.shape.change_op {
            Some(op) => {
                let ops = cast(batch.column(op), &DataType::Utf8)?;
                let ops = ops.as_string::<i32>();
                (0..batch.num_rows())
                    .map(|row| ops.is_valid(row) && ops.value(row) == "d")
                    .collect()
            }
            None => vec![false; batch.num_rows()],
        };
        self.versions.insert(batch, &keys.0, &starts, &deletes);
        Ok(())
    }

    /// Joins the rows of `batch` whose times the versioned watermark has passed; returns
    /// the others.
    fn join_ready(&self, batch: &RecordBatch, out: &mut Vec<RecordBatch>) -> Result<RecordBatch> {
        let passed = self.version_watermark;
        let times = nanos_values(batch.column(self.shape.stream_time))?;
        if passed.is_end() || times.iter().all(|&t| t < passed.0) {
            self.join(batch, out)?;
            return Ok(batch.slice(0, 0));
        }
        let ready = BooleanArray::from_iter(times.iter().map(|&t| Some(t < passed.0)));
        self.join(&filter_record_batch(batch, &ready)?, out)?;
        Ok(filter_record_batch(batch, &not(&ready)?)?)
    }

    /// Keeps stream rows until the versioned watermark passes their times.
    fn wait(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let times = nanos_values(batch.column(self.shape.stream_time))?;
        let earliest = times.iter().copied().min().unwrap_or(i64::MIN);
        self.waiting_bytes += batch.get_array_memory_size();
        self.waiting.push_back(WaitingBatch { batch, earliest });
        Ok(())
    }

    /// Joins the waiting stream rows whose times the versioned watermark has passed.
    fn release_waiting(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        let passed = self.version_watermark;
        for _ in 0..self.waiting.len() {
            let Some(waiting) = self.waiting.pop_front() else {
                break;
            };
            if waiting.earliest >= passed.0 && !passed.is_end() {
                self.waiting.push_back(waiting);
                continue;
            }
            self.waiting_bytes -= waiting.batch.get_array_memory_size();
            let later = self.join_ready(&waiting.batch, out)?;
            self.wait(later)?;
        }
        Ok(())
    }

    /// The join key of each row of `batch` and whether it has one (no NULL part).
    fn keys(&self, exprs: &[PhysicalExprRef], batch: &RecordBatch) -> Result<(Rows, Vec<bool>)> {
        let n = batch.num_rows();
        let columns = exprs
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let has_key = (0..n)
            .map(|row| columns.iter().all(|c| c.is_valid(row)))
            .collect();
        Ok((self.shape.converter.convert_columns(&columns)?, has_key))
    }

    /// Joins stream rows whose times the versioned watermark has passed with the versions
    /// valid at those times.
    fn join(&self, stream: &RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        if stream.num_rows() == 0 {
            return Ok(());
        }
        let shape = &self.shape;
        let (keys, has_key) = self.keys(&shape.stream_keys, stream)?;
        let times = nanos_values(stream.column(shape.stream_time))?;
        let mut found: Vec<Option<VersionRef>> = (0..stream.num_rows())
            .map(|row| {
                has_key[row]
                    .then(|| self.versions.valid_at(keys.row(row).as_ref(), times[row]))
                    .flatten()
            })
            .collect();
        let accepted = self.accepted(stream, &self.versions.columns(&found)?)?;
        if let Some(accepted) = &accepted {
            for (version, accepted) in found.iter_mut().zip(accepted.iter()) {
                if accepted != Some(true) {
                    *version = None;
                }
            }
        }
        let batch = match shape.join_type {
            JoinType::Inner => {
                let matched = BooleanArray::from_iter(found.iter().map(|v| Some(v.is_some())));
                let stream = filter_record_batch(stream, &matched)?;
                let found: Vec<Option<VersionRef>> =
                    found.into_iter().filter(Option::is_some).collect();
                self.assemble(stream.columns().to_vec(), self.versions.columns(&found)?)?
            }
            _ => self.assemble(stream.columns().to_vec(), self.versions.columns(&found)?)?,
        };
        if batch.num_rows() > 0 {
            out.push(batch);
        }
        Ok(())
    }

    /// Which found versions pass the join's other conditions; `None` when there are none.
    fn accepted(
        &self,
        stream: &RecordBatch,
        versions: &[ArrayRef],
    ) -> Result<Option<BooleanArray>> {
        let shape = &self.shape;
        let mut accepted: Option<BooleanArray> = None;
        let mut require = |mask: BooleanArray| -> Result<()> {
            accepted = Some(match accepted.take() {
                Some(before) => and(&before, &mask)?,
                None => mask,
            });
            Ok(())
        };
        if let Some(condition) = &shape.version_condition {
            let rows = RecordBatch::try_new(nullable(&shape.version_schema), versions.to_vec())?;
            let mask = condition.evaluate(&rows)?.into_array(rows.num_rows())?;
            require(as_mask(&mask))?;
        }
        if let Some(filter) = &shape.filter {
            let columns = filter
                .column_indices()
                .iter()
                .map(|column| match column.side == shape.versioned_side {
                    true => Arc::clone(&versions[column.index]),
                    false => Arc::clone(stream.column(column.index)),
                })
                .collect();
            let rows = RecordBatch::try_new(nullable(filter.schema()), columns)?;
            let mask = filter
                .expression()
                .evaluate(&rows)?
                .into_array(rows.num_rows())?;
            require(as_mask(&mask))?;
        }
        Ok(accepted)
    }

    /// The output rows of stream columns and version columns, in the join's column order.
    fn assemble(&self, stream: Vec<ArrayRef>, versions: Vec<ArrayRef>) -> Result<RecordBatch> {
        let shape = &self.shape;
        let columns: Vec<ArrayRef> = match shape.versioned_side {
            JoinSide::Left => versions.into_iter().chain(stream).collect(),
            _ => stream.into_iter().chain(versions).collect(),
        };
        let columns = match &shape.projection {
            Some(indices) => indices.iter().map(|&i| Arc::clone(&columns[i])).collect(),
            None => columns,
        };
        Ok(RecordBatch::try_new(
            Arc::clone(&shape.output_schema),
            columns,
        )?)
    }

    /// The earliest time of a waiting stream row.
    pub(super) fn earliest_waiting(&self) -> Option<i64> {
        self.waiting.iter().map(|w| w.earliest).min()
    }

    /// The versions kept and both watermarks, for a checkpoint.
    pub(super) fn snapshot_versions(&self) -> Result<StateSnapshot> {
        StateSnapshot::new(
            Arc::clone(&self.shape.version_schema),
            vec![self.versions.snapshot()?],
            &[
                ("stream_watermark", self.stream_watermark.0),
                ("version_watermark", self.version_watermark.0),
            ],
        )
    }

    /// The waiting stream rows, for a checkpoint.
    pub(super) fn snapshot_waiting(&self) -> Result<StateSnapshot> {
        let batches = self.waiting.iter().map(|w| w.batch.clone()).collect();
        StateSnapshot::new(Arc::clone(&self.shape.stream_schema), batches, &[])
    }

    /// The joined rows not yet handed on, for a checkpoint.
    pub(super) fn snapshot_pending(&self) -> Result<StateSnapshot> {
        let batches = self.pending.iter().rev().cloned().collect();
        StateSnapshot::new(Arc::clone(&self.shape.output_schema), batches, &[])
    }

    /// Takes back the versions, watermarks and waiting rows of a checkpoint.
    pub(super) fn restore(&mut self, versions: &StateSlot, waiting: &StateSlot) -> Result<()> {
        if let Some(snapshot) = &versions.restored {
            self.stream_watermark = Watermark(snapshot.scalar("stream_watermark")?);
            self.version_watermark = Watermark(snapshot.scalar("version_watermark")?);
            for batch in &snapshot.batches {
                let batch = RecordBatch::try_new(
                    Arc::clone(&self.shape.version_schema),
                    batch.columns().to_vec(),
                )?;
                self.keep_versions(batch)?;
            }
        }
        if let Some(snapshot) = &waiting.restored {
            for batch in &snapshot.batches {
                let batch = RecordBatch::try_new(
                    Arc::clone(&self.shape.stream_schema),
                    batch.columns().to_vec(),
                )?;
                self.wait(batch)?;
            }
        }
        Ok(())
    }
}

/// A condition's result as a mask: NULL is false.
fn as_mask(values: &ArrayRef) -> BooleanArray {
    values
        .as_boolean()
        .iter()
        .map(|v| Some(v == Some(true)))
        .collect()
}

/// `schema` with every field nullable: conditions are evaluated on rows without a version.
fn nullable(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
}

impl TwoInputState for TemporalState {
    /// Once the stream has ended and no row of it waits, the versions matter no more: a
    /// versioned table that never ends does not keep the join running.
    fn finished(&self) -> bool {
        self.stream_watermark.is_end() && self.waiting.is_empty() && self.pending.is_empty()
    }

    /// Takes a batch of the input on `side`; appends to `out` the joined rows it releases.
    fn on_batch(
        &mut self,
        side: JoinSide,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if !self.is_stream(side) {
            return self.keep_versions(batch);
        }
        let later = self.join_ready(&batch, out)?;
        self.wait(later)
    }

    /// Takes a watermark of the input on `side`; appends to `out` the stream rows it lets go.
    fn on_watermark(
        &mut self,
        side: JoinSide,
        watermark: Watermark,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        if self.is_stream(side) {
            self.stream_watermark = self.stream_watermark.max(watermark);
        } else {
            self.version_watermark = self.version_watermark.max(watermark);
            self.release_waiting(out)?;
        }
        // A lookup still to come is for a time at or after both watermarks' minimum.
        let horizon = self.stream_watermark.min(self.version_watermark);
        self.versions.prune(horizon.0);
        Ok(())
    }

    fn pending(&mut self) -> &mut Vec<RecordBatch> {
        &mut self.pending
    }

    /// The watermark to hand on, if it moved: no stream row still to come or waiting is
    /// earlier.
    fn output_watermark(&mut self) -> Option<Watermark> {
        let waiting = self.earliest_waiting().map_or(Watermark::END, Watermark);
        let output = self.stream_watermark.min(waiting);
        (output > self.forwarded).then(|| {
            self.forwarded = output;
            output
        })
    }

    fn earliest_held(&self) -> Option<i64> {
        self.earliest_waiting()
    }

    /// Bytes held.
    fn size(&self) -> usize {
        self.versions.size() + self.waiting_bytes
    }

    fn over_limit(&self, bytes: usize) -> String {
        let keys: Vec<String> = self
            .shape
            .stream_keys
            .iter()
            .map(|k| k.to_string())
            .collect();
        format!(
            "the temporal join on {} holds {} versions in {bytes} bytes, over the memory limit \
             (raise --memory-limit)",
            keys.join(", "),
            self.versions.len()
        )
    }
}
