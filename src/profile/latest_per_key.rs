//! [`LatestPerKey`]: an upsert topic read as a table. Read as a bounded snapshot, it keeps
//! the last row of each key (the last message wins, as in a compacted topic: messages of
//! one key share a partition, so their order is the order they were written in); read
//! continuously, it is the stream of upserts itself.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::Result;
use datafusion::execution::TaskContext;
use futures::StreamExt;

use crate::stream::{ScanPartition, Source, SplitStream, WatermarkSpec};

/// The rows of `inner` reduced to the last one per key when read as a snapshot.
#[derive(Debug)]
pub struct LatestPerKey {
    inner: Arc<dyn Source>,
    /// The key columns' positions.
    key: Vec<usize>,
}

impl LatestPerKey {
    pub fn new(inner: Arc<dyn Source>, key: Vec<usize>) -> Self {
        Self { inner, key }
    }
}

#[async_trait]
impl Source for LatestPerKey {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn is_bounded(&self) -> bool {
        self.inner.is_bounded()
    }

    fn describe(&self) -> String {
        format!("latest_per_key({})", self.inner.describe())
    }

    fn split_count(&self) -> Option<usize> {
        self.inner.split_count()
    }

    async fn open(
        &self,
        context: Arc<TaskContext>,
        event_time: Option<&WatermarkSpec>,
        scan: &ScanPartition,
    ) -> Result<Vec<SplitStream>> {
        let splits = self.inner.open(context, event_time, scan).await?;
        if !self.inner.is_bounded() {
            return Ok(splits);
        }
        let schema = self.inner.schema();
        let key = self.key.clone();
        let compacted = futures::stream::once(async move {
            let mut batches = Vec::new();
            for mut split in splits {
                while let Some(batch) = split.next().await.transpose()? {
                    batches.push(batch);
                }
            }
            latest_rows(&schema, &batches, &key)
        })
        .boxed();
        Ok(vec![compacted])
    }
}

/// The last row of each key among `batches`, in the order of those last rows.
fn latest_rows(schema: &SchemaRef, batches: &[RecordBatch], key: &[usize]) -> Result<RecordBatch> {
    let all = concat_batches(schema, batches)?;
    let keys: Vec<ArrayRef> = key.iter().map(|&i| Arc::clone(all.column(i))).collect();
    let converter = RowConverter::new(
        keys.iter()
            .map(|k| SortField::new(k.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(&keys)?;
    let mut last: hashbrown::HashMap<&[u8], u32> = hashbrown::HashMap::new();
    for (index, row) in rows.iter().enumerate() {
        last.insert(row.data(), index as u32);
    }
    let mut kept: Vec<u32> = last.into_values().collect();
    kept.sort_unstable();
    Ok(take_record_batch(&all, &UInt32Array::from(kept))?)
}
