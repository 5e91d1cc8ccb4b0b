//! Reading a `file` table: each file under `path` is a split, decoded as it streams in from
//! the object store (JSON lines and CSV through arrow's push decoders, Parquet through the
//! async Parquet reader). With more workers than files, a JSON-lines file is also cut into
//! byte ranges, one split each.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, Result, exec_datafusion_err, plan_err};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::DefaultParquetFileReaderFactory;
use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::{GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt};

use super::line_ranges::{byte_ranges, fetched, lines_of};

use super::options::{FileFormat, FileOptions};
use crate::stream::{ScanPartition, Source, SplitStream, WatermarkSpec};

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
        let store = Arc::clone(&self.options.location.store);
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
            .map(|(_, (file, range))| {
                read_file(
                    Arc::clone(&store),
                    file,
                    range,
                    Arc::clone(&self.schema),
                    self.options.format,
                    self.options.batch_size,
                )
            })
            .collect())
    }
}

/// One file, or the lines starting in a byte `range` of a JSON-lines file, as a stream of
/// batches with `schema`.
pub fn read_file(
    store: Arc<dyn ObjectStore>,
    file: ObjectMeta,
    range: Option<Range<u64>>,
    schema: SchemaRef,
    format: FileFormat,
    batch_size: usize,
) -> SplitStream {
    let opened = async move {
        let path = file.location.clone();
        let stream: SplitStream = match format {
            FileFormat::Parquet => read_parquet(store, file, schema, batch_size).await?,
            FileFormat::Json | FileFormat::Csv => {
                let decoder = RowDecoder::new(format, Arc::clone(&schema), batch_size)?;
                let fetched = range.as_ref().map(|range| fetched(range, file.size));
                let bytes = store
                    .get_opts(&path, GetOptions::new().with_range(fetched))
                    .await
                    .map_err(|e| exec_datafusion_err!("reading {path}: {e}"))?
                    .into_stream()
                    .map_err(move |e| exec_datafusion_err!("reading {path}: {e}"))
                    .boxed();
                let bytes = match range {
                    Some(range) => lines_of(bytes, range),
                    None => bytes,
                };
                decode_stream(bytes, decoder)
            }
        };
        Ok::<_, DataFusionError>(stream)
    };
    futures::stream::once(opened).try_flatten().boxed()
}

/// A push decoder of JSON lines or CSV.
enum RowDecoder {
    Json(Box<datafusion::arrow::json::reader::Decoder>),
    Csv(Box<datafusion::arrow::csv::reader::Decoder>),
}

impl RowDecoder {
    fn new(format: FileFormat, schema: SchemaRef, batch_size: usize) -> Result<Self> {
        Ok(match format {
            FileFormat::Json => Self::Json(Box::new(
                datafusion::arrow::json::ReaderBuilder::new(schema)
                    .with_batch_size(batch_size)
                    .build_decoder()?,
            )),
            _ => Self::Csv(Box::new(
                datafusion::arrow::csv::ReaderBuilder::new(schema)
                    .with_header(true)
                    .with_batch_size(batch_size)
                    .build_decoder(),
            )),
        })
    }

    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        match self {
            Self::Json(d) => d.decode(buf),
            Self::Csv(d) => d.decode(buf),
        }
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        match self {
            Self::Json(d) => d.flush(),
            Self::Csv(d) => d.flush(),
        }
    }
}

/// Feeds chunks of bytes to `decoder`, yielding a batch whenever one is full.
fn decode_stream(bytes: BoxStream<'static, Result<Bytes>>, decoder: RowDecoder) -> SplitStream {
    struct State {
        bytes: BoxStream<'static, Result<Bytes>>,
        decoder: RowDecoder,
        pending: Bytes,
        input_done: bool,
    }
    let state = State {
        bytes,
        decoder,
        pending: Bytes::new(),
        input_done: false,
    };
    futures::stream::try_unfold(state, |mut state| async move {
        loop {
            if state.pending.is_empty() && !state.input_done {
                match state.bytes.next().await.transpose()? {
                    Some(chunk) => state.pending = chunk,
                    None => state.input_done = true,
                }
            }
            if state.input_done && state.pending.is_empty() {
                // Decoding an empty buffer marks the end of input for the CSV decoder.
                state.decoder.decode(&[])?;
                return Ok(state.decoder.flush()?.map(|batch| (batch, state)));
            }
            let consumed = state.decoder.decode(&state.pending)?;
            let full = consumed < state.pending.len();
            let _ = state.pending.split_to(consumed);
            if full && let Some(batch) = state.decoder.flush()? {
                return Ok(Some((batch, state)));
            }
        }
    })
    .boxed()
}

/// A Parquet file's columns named in `schema`, cast to `schema`'s types.
async fn read_parquet(
    store: Arc<dyn ObjectStore>,
    file: ObjectMeta,
    schema: SchemaRef,
    batch_size: usize,
) -> Result<SplitStream> {
    let path = file.location.clone();
    let reader: Box<dyn AsyncFileReader> = DefaultParquetFileReaderFactory::new(store)
        .create_reader(
            0,
            PartitionedFile::from(file),
            None,
            &ExecutionPlanMetricsSet::new(),
        )?;
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let file_schema = Arc::clone(builder.schema());
    let mut indices = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        match file_schema.index_of(field.name()) {
            Ok(index) => indices.push(index),
            Err(_) => return plan_err!("parquet file {path} has no column '{}'", field.name()),
        }
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied());
    let stream = builder
        .with_projection(mask)
        .with_batch_size(batch_size)
        .build()?;
    let order: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    Ok(stream
        .map(move |batch| {
            let batch = batch?;
            let columns = order
                .iter()
                .zip(schema.fields())
                .map(|(name, field)| {
                    let column = batch.column_by_name(name).ok_or_else(|| {
                        exec_datafusion_err!("parquet batch lacks column '{name}'")
                    })?;
                    Ok(cast(column, field.data_type())?)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(RecordBatch::try_new(Arc::clone(&schema), columns)?)
        })
        .boxed())
}
