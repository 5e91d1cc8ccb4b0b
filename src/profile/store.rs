//! [`ProfileStore`]: where keyed rows live (SQLite, PostgreSQL): upserted by a view or a
//! keyed sink table, read back as a DataFusion table.

use std::fmt::Debug;

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;

/// The name of the column that holds a stored row's version.
pub const VERSION_COLUMN: &str = "_version";

/// The name of the column that holds when a stored row was last written.
pub const UPDATED_AT_COLUMN: &str = "_updated_at";

/// A table of rows identified by a primary key.
#[async_trait]
pub trait ProfileStore: Debug + Send + Sync {
    /// The columns of a row, without the store's own bookkeeping columns.
    fn schema(&self) -> SchemaRef;

    /// The primary key columns; empty when rows are only appended.
    fn primary_key(&self) -> &[String];

    /// A one-line description for `EXPLAIN`, e.g. `sqlite(path=profiles.db, table=user_profile)`.
    fn describe(&self) -> String;

    /// Writes `rows` in one transaction. With `versions` (one per row), a row replaces the
    /// stored row with the same key only when its version is newer than the stored one, so
    /// that replaying old input changes nothing; without, a row replaces its key's row (or
    /// is appended, when there is no primary key).
    async fn upsert(&self, rows: RecordBatch, versions: Option<Int64Array>) -> Result<Upserted>;

    /// Every stored row.
    async fn scan(&self) -> Result<Vec<RecordBatch>>;

    /// Deletes the rows whose version is older than `version` (keys a finished refresh no
    /// longer returned); returns how many.
    async fn delete_older_than(&self, version: i64) -> Result<u64>;
}

/// What one [`ProfileStore::upsert`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upserted {
    /// Rows inserted or replaced.
    pub written: u64,
    /// Rows left out because the store already held the same or a newer version.
    pub stale: u64,
}
