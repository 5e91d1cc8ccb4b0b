//! `'dedup.key' = 'event_id'` on a source table: a row whose key was already read within
//! `'dedup.ttl'` is dropped as it is read, so a retried webhook or a re-sent message counts
//! once in everything that reads the table.
//!
//! With a `WATERMARK`, the TTL runs in event time (a key is forgotten once the watermark
//! is `ttl` past the event time it was first seen at), so a replay of the same input drops
//! the same rows; without one it runs in processing time.

use std::time::{Duration, Instant};

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BinaryArray, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, internal_err};

use crate::error::Error;
use crate::sql::WithOptions;
use crate::stream::{ByteKeys, StateSnapshot, Watermark, WatermarkSpec, nanos_values};

/// How long keys are remembered when `'dedup.ttl'` is not given.
pub const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(3600);

/// Never seen (or forgotten).
const UNSEEN: i64 = i64::MIN;

/// What a table deduplicates on.
#[derive(Debug, Clone)]
pub struct DedupSpec {
    /// The key columns' positions in the table's schema.
    pub columns: Vec<usize>,
    pub names: Vec<String>,
    pub ttl: Duration,
}

impl DedupSpec {
    /// Consumes `'dedup.key'` (one column or several, comma-separated) and `'dedup.ttl'`.
    pub fn parse(options: &mut WithOptions, schema: &Schema) -> Result<Option<Self>, Error> {
        let ttl = options.duration("dedup.ttl")?;
        let Some(key) = options.take("dedup.key") else {
            if ttl.is_some() {
                return Err(options.error("option 'dedup.ttl' needs 'dedup.key'"));
            }
            return Ok(None);
        };
        let names: Vec<String> = key.split(',').map(|k| k.trim().to_string()).collect();
        let columns = names
            .iter()
            .map(|name| {
                schema.index_of(name).map_err(|_| {
                    options.error(format!(
                        "option 'dedup.key': the table has no column '{name}'"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Self {
            columns,
            names,
            ttl: ttl.unwrap_or(DEFAULT_DEDUP_TTL),
        }))
    }
}

/// Drops rows whose key was read before, within the TTL.
pub struct Deduplicator {
    spec: DedupSpec,
    event_time: Option<String>,
    converter: RowConverter,
    keys: ByteKeys,
    /// Per key id: when the key was first seen, in nanoseconds of the TTL's clock.
    seen_at: Vec<i64>,
    clock: Instant,
    /// The source's watermark after the last batch, in nanoseconds.
    watermark: i64,
    /// Keys seen before this are forgotten.
    horizon: i64,
    last_sweep: i64,
}

impl Deduplicator {
    /// A deduplicator for rows of `schema`; `watermark` makes the TTL run in event time.
    pub fn try_new(
        spec: DedupSpec,
        schema: &Schema,
        watermark: Option<&WatermarkSpec>,
    ) -> Result<Self> {
        let converter = RowConverter::new(
            spec.columns
                .iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect(),
        )?;
        Ok(Self {
            spec,
            event_time: watermark.map(|w| w.column.clone()),
            converter,
            keys: ByteKeys::default(),
            seen_at: Vec::new(),
            clock: Instant::now(),
            watermark: i64::MIN,
            horizon: i64::MIN,
            last_sweep: i64::MIN,
        })
    }

    /// `batch` without the rows already seen, and how many were dropped. `watermark` is
    /// the source's watermark after the batch; its rows are judged by the one before.
    pub fn apply(
        &mut self,
        batch: RecordBatch,
        watermark: Watermark,
    ) -> Result<(RecordBatch, usize)> {
        let ttl = self.spec.ttl.as_nanos().min(i64::MAX as u128) as i64;
        let times = match &self.event_time {
            Some(column) => match batch.column_by_name(column) {
                Some(times) => Some(nanos_values(times)?),
                None => None,
            },
            None => None,
        };
        let now = self.clock.elapsed().as_nanos() as i64;
        // Rows are judged by the watermark they arrived under: the one before their batch.
        let arrived_under = match &self.event_time {
            Some(_) => self.watermark,
            None => now,
        };
        if arrived_under != i64::MIN {
            self.horizon = self.horizon.max(arrived_under.saturating_sub(ttl));
        }
        if self.event_time.is_some() && watermark != Watermark::MIN && !watermark.is_end() {
            self.watermark = self.watermark.max(watermark.0);
        }
        if batch.num_rows() == 0 {
            return Ok((batch, 0));
        }
        let keys: Vec<_> = self
            .spec
            .columns
            .iter()
            .map(|&i| std::sync::Arc::clone(batch.column(i)))
            .collect();
        let nulls: Vec<bool> = (0..batch.num_rows())
            .map(|row| keys.iter().any(|k| k.is_null(row)))
            .collect();
        let rows = self.converter.convert_columns(&keys)?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut dropped = 0;
        for (row, encoded) in rows.iter().enumerate() {
            if nulls[row] {
                keep.push(true);
                continue;
            }
            let id = self.keys.intern(encoded.as_ref())? as usize;
            if self.seen_at.len() <= id {
                self.seen_at.resize(id + 1, UNSEEN);
            }
            let seen = self.seen_at[id];
            if seen != UNSEEN && seen >= self.horizon {
                keep.push(false);
                dropped += 1;
            } else {
                // A row already older than the horizon (late, or without a time) is
                // remembered from the horizon on, so its copies are still caught.
                self.seen_at[id] = match &times {
                    Some(times) => times[row].max(self.horizon).max(UNSEEN + 1),
                    None => now,
                };
                keep.push(true);
            }
        }
        self.sweep(ttl);
        if dropped == 0 {
            return Ok((batch, 0));
        }
        let kept = filter_record_batch(&batch, &BooleanArray::from(keep))?;
        Ok((kept, dropped))
    }

    /// Forgets expired keys once the horizon has moved by a tenth of the TTL.
    fn sweep(&mut self, ttl: i64) {
        if self.horizon.saturating_sub(self.last_sweep) < ttl / 10 {
            return;
        }
        self.last_sweep = self.horizon;
        for (id, seen) in self.seen_at.iter_mut().enumerate() {
            if *seen != UNSEEN && *seen < self.horizon {
                *seen = UNSEEN;
                self.keys.remove(id as u32);
            }
        }
    }

    /// The keys remembered and when each was seen, for a checkpoint. Without an event
    /// time, times are kept relative to now.
    pub fn snapshot(&self) -> Result<StateSnapshot> {
        let offset = self.clock_offset();
        let mut keys = Vec::with_capacity(self.keys.len());
        let mut seen = Vec::with_capacity(self.keys.len());
        for (id, &at) in self.seen_at.iter().enumerate() {
            if at != UNSEEN {
                keys.push(self.keys.get(id as u32));
                seen.push(at - offset);
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Binary, false),
            Field::new("seen_at", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(BinaryArray::from_vec(keys)),
                Arc::new(Int64Array::from(seen)),
            ],
        )?;
        let relative = |v: i64| if v == i64::MIN { v } else { v - offset };
        StateSnapshot::new(
            schema,
            vec![batch],
            &[
                ("watermark", self.watermark),
                ("horizon", relative(self.horizon)),
                ("last_sweep", relative(self.last_sweep)),
            ],
        )
    }

    /// Takes back the keys of a snapshot taken by [`Self::snapshot`].
    pub fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
        let offset = self.clock_offset();
        let absolute = |v: i64| if v == i64::MIN { v } else { v + offset };
        self.watermark = snapshot.scalar("watermark")?;
        self.horizon = absolute(snapshot.scalar("horizon")?);
        self.last_sweep = absolute(snapshot.scalar("last_sweep")?);
        for batch in &snapshot.batches {
            let (Some(keys), Some(seen)) = (
                batch.column(0).as_binary_opt::<i32>(),
                batch.column(1).as_primitive_opt::<Int64Type>(),
            ) else {
                return internal_err!("checkpointed dedup state has unexpected columns");
            };
            for (key, at) in keys.iter().zip(seen.values()) {
                let id = self.keys.intern(key.unwrap_or_default())? as usize;
                if self.seen_at.len() <= id {
                    self.seen_at.resize(id + 1, UNSEEN);
                }
                self.seen_at[id] = at + offset;
            }
        }
        Ok(())
    }

    /// What times are stored relative to: 0 in event time, now in processing time.
    fn clock_offset(&self) -> i64 {
        match &self.event_time {
            Some(_) => 0,
            None => self.clock.elapsed().as_nanos() as i64,
        }
    }

    /// The number of keys remembered.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held, for the memory pool.
    pub fn size(&self) -> usize {
        self.keys.size() + self.seen_at.capacity() * size_of::<i64>()
    }
}
