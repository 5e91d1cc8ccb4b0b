//! [`StateSnapshot`]: one operator's state as Arrow batches of one schema, with scalar
//! values (a watermark, a generation) in the schema's metadata; stored as an Arrow IPC
//! stream. [`JobSnapshot`] is everything one job puts into a checkpoint.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{Result, internal_datafusion_err};
use datafusion::physical_expr::PhysicalExpr;

use super::split_by_key;

/// One operator's state.
#[derive(Debug, Clone)]
pub struct StateSnapshot {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl StateSnapshot {
    /// A snapshot of `batches`, all of `schema`, with `scalars` kept in the schema metadata.
    pub fn new(
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        scalars: &[(&str, i64)],
    ) -> Result<Self> {
        let mut metadata: HashMap<String, String> = schema.metadata().clone();
        for (name, value) in scalars {
            metadata.insert((*name).to_string(), value.to_string());
        }
        let schema = Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata));
        let batches = batches
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| b.with_schema(Arc::clone(&schema)))
            .collect::<std::result::Result<_, _>>()?;
        Ok(Self { schema, batches })
    }

    /// A batch of `schema` from `columns`, each cast to its field's type where an
    /// accumulator's state array differs in detail (a list's field name, say).
    pub fn conform(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
        let columns = columns
            .into_iter()
            .zip(schema.fields())
            .map(
                |(column, field)| match column.data_type() == field.data_type() {
                    true => Ok(column),
                    false => cast(&column, field.data_type()),
                },
            )
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }

    /// The scalar stored under `name`.
    pub fn scalar(&self, name: &str) -> Result<i64> {
        self.schema
            .metadata()
            .get(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| internal_datafusion_err!("checkpointed state lacks '{name}'"))
    }

    /// The snapshots of one operator's partitions as one: their rows, and each scalar the
    /// minimum over them (watermarks: the earliest is safe), but a `generation`, the
    /// maximum (versions issued after it must be newer than any issued before).
    pub fn concat(parts: Vec<StateSnapshot>) -> Result<Self> {
        let Some(first) = parts.first() else {
            return Err(internal_datafusion_err!("no snapshots to merge"));
        };
        let mut metadata = first.schema.metadata().clone();
        for (name, value) in metadata.iter_mut() {
            let values = parts.iter().filter_map(|p| p.scalar(name).ok());
            let merged = match name.as_str() {
                "generation" => values.max(),
                _ => values.min(),
            };
            if let Some(merged) = merged {
                *value = merged.to_string();
            }
        }
        let schema = Arc::new(Schema::new_with_metadata(
            first.schema.fields().clone(),
            metadata,
        ));
        let batches = parts
            .iter()
            .flat_map(|p| &p.batches)
            .map(|b| RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec()))
            .collect::<std::result::Result<_, _>>()?;
        Ok(Self { schema, batches })
    }

    /// Keeps only the rows whose `keys` place them in `partition` of `partitions`; with no
    /// keys (rows on their way out, not keyed state), every row stays in partition 0.
    pub fn retain_partition(
        &mut self,
        keys: &[Arc<dyn PhysicalExpr>],
        partition: usize,
        partitions: usize,
    ) -> Result<()> {
        if keys.is_empty() {
            if partition != 0 {
                self.batches.clear();
            }
            return Ok(());
        }
        let mut hashes = Vec::new();
        let mut kept = Vec::with_capacity(self.batches.len());
        for batch in &self.batches {
            let mut parts = split_by_key(batch, keys, partitions, &mut hashes)?;
            if let Some(rows) = parts.swap_remove(partition) {
                kept.push(rows);
            }
        }
        self.batches = kept;
        Ok(())
    }

    /// Rows across the batches.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// The snapshot as an Arrow IPC stream.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut writer = StreamWriter::try_new(Vec::new(), &self.schema)?;
        for batch in &self.batches {
            writer.write(batch)?;
        }
        writer.finish()?;
        Ok(writer.into_inner()?)
    }

    /// A snapshot read back from [`Self::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
        let schema = reader.schema();
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self { schema, batches })
    }
}

/// Everything one job puts into a checkpoint: where each split had handed on up to, and
/// each registered operator's state, by name.
#[derive(Debug, Clone, Default)]
pub struct JobSnapshot {
    pub positions: Vec<(String, i64)>,
    pub states: Vec<(String, StateSnapshot)>,
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;

    #[test]
    fn a_snapshot_survives_encoding_with_its_scalars() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let snapshot = StateSnapshot::new(schema, vec![batch], &[("watermark", -7)]).unwrap();
        let back = StateSnapshot::decode(&snapshot.encode().unwrap()).unwrap();
        assert_eq!(back.num_rows(), 2);
        assert_eq!(back.scalar("watermark").unwrap(), -7);
        assert!(back.scalar("missing").is_err());
    }
}
