//! Keyed stores: [`ProfileStore`], where keyed rows live (the `sqlite` and `postgres`
//! connectors), upserted by a view or a keyed sink table and read back as a DataFusion
//! table through [`StoreSink`] and [`StoreSource`]; the shape of a stored table; and the
//! changes a store's sink announces to listeners after each commit.

mod changes;
mod shape;
mod table;

pub use changes::{ChangeCount, RowListener, UpstreamViews, ViewChanges, ViewWriter};
pub use shape::{ColumnTypes, TableShape};
pub use table::{StoreSink, StoreSource};

use std::sync::Arc;

use datafusion::datasource::sink::DataSink;

use crate::stream::Source;

use std::fmt::Debug;

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;

pub use crate::stream::VERSION_COLUMN;

/// The name of the column that holds when a stored row was last written.
pub const UPDATED_AT_COLUMN: &str = "_updated_at";

/// How `serve` reads a store: on connections of its own, apart from the pipeline's
/// writes, so that a flood of lookups cannot starve the upserts nor hang on a store that
/// is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServingReads {
    /// Connections open at most for reads.
    pub connections: usize,
    /// How long a read may take, waiting for a connection included.
    pub timeout: std::time::Duration,
}

/// A table of rows identified by a primary key.
#[async_trait]
pub trait ProfileStore: Debug + Send + Sync {
    /// The columns of a row, without the store's own bookkeeping columns.
    fn schema(&self) -> SchemaRef;

    /// The primary key columns; empty when rows are only appended.
    fn primary_key(&self) -> &[String];

    /// A one-line description for `EXPLAIN`, e.g. `sqlite(path=profiles.db, table=user_profile)`.
    fn describe(&self) -> String;

    /// True when processes on other machines reach the same rows (a database server);
    /// false for a store in a file of this machine. Several processes sharing a pipeline
    /// (`profusion run --group`) write only to shared stores.
    fn is_shared(&self) -> bool {
        false
    }

    /// Writes `rows` in one transaction. With `versions` (one per row), a row replaces the
    /// stored row with the same key only when its version is newer than the stored one, so
    /// that replaying old input changes nothing; without, a row replaces its key's row (or
    /// is appended, when there is no primary key).
    async fn upsert(&self, rows: RecordBatch, versions: Option<Int64Array>) -> Result<Upserted>;

    /// Every stored row.
    async fn scan(&self) -> Result<Vec<RecordBatch>>;

    /// The row whose primary key is `key`: one text per key column, in key order, read as
    /// the column's type (`42` for an integer key). `None` when there is no such row.
    async fn get(&self, key: &[String]) -> Result<Option<StoredRow>>;

    /// Deletes the rows whose version is older than `version` (keys a finished refresh no
    /// longer returned); returns how many.
    async fn delete_older_than(&self, version: i64) -> Result<u64>;

    /// The same rows, read through connections of their own as `reads` says (for
    /// `serve`'s lookups).
    fn for_serving(&self, reads: ServingReads) -> Result<Arc<dyn ProfileStore>>;
}

/// One row read by key, with its bookkeeping.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// One row, in the store's schema.
    pub row: RecordBatch,
    /// The row's version, in a versioned store.
    pub version: Option<i64>,
    /// When the row was last written (ISO-8601, UTC), in a versioned store.
    pub updated_at: Option<String>,
}

/// What one [`ProfileStore::upsert`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upserted {
    /// Rows inserted or replaced.
    pub written: u64,
    /// Rows left out because the store already held the same or a newer version.
    pub stale: u64,
}

/// The current time as ISO-8601 text in UTC, to the millisecond: what versioned stores
/// write as a row's `_updated_at`.
pub fn now_iso8601() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    datafusion::arrow::temporal_conversions::timestamp_ms_to_datetime(millis)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// A keyed store's table halves: read back as a table, written by versioned upserts.
pub fn store_halves(store: Arc<dyn ProfileStore>) -> super::Halves {
    (
        Some(Arc::new(StoreSource(Arc::clone(&store)))),
        Some(Arc::new(StoreSink::new(store))),
    )
}

/// Where a view's rows live.
#[derive(Debug, Clone)]
pub enum ViewStore {
    /// A keyed table that applies a row only when its version is newer.
    Table(Arc<dyn ProfileStore>),
    /// An upsert topic: the message key is the primary key and a key's last message is its
    /// row. Kafka cannot apply a write conditionally, so rows carry no version there: a
    /// replay writes the same rows again, which readers of the last message per key see as
    /// no change.
    Topic {
        sink: Arc<dyn DataSink>,
        source: Arc<dyn Source>,
    },
}
