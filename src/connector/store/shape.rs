//! [`TableShape`]: the columns, key and versioning of a store table, and the SQL that both
//! SQL stores (SQLite, PostgreSQL) build from it: the table's definition and the
//! `ON CONFLICT` clause that applies a row only when it is newer.

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{Result, exec_err};

use super::{UPDATED_AT_COLUMN, VERSION_COLUMN};
use crate::sql::quote;

/// What a store table holds.
#[derive(Debug, Clone)]
pub struct TableShape {
    /// The columns of a row, without the bookkeeping columns.
    pub schema: SchemaRef,
    /// The key columns; empty when rows are appended.
    pub primary_key: Vec<String>,
    /// True when rows carry a version (`_version`, `_updated_at`): the store of a view.
    pub versioned: bool,
}

/// How a store spells its column types.
pub struct ColumnTypes<'a> {
    /// The type of a row's column.
    pub of: &'a dyn Fn(&DataType) -> &'static str,
    pub version: &'static str,
    pub updated_at: &'static str,
}

impl TableShape {
    /// Every stored column name, in order.
    pub fn column_names(&self) -> Vec<String> {
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

    /// `CREATE TABLE IF NOT EXISTS table (...)`, key columns `NOT NULL`.
    pub fn create_sql(&self, table: &str, types: &ColumnTypes<'_>) -> String {
        let mut columns: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|field| {
                let not_null = match self.primary_key.contains(field.name()) {
                    true => " NOT NULL",
                    false => "",
                };
                format!(
                    "{} {}{not_null}",
                    quote(field.name()),
                    (types.of)(field.data_type())
                )
            })
            .collect();
        if self.versioned {
            columns.push(format!(
                "{} {} NOT NULL",
                quote(VERSION_COLUMN),
                types.version
            ));
            columns.push(format!(
                "{} {} NOT NULL",
                quote(UPDATED_AT_COLUMN),
                types.updated_at
            ));
        }
        if !self.primary_key.is_empty() {
            columns.push(format!("PRIMARY KEY ({})", self.key_list()));
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote(table),
            columns.join(", ")
        )
    }

    /// The key columns, quoted and comma-separated.
    pub fn key_list(&self) -> String {
        self.primary_key
            .iter()
            .map(|k| quote(k))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What an insert into `table` does with a row whose key is stored: replace it (only
    /// when newer, for versioned rows); empty without a key.
    pub fn on_conflict(&self, table: &str) -> String {
        if self.primary_key.is_empty() {
            return String::new();
        }
        let updates: Vec<String> = self
            .column_names()
            .iter()
            .filter(|n| !self.primary_key.contains(n))
            .map(|n| format!("{0} = excluded.{0}", quote(n)))
            .collect();
        let mut clause = format!(" ON CONFLICT ({}) DO ", self.key_list());
        if updates.is_empty() {
            clause.push_str("NOTHING");
            return clause;
        }
        clause.push_str(&format!("UPDATE SET {}", updates.join(", ")));
        if self.versioned {
            let version = quote(VERSION_COLUMN);
            clause.push_str(&format!(
                " WHERE {}.{version} < excluded.{version}",
                quote(table)
            ));
        }
        clause
    }

    /// An error unless rows carry versions exactly when the table keeps them.
    pub fn check_versions(&self, carried: bool, store: &str) -> Result<()> {
        if carried != self.versioned {
            return exec_err!(
                "{store}: rows {} versions but the table {}",
                if carried { "carry" } else { "lack" },
                if self.versioned {
                    "keeps them"
                } else {
                    "has none"
                }
            );
        }
        Ok(())
    }

    /// An error unless `key` has one value per primary key column.
    pub fn check_key(&self, key: &[String], store: &str) -> Result<()> {
        if key.is_empty() || key.len() != self.primary_key.len() {
            return exec_err!(
                "{store}: a lookup takes one value per primary key column ({})",
                self.primary_key.join(", ")
            );
        }
        Ok(())
    }

    /// An error unless `found` (an existing table's columns) are the expected ones.
    pub fn check_columns(&self, found: &[String], store: &str) -> Result<()> {
        let expected = self.column_names();
        if found != expected {
            return exec_err!(
                "{store} already has the columns ({}), not ({}): drop it, or store this table under another 'table' name",
                found.join(", "),
                expected.join(", ")
            );
        }
        Ok(())
    }
}
