//! Reading a `file` table: each file under `path` is a split. JSON lines and CSV are read
//! in large blocks and decoded by arrow's push decoders on a thread of their own (see
//! `split_reader`); a local Parquet file by the synchronous Parquet reader on such a
//! thread too, a remote one by the async Parquet reader. With more workers than files, a
//! JSON-lines file is also cut into byte ranges, one split each.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, exec_datafusion_err, plan_err};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::DefaultParquetFileReaderFactory;
use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderBuilder, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio::sync::Semaphore;

use super::line_ranges::{byte_ranges, fetched};
use super::row_decoder::RowDecoder;
use super::split_reader::{SplitBytes, on_reader_thread, read_split};

use super::options::{FileFormat, FileOptions};
use crate::stream::{ScanPartition, Source, SplitStream, WatermarkSpec};

/// JSON-lines or CSV files one partition of a scan reads at once.
const CONCURRENT_READERS: usize = 4;

/// The `file` source.
#[derive(Debug)]
pub struct FileSource {
    schema: SchemaRef,
    options: FileOptions,
}

impl FileSource {
    pub fn new(schema: SchemaRef, options: FileOptions) -> Self {
        Self { schema, options }
    }

    /// The files under the table's path, in name order: the path itself when it is a file.
    async fn files(&self) -> Result<Vec<ObjectMeta>> {
        let store = &self.options.location.store;
        let path = &self.options.location.path;
        if let Ok(meta) = store.head(path).await {
            return Ok(vec![meta]);
        }
        let mut files: Vec<ObjectMeta> =
            store.list(Some(path)).try_collect().await.map_err(|e| {
                exec_datafusion_err!("listing {}: {e}", self.options.location.display)
            })?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        if files.is_empty() {
            return plan_err!("no files at '{}'", self.options.location.display);
        }
        Ok(files)
    }
}

#[async_trait]
impl Source for FileSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!(
            "file(path={}, format={})",
            self.options.location.display,
            self.options.format.name()
        )
    }

    /// Known once the topic's partitions or the folder's files are listed.
    fn split_count(&self) -> Option<usize> {
        None
    }

    async fn open(
        &self,
        _context: Arc<TaskContext>,
        _event_time: Option<&WatermarkSpec>,
        scan: &ScanPartition,
    ) -> Result<Vec<SplitStream>> {
        let files = self.files().await?;
        // Files read at once by this partition, each on a thread of its own.
        let readers = Arc::new(Semaphore::new(CONCURRENT_READERS));
        // Fewer JSON-lines files than workers: each file is read in byte ranges too.
        let pieces = match self.options.format {
            FileFormat::Json => scan.count.div_ceil(files.len()),
            _ => 1,
        };
        let splits = files.into_iter().flat_map(|file| {
            let ranges = match pieces {
                1 => vec![None],
                _ => byte_ranges(file.size, pieces)
                    .into_iter()
                    .map(Some)
                    .collect(),
            };
            ranges.into_iter().map(move |range| (file.clone(), range))
        });
        Ok(splits
            .enumerate()
            .filter(|(index, _)| scan.reads(*index))
            .map(|(_, (file, range))| self.read_file(file, range, Arc::clone(&readers)))
            .collect())
    }
}

impl FileSource {
    /// One file, or the lines starting in a byte `range` of a JSON-lines file, as a stream
    /// of batches. JSON lines, CSV and local Parquet files are read and decoded on a thread
    /// of their own, once one of `readers` is free.
    fn read_file(
        &self,
        file: ObjectMeta,
        range: Option<Range<u64>>,
        readers: Arc<Semaphore>,
    ) -> SplitStream {
        let (schema, batch_size) = (Arc::clone(&self.schema), self.options.batch_size);
        let location = &self.options.location;
        let store = Arc::clone(&location.store);
        let local = location.local_path(file.location.parts());
        if self.options.format == FileFormat::Parquet {
            if let Some(local) = local {
                return read_local_parquet(local, schema, batch_size, readers);
            }
            let opened = read_parquet(store, file, schema, batch_size);
            return futures::stream::once(opened).try_flatten().boxed();
        }
        let decoder = match RowDecoder::new(self.options.format, schema, batch_size) {
            Ok(decoder) => decoder,
            Err(e) => return futures::stream::once(async { Err(e) }).boxed(),
        };
        let bytes = SplitBytes {
            local,
            fetched: match &range {
                Some(range) => fetched(range, file.size),
                None => 0..file.size,
            },
            lines_of: range,
            store,
            path: file.location,
        };
        read_split(bytes, decoder, readers)
    }
}

/// A Parquet reader's `builder` reading `schema`'s columns (which the file at `path` must
/// have) in batches of `batch_size` rows; for the synchronous and the async reader alike.
fn projected<T>(
    builder: ArrowReaderBuilder<T>,
    schema: &SchemaRef,
    path: &str,
    batch_size: usize,
) -> Result<ArrowReaderBuilder<T>> {
    let file_schema = builder.schema();
    let indices = schema
        .fields()
        .iter()
        .map(|field| match file_schema.index_of(field.name()) {
            Ok(index) => Ok(index),
            Err(_) => plan_err!("parquet file {path} has no column '{}'", field.name()),
        })
        .collect::<Result<Vec<_>>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    Ok(builder.with_projection(mask).with_batch_size(batch_size))
}

/// A batch read from a Parquet file, its columns in `schema`'s order and cast to its types.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                exec_datafusion_err!("parquet batch lacks column '{}'", field.name())
            })?;
            Ok(cast(column, field.data_type())?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// A local Parquet file's columns named in `schema`, read by the synchronous Parquet reader
/// on a thread of its own.
fn read_local_parquet(
    local: PathBuf,
    schema: SchemaRef,
    batch_size: usize,
    readers: Arc<Semaphore>,
) -> SplitStream {
    let name = local.display().to_string();
    on_reader_thread(name.clone(), readers, move |sender, _| {
        let file =
            std::fs::File::open(&local).map_err(|e| exec_datafusion_err!("opening {name}: {e}"))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
        let reader = projected(builder, &schema, &name, batch_size)?.build()?;
        for batch in reader {
            let batch = conform(batch?, &schema)?;
            if sender.blocking_send(Ok(batch)).is_err() {
                break;
            }
        }
        Ok(())
    })
}

/// A Parquet file's columns named in `schema`, read from an object store by the async
/// Parquet reader (which fetches whole column chunks).
async fn read_parquet(
    store: Arc<dyn ObjectStore>,
    file: ObjectMeta,
    schema: SchemaRef,
    batch_size: usize,
) -> Result<SplitStream> {
    let path = file.location.to_string();
    let reader: Box<dyn AsyncFileReader> = DefaultParquetFileReaderFactory::new(store)
        .create_reader(
            0,
            PartitionedFile::from(file),
            None,
            &ExecutionPlanMetricsSet::new(),
        )?;
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let stream = projected(builder, &schema, &path, batch_size)?.build()?;
    Ok(stream.map(move |batch| conform(batch?, &schema)).boxed())
}
