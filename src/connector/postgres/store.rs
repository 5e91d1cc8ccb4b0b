//! [`PostgresStore`]: a [`ProfileStore`] in a PostgreSQL table, written through a pool of
//! connections. The table is created (or checked) on first use.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray,
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
use super::types::{array_type, bind_columns, column_type, select_as_text};
use crate::error::Error;
use crate::format::from_json_texts;
use crate::profile::{ProfileStore, UPDATED_AT_COLUMN, Upserted, VERSION_COLUMN};

/// A keyed table in PostgreSQL.
#[derive(Debug)]
pub struct PostgresStore {
    options: PostgresOptions,
    schema: SchemaRef,
    primary_key: Vec<String>,
    /// True when rows carry a version (`_version`, `_updated_at`): the store of a view.
    versioned: bool,
    pool: Pool,
    ready: OnceCell<()>,
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
        let config: tokio_postgres::Config = options.url.parse().map_err(|e| Error::Io {
            context: format!("postgres url {}", options.display_url()),
            source: std::io::Error::other(e),
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .build()
            .map_err(|e| Error::Io {
                context: format!("postgres pool for {}", options.display_url()),
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(Self {
            options,
            schema,
            primary_key,
            versioned,
            pool,
            ready: OnceCell::new(),
        })
    }

    /// Drops the table (benchmarks clean up after themselves with it).
    pub async fn drop_table(&self) -> Result<()> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| self.failed("connecting to", e))?;
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

    fn failed(&self, doing: &str, error: impl std::fmt::Display) -> DataFusionError {
        exec_datafusion_err!("{doing} {}: {error}", self.context())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| self.failed("connecting to", e))?;
        self.ready
            .get_or_try_init(|| async {
                client
                    .batch_execute(&self.create_sql())
                    .await
                    .map_err(|e| self.failed("creating", e))?;
                self.check_columns(&client).await
            })
            .await?;
        Ok(client)
    }

    /// Every stored column name, in order.
    fn column_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if self.versioned {
            names.push(VERSION_COLUMN.into());
            names.push(UPDATED_AT_COLUMN.into());
        }
        names
    }

    fn create_sql(&self) -> String {
        let mut columns: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|field| {
                let not_null = if self.primary_key.contains(field.name()) {
                    " NOT NULL"
                } else {
                    ""
                };
                format!(
                    "{} {}{not_null}",
                    quote(field.name()),
                    column_type(field.data_type())
                )
            })
            .collect();
        if self.versioned {
            columns.push(format!("{} BIGINT NOT NULL", quote(VERSION_COLUMN)));
            columns.push(format!("{} TIMESTAMPTZ NOT NULL", quote(UPDATED_AT_COLUMN)));
        }
        if !self.primary_key.is_empty() {
            columns.push(format!("PRIMARY KEY ({})", self.key_list()));
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote(&self.options.table),
            columns.join(", ")
        )
    }

    fn key_list(&self) -> String {
        self.primary_key
            .iter()
            .map(|k| quote(k))
            .collect::<Vec<_>>()
            .join(", ")
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
        let expected = self.column_names();
        if found != expected {
            return exec_err!(
                "{} already has the columns ({}), not ({}): drop it, or store this table under another 'table' name",
                self.context(),
                found.join(", "),
                expected.join(", ")
            );
        }
        Ok(())
    }

    fn upsert_sql(&self) -> String {
        let table = quote(&self.options.table);
        let fields = self.schema.fields();
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
        if self.versioned {
            arrays.push(format!("${}::bigint[]", fields.len() + 1));
            names.push(quote(VERSION_COLUMN));
            selected.push(quote(VERSION_COLUMN));
        }
        let unnested = names.join(", ");
        if self.versioned {
            names.push(quote(UPDATED_AT_COLUMN));
            selected.push("now()".into());
        }
        let mut sql = format!(
            "INSERT INTO {table} ({}) SELECT {} FROM unnest({}) AS u({unnested})",
            names.join(", "),
            selected.join(", "),
            arrays.join(", ")
        );
        if self.primary_key.is_empty() {
            return sql;
        }
        let updates: Vec<String> = self
            .column_names()
            .iter()
            .filter(|n| !self.primary_key.contains(n))
            .map(|n| format!("{0} = excluded.{0}", quote(n)))
            .collect();
        sql.push_str(&format!(" ON CONFLICT ({}) DO ", self.key_list()));
        if updates.is_empty() {
            sql.push_str("NOTHING");
        } else {
            sql.push_str(&format!("UPDATE SET {}", updates.join(", ")));
            if self.versioned {
                let version = quote(VERSION_COLUMN);
                sql.push_str(&format!(" WHERE {table}.{version} < excluded.{version}"));
            }
        }
        sql
    }

    /// The rows to write: with a primary key, one per key (the newest; the last written
    /// when equal), since one statement cannot change a row twice.
    fn distinct_rows(
        &self,
        rows: &RecordBatch,
        versions: Option<&Int64Array>,
    ) -> Result<Vec<usize>> {
        let all: Vec<usize> = (0..rows.num_rows()).collect();
        if self.primary_key.is_empty() {
            return Ok(all);
        }
        let keys: Vec<ArrayRef> = self
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
            let newer = match versions {
                Some(v) => v.value(row) >= v.value(*slot),
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
        Arc::clone(&self.schema)
    }

    fn primary_key(&self) -> &[String] {
        &self.primary_key
    }

    fn describe(&self) -> String {
        format!(
            "postgres(url={}, table={}, pool={})",
            self.options.display_url(),
            self.options.table,
            self.options.pool_size
        )
    }

    async fn upsert(&self, rows: RecordBatch, versions: Option<Int64Array>) -> Result<Upserted> {
        if versions.is_some() != self.versioned {
            return exec_err!(
                "{}: rows {} versions but the table {}",
                self.context(),
                if versions.is_some() { "carry" } else { "lack" },
                if self.versioned {
                    "keeps them"
                } else {
                    "has none"
                }
            );
        }
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
        if !self.versioned {
            return exec_err!("{}: rows have no versions", self.context());
        }
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

    async fn scan(&self) -> Result<Vec<RecordBatch>> {
        let fields = self.schema.fields();
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
            Arc::clone(&self.schema),
            columns,
        )?])
    }
}

/// PostgreSQL's text rendering of a column as `data_type`.
fn from_text(texts: &StringArray, data_type: &DataType) -> Result<ArrayRef> {
    match (column_type(data_type), data_type) {
        ("JSONB", _) => from_json_texts(texts, data_type),
        (_, DataType::Boolean) => Ok(Arc::new(
            texts
                .iter()
                .map(|t| t.map(|t| t == "t" || t == "true"))
                .collect::<BooleanArray>(),
        )),
        _ => Ok(cast(texts as &dyn Array, data_type)?),
    }
}

/// `name` as an SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
