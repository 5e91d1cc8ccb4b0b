//! Reading a split of a `file` table on a thread of its own, which hands the pipeline
//! whole batches: the pipeline's tasks are woken once per batch, not once per small chunk
//! of bytes. JSON lines and CSV are read in large blocks (plain reads on a local disk;
//! ranged requests to an object store, the next one already on its way) and decoded there;
//! a local Parquet file is read by the synchronous Parquet reader there.

use std::io::Read;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use datafusion::arrow::array::RecordBatch;
use datafusion::common::{DataFusionError, Result, exec_datafusion_err};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::line_ranges::LineCut;
use super::row_decoder::RowDecoder;
use crate::stream::SplitStream;

/// Bytes read at once from a local file: small enough that a block and what is decoded
/// from it stay in the core's cache between the read and the decode (4 MiB was slower).
const LOCAL_BLOCK: usize = 1 << 20;

/// Bytes fetched at once from an object store; one more range is requested ahead.
const REMOTE_BLOCK: u64 = 8 << 20;

/// Batches decoded ahead of the pipeline.
const BATCHES_AHEAD: usize = 4;

/// Where one split's bytes are.
pub struct SplitBytes {
    /// The object store holding the file, and the file's path in it.
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    /// The file's path on the local disk, when the store is the local disk.
    pub local: Option<PathBuf>,
    /// The bytes to read (for a range of a JSON-lines file, from one byte before the range
    /// to the end of the file), and, for such a range, the range whose lines are its own.
    pub fetched: Range<u64>,
    pub lines_of: Option<Range<u64>>,
}

/// Where a reader thread sends the batches it has read.
pub type BatchSender = mpsc::Sender<Result<RecordBatch>>;

/// The batches of one JSON-lines or CSV split, decoded by `decoder` on a thread of their
/// own once one of `readers` is free.
pub fn read_split(bytes: SplitBytes, decoder: RowDecoder, readers: Arc<Semaphore>) -> SplitStream {
    let name = bytes.path.to_string();
    on_reader_thread(name, readers, move |sender, runtime| {
        decode_split(bytes, decoder, sender, runtime)
    })
}

/// The batches `read` sends from a thread of its own, started once one of `readers` is
/// free: a folder of many files is read a few files at a time, each thread with a block
/// and a few batches in memory. `read` returns once it has sent every batch, or early
/// when sending fails (the pipeline no longer reads); an error it returns ends the stream.
pub fn on_reader_thread(
    name: String,
    readers: Arc<Semaphore>,
    read: impl FnOnce(&BatchSender, &tokio::runtime::Handle) -> Result<()> + Send + 'static,
) -> SplitStream {
    let started = async move {
        let reader = readers
            .acquire_owned()
            .await
            .map_err(|e| exec_datafusion_err!("reading {name}: {e}"))?;
        Ok::<_, DataFusionError>(batches_of_thread(name, reader, read))
    };
    futures::stream::once(started).try_flatten().boxed()
}

/// The batches of a reader thread that holds `reader` while it runs.
fn batches_of_thread(
    name: String,
    reader: OwnedSemaphorePermit,
    read: impl FnOnce(&BatchSender, &tokio::runtime::Handle) -> Result<()> + Send + 'static,
) -> SplitStream {
    let (sender, receiver) = mpsc::channel(BATCHES_AHEAD);
    let runtime = tokio::runtime::Handle::current();
    // A blocking-pool thread for as long as the split is read; it ends when the split has
    // been read or the pipeline drops the stream.
    let reader = tokio::task::spawn_blocking(move || {
        let _reader = reader;
        if let Err(e) = read(&sender, &runtime) {
            let _ = sender.blocking_send(Err(e));
        }
    });
    futures::stream::unfold(
        (receiver, Some(reader), name),
        |(mut receiver, reader, name)| async move {
            match receiver.recv().await {
                Some(batch) => Some((batch, (receiver, reader, name))),
                // The reader ended: a panic in it is an error, not a short file.
                None => match reader?.await {
                    Ok(()) => None,
                    Err(e) => Some((
                        Err(exec_datafusion_err!("the reader of {name} failed: {e}")),
                        (receiver, None, name),
                    )),
                },
            }
        },
    )
    .boxed()
}

/// Reads and decodes a split, sending each full batch; returns once every batch is sent,
/// or early if the pipeline no longer reads.
fn decode_split(
    bytes: SplitBytes,
    mut decoder: RowDecoder,
    sender: &BatchSender,
    runtime: &tokio::runtime::Handle,
) -> Result<()> {
    let name = bytes.path.to_string();
    let mut cut = bytes.lines_of.clone().map(LineCut::new);
    let mut blocks = Blocks::open(bytes, runtime)?;
    while let Some(block) = blocks.next()? {
        let mut block = match &mut cut {
            Some(cut) => match cut.take(block) {
                Some(kept) => kept,
                None if cut.is_done() => break,
                None => continue,
            },
            None => block,
        };
        while !block.is_empty() {
            let consumed = decoder
                .decode(&block)
                .map_err(|e| exec_datafusion_err!("decoding {name}: {e}"))?;
            block.advance(consumed);
            // The decoder stops short of the block's end when a batch is full.
            if !block.is_empty()
                && let Some(batch) = decoder.flush()?
                && sender.blocking_send(Ok(batch)).is_err()
            {
                return Ok(());
            }
        }
        if cut.as_ref().is_some_and(LineCut::is_done) {
            break;
        }
    }
    // Decoding an empty buffer marks the end of input for the CSV decoder.
    decoder
        .decode(&[])
        .map_err(|e| exec_datafusion_err!("decoding {name}: {e}"))?;
    if let Some(batch) = decoder.flush()? {
        let _ = sender.blocking_send(Ok(batch));
    }
    Ok(())
}

/// A split's bytes, block by block.
enum Blocks<'a> {
    /// A file on the local disk, read with plain reads.
    Local {
        file: std::io::Take<std::fs::File>,
        path: PathBuf,
    },
    /// An object in a store, fetched in ranges, the next one requested before the current
    /// one is handed out.
    Remote {
        store: Arc<dyn ObjectStore>,
        path: Path,
        next: u64,
        end: u64,
        ahead: Option<tokio::task::JoinHandle<object_store::Result<Bytes>>>,
        runtime: &'a tokio::runtime::Handle,
    },
}

impl<'a> Blocks<'a> {
    fn open(bytes: SplitBytes, runtime: &'a tokio::runtime::Handle) -> Result<Self> {
        let Range { start, end } = bytes.fetched;
        if let Some(local) = bytes.local {
            let mut file = std::fs::File::open(&local)
                .map_err(|e| exec_datafusion_err!("opening {}: {e}", local.display()))?;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start))
                .map_err(|e| exec_datafusion_err!("reading {}: {e}", local.display()))?;
            return Ok(Self::Local {
                file: file.take(end - start),
                path: local,
            });
        }
        let mut blocks = Self::Remote {
            store: bytes.store,
            path: bytes.path,
            next: start,
            end,
            ahead: None,
            runtime,
        };
        blocks.request_next();
        Ok(blocks)
    }

    /// The next block; `None` at the end of the split.
    fn next(&mut self) -> Result<Option<Bytes>> {
        match self {
            Self::Local { file, path } => {
                let mut block = BytesMut::zeroed(LOCAL_BLOCK);
                let mut filled = 0;
                while filled < LOCAL_BLOCK {
                    match file.read(&mut block[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            return Err(exec_datafusion_err!("reading {}: {e}", path.display()));
                        }
                    }
                }
                block.truncate(filled);
                Ok((filled > 0).then(|| block.freeze()))
            }
            Self::Remote {
                ahead,
                runtime,
                path,
                ..
            } => {
                let Some(request) = ahead.take() else {
                    return Ok(None);
                };
                let fetched = runtime
                    .block_on(request)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?
                    .map_err(|e| exec_datafusion_err!("reading {path}: {e}"))?;
                self.request_next();
                Ok(Some(fetched))
            }
        }
    }

    /// Requests the next range of a remote split, if any is left.
    fn request_next(&mut self) {
        if let Self::Remote {
            store,
            path,
            next,
            end,
            ahead,
            runtime,
        } = self
            && *next < *end
        {
            let range = *next..(*next + REMOTE_BLOCK).min(*end);
            *next = range.end;
            let (store, path) = (Arc::clone(store), path.clone());
            *ahead = Some(runtime.spawn(async move { store.get_range(&path, range).await }));
        }
    }
}
