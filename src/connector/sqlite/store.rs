//! [`SqliteStore`]: a [`ProfileStore`] in one SQLite file. Connections open on first use
//! (planning a pipeline touches no file) and every call runs on a blocking thread. The
//! pipeline writes through one connection; `serve` reads through a pool of its own
//! (read-only, each read bounded in time), which WAL lets run beside the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result, exec_datafusion_err};
use rusqlite::Connection;

use super::options::SqliteOptions;
use super::values::{ColumnBuilder, SqlColumn, StorageClass};
use crate::connector::store::{
    ColumnTypes, ProfileStore, ServingReads, StoredRow, TableShape, UPDATED_AT_COLUMN, Upserted,
    VERSION_COLUMN, now_iso8601,
};
use crate::sql::{quote, quote_literal};

/// Rows per batch when reading a table back.
const SCAN_BATCH_ROWS: usize = 8192;

/// A keyed table in an SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    options: SqliteOptions,
    shape: TableShape,
    connections: Arc<Connections>,
}

/// The connections of a store, opened as needed, at most `permits` at once.
#[derive(Debug)]
struct Connections {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<tokio::sync::Semaphore>,
    /// Reads only, each within this long: `serve`'s connections.
    read_timeout: Option<Duration>,
}

impl Connections {
    fn new(size: usize, read_timeout: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(size.max(1))),
            read_timeout,
        })
    }
}

impl SqliteStore {
    /// The store of rows of `schema` keyed by `primary_key` (none: rows are appended);
    /// `versioned` stores keep each row's version and apply only newer ones.
    pub fn new(
        options: SqliteOptions,
        schema: SchemaRef,
        primary_key: Vec<String>,
        versioned: bool,
    ) -> Self {
        Self {
            options,
            shape: TableShape {
                schema,
                primary_key,
                versioned,
            },
            connections: Connections::new(1, None),
        }
    }

    /// Runs `work` with a connection on a blocking thread; for `serve`'s reads, within the
    /// read timeout (waiting for a connection included).
    async fn with_connection<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &Layout) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let connections = Arc::clone(&self.connections);
        let layout = Layout {
            options: self.options.clone(),
            shape: self.shape.clone(),
        };
        let read_timeout = connections.read_timeout;
        let run = async move {
            let permit = Arc::clone(&connections.permits)
                .acquire_owned()
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            tokio::task::spawn_blocking(move || {
                let idle = crate::stream::lock(&connections.idle).pop();
                let mut connection = match idle {
                    Some(connection) => connection,
                    None => layout.open(connections.read_timeout)?,
                };
                let done = work(&mut connection, &layout);
                crate::stream::lock(&connections.idle).push(connection);
                drop(permit);
                done
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
        };
        match read_timeout {
            None => run.await,
            Some(limit) => tokio::time::timeout(limit, run).await.map_err(|_| {
                exec_datafusion_err!(
                    "no answer from {} within {} (the read timeout)",
                    self.context(),
                    crate::stream::DisplayNanos(limit.as_nanos() as i64)
                )
            })?,
        }
    }

    fn context(&self) -> String {
        format!(
            "sqlite table {} in {}",
            self.options.table,
            self.options.path.display()
        )
    }
}

#[async_trait]
impl ProfileStore for SqliteStore {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.shape.schema)
    }

    fn primary_key(&self) -> &[String] {
        &self.shape.primary_key
    }

    fn describe(&self) -> String {
        format!(
            "sqlite(path={}, table={}, sync={})",
            self.options.path.display(),
            self.options.table,
            self.options.sync.name()
        )
    }

    async fn upsert(&self, rows: RecordBatch, versions: Option<Int64Array>) -> Result<Upserted> {
        self.shape
            .check_versions(versions.is_some(), &self.context())?;
        let context = self.context();
        self.with_connection(move |connection, layout| {
            layout
                .upsert(connection, &rows, versions.as_ref())
                .map_err(|e| exec_datafusion_err!("upserting into {context}: {e}"))
        })
        .await
    }

    async fn delete_older_than(&self, version: i64) -> Result<u64> {
        self.shape.check_versions(true, &self.context())?;
        let context = self.context();
        self.with_connection(move |connection, layout| {
            let sql = format!(
                "DELETE FROM {} WHERE {} < ?1",
                quote(&layout.options.table),
                quote(VERSION_COLUMN)
            );
            connection
                .execute(&sql, [version])
                .map(|n| n as u64)
                .map_err(|e| exec_datafusion_err!("deleting old rows from {context}: {e}"))
        })
        .await
    }

    async fn get(&self, key: &[String]) -> Result<Option<StoredRow>> {
        self.shape.check_key(key, &self.context())?;
        let context = self.context();
        let key = key.to_vec();
        self.with_connection(move |connection, layout| {
            layout
                .get(connection, &key)
                .map_err(|e| exec_datafusion_err!("reading a row of {context}: {e}"))
        })
        .await
    }

    async fn scan(&self) -> Result<Vec<RecordBatch>> {
        let context = self.context();
        self.with_connection(move |connection, layout| {
            layout
                .scan(connection)
                .map_err(|e| exec_datafusion_err!("reading {context}: {e}"))
        })
        .await
    }

    fn for_serving(&self, reads: ServingReads) -> Result<Arc<dyn ProfileStore>> {
        Ok(Arc::new(Self {
            options: self.options.clone(),
            shape: self.shape.clone(),
            connections: Connections::new(reads.connections, Some(reads.timeout)),
        }))
    }
}

/// How long opening a table waits for other connections to the same file.
const OPEN_WAIT: Duration = Duration::from_secs(10);

/// True when SQLite refused for a lock another connection holds.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// What the blocking side needs to know about the table.
struct Layout {
    options: SqliteOptions,
    shape: TableShape,
}

impl Layout {
    /// Opens the file, creating it, its folder and the table when missing, and checks that
    /// an existing table has the expected columns. With a read timeout, the connection
    /// only reads and waits for locks that long.
    fn open(&self, read_timeout: Option<Duration>) -> Result<Connection> {
        let path = &self.options.path;
        let failed = |e: &dyn std::fmt::Display| {
            exec_datafusion_err!(
                "opening sqlite table {} in {}: {e}",
                self.options.table,
                path.display()
            )
        };
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|e| failed(&e))?;
        }
        let connection = Connection::open(path).map_err(|e| failed(&e))?;
        // First: switching to WAL takes a lock that another connection opening the same
        // file at the same moment (views sharing a file start together, a server's read
        // connections open beside the pipeline's) may hold.
        connection.busy_timeout(OPEN_WAIT).map_err(|e| failed(&e))?;
        // SQLite answers "locked" at once, without waiting, where waiting could deadlock
        // (two connections each turning a read into a write): start over until it passes.
        let deadline = Instant::now() + OPEN_WAIT;
        while let Err(e) = self.prepare(&connection) {
            if !is_busy(&e) || Instant::now() >= deadline {
                return Err(failed(&e));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.check_columns(&connection, path)?;
        if let Some(limit) = read_timeout {
            connection.busy_timeout(limit).map_err(|e| failed(&e))?;
            connection
                .execute_batch("PRAGMA query_only = ON;")
                .map_err(|e| failed(&e))?;
        }
        Ok(connection)
    }

    /// Sets the connection's pragmas and creates the table when missing.
    fn prepare(&self, connection: &Connection) -> rusqlite::Result<()> {
        connection.execute_batch(&format!(
            // WAL: readers never block the writer. A 64 MiB page cache and memory-mapped
            // reads keep a profile table's hot pages out of read syscalls. `synchronous` as
            // the table's 'sync' says: FULL makes each commit durable before the pipeline
            // commits the offsets past it.
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {};
             PRAGMA cache_size = -65536; PRAGMA mmap_size = 268435456;",
            self.options.sync.pragma()
        ))?;
        connection.execute_batch(&self.create_sql())
    }

    fn create_sql(&self) -> String {
        let types = ColumnTypes {
            of: &|t| StorageClass::of(t).sql_type(),
            version: "INTEGER",
            updated_at: "TEXT",
        };
        let create = self.shape.create_sql(&self.options.table, &types);
        // Keyed tables are clustered by their key: an upsert is one B-tree search, not a
        // search of a key index and then of the rowid table.
        match self.shape.primary_key.is_empty() {
            true => create,
            false => format!("{create} WITHOUT ROWID"),
        }
    }

    fn check_columns(&self, connection: &Connection, path: &Path) -> Result<()> {
        let mut statement = connection
            .prepare(&format!(
                "SELECT name FROM pragma_table_info({})",
                quote_literal(&self.options.table)
            ))
            .map_err(sqlite)?;
        let found = statement
            .query_map([], |row| row.get::<_, String>(0))
            .and_then(|names| names.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(sqlite)?;
        self.shape.check_columns(
            &found,
            &format!("sqlite table {} in {}", self.options.table, path.display()),
        )
    }

    fn upsert_sql(&self) -> String {
        let names = self.shape.column_names();
        format!(
            "INSERT INTO {} ({}) VALUES ({}){}",
            quote(&self.options.table),
            names
                .iter()
                .map(|n| quote(n))
                .collect::<Vec<_>>()
                .join(", "),
            (1..=names.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.shape.on_conflict(&self.options.table)
        )
    }

    fn upsert(
        &self,
        connection: &mut Connection,
        rows: &RecordBatch,
        versions: Option<&Int64Array>,
    ) -> Result<Upserted> {
        let columns = rows
            .columns()
            .iter()
            .map(SqlColumn::try_new)
            .collect::<Result<Vec<_>>>()?;
        let updated_at = now_iso8601();
        // Taking the write lock up front: a deferred transaction whose snapshot another
        // writer of the file (a view sharing it) has moved past fails at once with "database
        // is locked", whatever the busy timeout.
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let mut outcome = Upserted::default();
        {
            let mut statement = transaction
                .prepare_cached(&self.upsert_sql())
                .map_err(sqlite)?;
            for row in 0..rows.num_rows() {
                for (index, column) in columns.iter().enumerate() {
                    statement
                        .raw_bind_parameter(index + 1, column.value(row))
                        .map_err(sqlite)?;
                }
                if let Some(versions) = versions {
                    let at = columns.len() + 1;
                    statement
                        .raw_bind_parameter(at, versions.value(row))
                        .map_err(sqlite)?;
                    statement
                        .raw_bind_parameter(at + 1, updated_at.as_str())
                        .map_err(sqlite)?;
                }
                if statement.raw_execute().map_err(sqlite)? > 0 {
                    outcome.written += 1;
                } else {
                    outcome.stale += 1;
                }
            }
        }
        transaction.commit().map_err(sqlite)?;
        Ok(outcome)
    }

    /// `SELECT` of the row's columns, then the version and write time in a versioned store,
    /// of the row whose key is `key`.
    fn get_sql(&self) -> String {
        let mut columns: Vec<String> = self
            .shape
            .schema
            .fields()
            .iter()
            .map(|f| quote(f.name()))
            .collect();
        if self.shape.versioned {
            columns.push(quote(VERSION_COLUMN));
            columns.push(quote(UPDATED_AT_COLUMN));
        }
        let matches: Vec<String> = self
            .shape
            .primary_key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{} = ?{}", quote(k), i + 1))
            .collect();
        format!(
            "SELECT {} FROM {} WHERE {}",
            columns.join(", "),
            quote(&self.options.table),
            matches.join(" AND ")
        )
    }

    fn get(&self, connection: &mut Connection, key: &[String]) -> Result<Option<StoredRow>> {
        let fields = self.shape.schema.fields();
        let mut statement = connection.prepare_cached(&self.get_sql()).map_err(sqlite)?;
        // Text compared with an INTEGER or REAL key column takes the column's affinity.
        let mut rows = statement
            .query(rusqlite::params_from_iter(key.iter()))
            .map_err(sqlite)?;
        let Some(row) = rows.next().map_err(sqlite)? else {
            return Ok(None);
        };
        let mut columns = Vec::with_capacity(fields.len());
        for (index, field) in fields.iter().enumerate() {
            let mut builder = ColumnBuilder::new(field.data_type());
            builder.append(row.get_ref(index).map_err(sqlite)?, field.name())?;
            columns.push(builder.finish(field.data_type())?);
        }
        let (version, updated_at) = match self.shape.versioned {
            true => (
                row.get::<_, Option<i64>>(fields.len()).map_err(sqlite)?,
                row.get::<_, Option<String>>(fields.len() + 1)
                    .map_err(sqlite)?,
            ),
            false => (None, None),
        };
        Ok(Some(StoredRow {
            row: RecordBatch::try_new(Arc::clone(&self.shape.schema), columns)?,
            version,
            updated_at,
        }))
    }

    fn scan(&self, connection: &mut Connection) -> Result<Vec<RecordBatch>> {
        let fields = self.shape.schema.fields();
        let sql = format!(
            "SELECT {} FROM {}",
            fields
                .iter()
                .map(|f| quote(f.name()))
                .collect::<Vec<_>>()
                .join(", "),
            quote(&self.options.table)
        );
        let mut statement = connection.prepare(&sql).map_err(sqlite)?;
        let mut rows = statement.query([]).map_err(sqlite)?;
        let new_builders = || -> Vec<ColumnBuilder> {
            fields
                .iter()
                .map(|f| ColumnBuilder::new(f.data_type()))
                .collect()
        };
        let finish = |builders: Vec<ColumnBuilder>| -> Result<RecordBatch> {
            let columns = builders
                .into_iter()
                .zip(fields.iter())
                .map(|(b, f)| b.finish(f.data_type()))
                .collect::<Result<Vec<_>>>()?;
            Ok(RecordBatch::try_new(
                Arc::clone(&self.shape.schema),
                columns,
            )?)
        };
        let mut batches = Vec::new();
        let mut builders = new_builders();
        let mut count = 0;
        while let Some(row) = rows.next().map_err(sqlite)? {
            for (index, (builder, field)) in builders.iter_mut().zip(fields.iter()).enumerate() {
                builder.append(row.get_ref(index).map_err(sqlite)?, field.name())?;
            }
            count += 1;
            if count == SCAN_BATCH_ROWS {
                batches.push(finish(std::mem::replace(&mut builders, new_builders()))?);
                count = 0;
            }
        }
        if count > 0 || batches.is_empty() {
            batches.push(finish(builders)?);
        }
        Ok(batches)
    }
}

/// An SQLite error as a DataFusion error, keeping it as the cause.
fn sqlite(error: rusqlite::Error) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::sqlite::SqliteSync;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn layout(dir: &Path, sync: SqliteSync) -> Layout {
        Layout {
            options: SqliteOptions {
                path: dir.join("p.db"),
                table: "p".into(),
                sync,
            },
            shape: TableShape {
                schema: Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)])),
                primary_key: vec!["k".into()],
                versioned: true,
            },
        }
    }

    fn synchronous(connection: &Connection) -> i64 {
        connection
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn commits_are_durable_unless_the_table_says_normal() {
        let dir = tempfile::tempdir().unwrap();
        // SQLite's values: 2 is FULL, 1 is NORMAL.
        let full = layout(dir.path(), SqliteSync::Full).open(None).unwrap();
        assert_eq!(synchronous(&full), 2);
        let normal = layout(dir.path(), SqliteSync::Normal).open(None).unwrap();
        assert_eq!(synchronous(&normal), 1);
    }

    #[test]
    fn connections_opening_a_new_file_at_once_all_open() {
        // The pipeline's connection and a server's read connections open a new file
        // together: SQLite refuses some of them at once (waiting could deadlock).
        for round in 0..50 {
            let dir = tempfile::tempdir().unwrap();
            let opened: Vec<_> = (0..6)
                .map(|i| {
                    let layout = layout(dir.path(), SqliteSync::Full);
                    let read_timeout = (i % 2 == 1).then_some(Duration::from_secs(2));
                    std::thread::spawn(move || layout.open(read_timeout).map(|_| ()))
                })
                .collect();
            for thread in opened {
                let outcome = thread.join().unwrap();
                assert!(outcome.is_ok(), "round {round}: {outcome:?}");
            }
        }
    }
}
