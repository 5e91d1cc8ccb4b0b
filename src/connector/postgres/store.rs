//! [`PostgresStore`]: a [`ProfileStore`] in a PostgreSQL table, written through a pool of
//! connections. The table is created (or checked) on first use. `serve` reads through a
//! pool of its own, each read (connecting and waiting for a connection included) bounded
//! in time, so a flood of lookups or a database that is down cannot hold the pipeline's
//! connections nor hang requests.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{DataFusionError, Result, exec_datafusion_err, exec_err};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use super::options::PostgresOptions;
use super::tls::{client_config, ssl_mode_of};
use super::types::{array_type, bind_columns, column_type, select_as_text};
use crate::connector::store::{
    ColumnTypes, ProfileStore, ServingReads, StoredRow, TableShape, UPDATED_AT_COLUMN, Upserted,
    VERSION_COLUMN,
};
use crate::error::Error;
use crate::format::from_json_texts;
use crate::sql::{quote, quote_literal};

/// A keyed table in PostgreSQL.
#[derive(Debug)]
pub struct PostgresStore {
    options: PostgresOptions,
    shape: TableShape,
    pool: Pool,
    ready: OnceCell<()>,
    /// `serve`'s reads: each within this long.
    read_timeout: Option<Duration>,
}

/// `error` and the errors that caused it, outermost first: a failed connection says why
/// (a TLS handshake's "invalid peer certificate: UnknownIssuer", say), not only that it
/// failed.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}

/// A pool of at most `size` connections to `options`' database; with a timeout, every
/// step (waiting for a connection, connecting, each statement) is bounded by it.
fn pool(options: &PostgresOptions, size: usize, timeout: Option<Duration>) -> Result<Pool, Error> {
    let bad_url = |e: String| Error::Io {
        context: format!("postgres url {}", options.display_url()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    };
    let (url, ssl) = ssl_mode_of(&options.url).map_err(bad_url)?;
    let tls = client_config(&ssl).map_err(bad_url)?;
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| bad_url(e.to_string()))?;
    if tls.is_some() {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    if let Some(limit) = timeout {
        config.connect_timeout(limit);
        config.options(format!("-c statement_timeout={}", limit.as_millis().max(1)));
    }
    let recycling = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        Some(tls) => Manager::from_config(config, tls, recycling),
        None => Manager::from_config(config, NoTls, recycling),
    };
    let mut builder = Pool::builder(manager).max_size(size);
    if let Some(limit) = timeout {
        builder = builder
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(limit))
            .create_timeout(Some(limit))
            .recycle_timeout(Some(limit));
    }
    builder.build().map_err(|e| Error::Io {
        context: format!("postgres pool for {}", options.display_url()),
        source: std::io::Error::other(e.to_string()),
    })
}

impl PostgresStore {
    /// The store of rows of `schema` keyed by `primary_key` (none: rows are appended);
    /// `versioned` stores keep each row's version and apply only newer ones.
    pub fn try_new(
        options: PostgresOptions,
        schema: SchemaRef,
        primary_key: Vec<String>,
        versioned: bool,
    ) -> Result<Self, Error> {
        let pool = pool(&options, options.pool_size, None)?;
        Ok(Self {
            options,
            shape: TableShape {
                schema,
                primary_key,
                versioned,
            },
            pool,
            ready: OnceCell::new(),
            read_timeout: None,
        })
    }

    /// Drops the table (benchmarks clean up after themselves with it).
    pub async fn drop_table(&self) -> Result<()> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| self.failed("connecting to", with_causes(&e)))?;
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {}",
                quote(&self.options.table)
            ))
            .await
            .map_err(|e| self.failed("dropping", e))
    }

    fn context(&self) -> String {
        format!(
            "postgres table {} at {}",
            self.options.table,
            self.options.display_url()
        )
    }

    /// The row of `key`, read on one of the pool's connections.
    async fn read_row(&self, key: &[String]) -> Result<Option<StoredRow>> {
        self.shape.check_key(key, &self.context())?;
        let fields = self.shape.schema.fields();
        let mut columns: Vec<String> = fields
            .iter()
            .map(|f| select_as_text(&quote(f.name()), f.data_type()))
            .collect();
        if self.shape.versioned {
            columns.push(quote(VERSION_COLUMN));
            columns.push(format!(
                "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
                quote(UPDATED_AT_COLUMN)
            ));
        }
        let mut matches = Vec::new();
        for (i, name) in self.shape.primary_key.iter().enumerate() {
            let field = self.shape.schema.field_with_name(name)?;
            matches.push(format!(
                "{} = CAST(${}::text AS {})",
                quote(name),
                i + 1,
                column_type(field.data_type())
            ));
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            columns.join(", "),
            quote(&self.options.table),
            matches.join(" AND ")
        );
        let params: Vec<&(dyn ToSql + Sync)> =
            key.iter().map(|k| k as &(dyn ToSql + Sync)).collect();
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| self.failed("preparing a lookup in", e))?;
        let Some(row) = client
            .query_opt(&statement, &params)
            .await
            .map_err(|e| self.failed("reading a row of", e))?
        else {
            return Ok(None);
        };
        let values = fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let text = row
                    .try_get::<_, Option<String>>(i)
                    .map_err(|e| self.failed("reading a row of", e))?;
                from_text(&StringArray::from(vec![text]), field.data_type())
            })
            .collect::<Result<Vec<_>>>()?;
        let (version, updated_at) = match self.shape.versioned {
            true => (
                row.try_get::<_, Option<i64>>(fields.len())
                    .map_err(|e| self.failed("reading a row's version of", e))?,
                row.try_get::<_, Option<String>>(fields.len() + 1)
                    .map_err(|e| self.failed("reading a row's write time of", e))?,
            ),
            false => (None, None),
        };
        Ok(Some(StoredRow {
            row: RecordBatch::try_new(Arc::clone(&self.shape.schema), values)?,
            version,
            updated_at,
        }))
    }

    fn failed(&self, doing: &str, error: impl std::fmt::Display) -> DataFusionError {
        exec_datafusion_err!("{doing} {}: {error}", self.context())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| self.failed("connecting to", with_causes(&e)))?;
        self.ready
            .get_or_try_init(|| async {
                // Tasks of a consumer group on several machines create the same table at
                // once, and PostgreSQL's `CREATE TABLE IF NOT EXISTS` is not safe against
                // itself: one creator at a time, under a lock named after the table (held
                // to the end of the implicit transaction of this one query).
                client
                    .batch_execute(&format!(
                        "SELECT pg_advisory_xact_lock(hashtext({})); {}",
                        quote_literal(&format!("profusion table {}", self.options.table)),
                        self.create_sql()
                    ))
                    .await
                    .map_err(|e| self.failed("creating", e))?;
                self.check_columns(&client).await
            })
            .await?;
        Ok(client)
    }

    fn create_sql(&self) -> String {
        let types = ColumnTypes {
            of: &column_type,
            version: "BIGINT",
            updated_at: "TIMESTAMPTZ",
        };
        self.shape.create_sql(&self.options.table, &types)
    }

    async fn check_columns(&self, client: &tokio_postgres::Client) -> Result<()> {
        let rows = client
            .query(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1
                 ORDER BY ordinal_position",
                &[&self.options.table],
            )
            .await
            .map_err(|e| self.failed("reading the columns of", e))?;
        let found: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        self.shape.check_columns(&found, &self.context())
    }

    fn upsert_sql(&self) -> String {
        let fields = self.shape.schema.fields();
        let mut names: Vec<String> = fields.iter().map(|f| quote(f.name())).collect();
        let mut arrays: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| format!("${}::{}", i + 1, array_type(f.data_type())))
            .collect();
        let mut selected: Vec<String> = fields
            .iter()
            .map(|f| match array_type(f.data_type()) {
                "text[]" => format!("{}::{}", quote(f.name()), column_type(f.data_type())),
                _ => quote(f.name()),
            })
            .collect();
        if self.shape.versioned {
            arrays.push(format!("${}::bigint[]", fields.len() + 1));
            names.push(quote(VERSION_COLUMN));
            selected.push(quote(VERSION_COLUMN));
        }
        let unnested = names.join(", ");
        if self.shape.versioned {
            names.push(quote(UPDATED_AT_COLUMN));
            selected.push("now()".into());
        }
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS u({unnested}){}",
            quote(&self.options.table),
            names.join(", "),
            selected.join(", "),
            arrays.join(", "),
            self.shape.on_conflict(&self.options.table)
        )
    }

    /// The rows to write: with a primary key, one per key (the newest version, the first
    /// of equal ones; without versions the last), since one statement cannot change a row
    /// twice.
    fn distinct_rows(
        &self,
        rows: &RecordBatch,
        versions: Option<&Int64Array>,
    ) -> Result<Vec<usize>> {
        let all: Vec<usize> = (0..rows.num_rows()).collect();
        if self.shape.primary_key.is_empty() {
            return Ok(all);
        }
        let keys: Vec<ArrayRef> = self
            .shape
            .primary_key
            .iter()
            .map(|k| {
                rows.schema()
                    .index_of(k)
                    .map(|i| Arc::clone(rows.column(i)))
            })
            .collect::<Result<_, _>>()?;
        let converter = RowConverter::new(
            keys.iter()
                .map(|k| SortField::new(k.data_type().clone()))
                .collect(),
        )?;
        let encoded = converter.convert_columns(&keys)?;
        let mut newest: hashbrown::HashMap<&[u8], usize> =
            hashbrown::HashMap::with_capacity(rows.num_rows());
        for (row, key) in encoded.iter().enumerate() {
            let slot = newest.entry(key.data()).or_insert(row);
            // Of equal versions the first stays, as a store applying rows one by one would
            // keep it (only a newer version replaces a row).
            let newer = match versions {
                Some(v) => v.value(row) > v.value(*slot),
                None => true,
            };
            if newer {
                *slot = row;
            }
        }
        if newest.len() == rows.num_rows() {
            return Ok(all);
        }
        let mut kept: Vec<usize> = newest.into_values().collect();
        kept.sort_unstable();
        Ok(kept)
    }
}

#[async_trait]
impl ProfileStore for PostgresStore {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.shape.schema)
    }

    fn primary_key(&self) -> &[String] {
        &self.shape.primary_key
    }

    fn describe(&self) -> String {
        format!(
            "postgres(url={}, table={}, pool={})",
            self.options.display_url(),
            self.options.table,
            self.options.pool_size
        )
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn upsert(&self, rows: RecordBatch, versions: Option<Int64Array>) -> Result<Upserted> {
        self.shape
            .check_versions(versions.is_some(), &self.context())?;
        if rows.num_rows() == 0 {
            return Ok(Upserted::default());
        }
        let kept = self.distinct_rows(&rows, versions.as_ref())?;
        let mut columns = bind_columns(&rows, &kept)?;
        if let Some(versions) = &versions {
            columns.push(super::types::BoundColumn::Int(
                kept.iter().map(|&r| Some(versions.value(r))).collect(),
            ));
        }
        let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|c| c.as_param()).collect();
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.upsert_sql())
            .await
            .map_err(|e| self.failed("preparing the upsert into", e))?;
        let written = client
            .execute(&statement, &params)
            .await
            .map_err(|e| self.failed("upserting into", e))?;
        Ok(Upserted {
            written,
            stale: rows.num_rows() as u64 - written,
        })
    }

    async fn delete_older_than(&self, version: i64) -> Result<u64> {
        self.shape.check_versions(true, &self.context())?;
        let client = self.client().await?;
        let sql = format!(
            "DELETE FROM {} WHERE {} < $1",
            quote(&self.options.table),
            quote(VERSION_COLUMN)
        );
        client
            .execute(&sql, &[&version])
            .await
            .map_err(|e| self.failed("deleting old rows from", e))
    }

    async fn get(&self, key: &[String]) -> Result<Option<StoredRow>> {
        match self.read_timeout {
            None => self.read_row(key).await,
            Some(limit) => tokio::time::timeout(limit, self.read_row(key))
                .await
                .map_err(|_| {
                    self.failed(
                        "no answer within the read timeout from",
                        crate::stream::DisplayNanos(limit.as_nanos() as i64),
                    )
                })?,
        }
    }

    fn for_serving(&self, reads: ServingReads) -> Result<Arc<dyn ProfileStore>> {
        let pool = pool(&self.options, reads.connections, Some(reads.timeout))
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Arc::new(Self {
            options: self.options.clone(),
            shape: self.shape.clone(),
            pool,
            ready: OnceCell::new(),
            read_timeout: Some(reads.timeout),
        }))
    }

    async fn scan(&self) -> Result<Vec<RecordBatch>> {
        let fields = self.shape.schema.fields();
        let sql = format!(
            "SELECT {} FROM {}",
            fields
                .iter()
                .map(|f| select_as_text(&quote(f.name()), f.data_type()))
                .collect::<Vec<_>>()
                .join(", "),
            quote(&self.options.table)
        );
        let client = self.client().await?;
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(|e| self.failed("reading", e))?;
        let columns = fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let texts: StringArray = rows
                    .iter()
                    .map(|row| row.get::<_, Option<String>>(i))
                    .collect();
                from_text(&texts, field.data_type())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(vec![RecordBatch::try_new(
            Arc::clone(&self.shape.schema),
            columns,
        )?])
    }
}

/// Bytes from the hex text `encode(…, 'hex')` gives.
fn from_hex(text: &str) -> Result<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return exec_err!("bytes read back as odd-length hex: {text}");
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| exec_datafusion_err!("bytes read back as bad hex: {text}"))
        })
        .collect()
}

/// PostgreSQL's text rendering of a column as `data_type`.
fn from_text(texts: &StringArray, data_type: &DataType) -> Result<ArrayRef> {
    match (column_type(data_type), data_type) {
        ("JSONB", _) => from_json_texts(texts, data_type),
        ("BYTEA", _) => {
            let bytes: BinaryArray = texts
                .iter()
                .map(|t| t.map(from_hex).transpose())
                .collect::<Result<_>>()?;
            Ok(cast(&bytes as &dyn Array, data_type)?)
        }
        (_, DataType::Boolean) => Ok(Arc::new(
            texts
                .iter()
                .map(|t| t.map(|t| t == "t" || t == "true"))
                .collect::<BooleanArray>(),
        )),
        _ => Ok(cast(texts as &dyn Array, data_type)?),
    }
}
