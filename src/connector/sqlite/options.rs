//! `WITH` options of the `sqlite` connector.

use std::path::PathBuf;

use crate::error::Error;
use crate::sql::WithOptions;

/// How far a commit goes before the pipeline counts it written (`'sync'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSync {
    /// `synchronous = FULL`: a committed upsert survives a power cut, so the source
    /// offsets committed after it never skip it.
    Full,
    /// `synchronous = NORMAL`: faster; a power cut (not a crash of the process) may lose
    /// the last commits while the offsets after them are kept: those upserts are lost.
    Normal,
}

impl SqliteSync {
    /// The `PRAGMA synchronous` value.
    pub fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Normal => "normal",
        }
    }
}

/// Options of a `sqlite` table or view.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file (created, with its folder, when missing).
    pub path: PathBuf,
    /// The table inside the file; the declared table's or view's name by default.
    pub table: String,
    /// How durable a commit is before it counts: `full` (the default) or `normal`.
    pub sync: SqliteSync,
}

impl SqliteOptions {
    /// Consumes the `sqlite` options of the table or view `name`.
    pub fn parse(options: &mut WithOptions, name: &str) -> Result<Self, Error> {
        let path = PathBuf::from(options.required("path")?);
        let table = options.take("table").unwrap_or_else(|| name.to_string());
        if table.is_empty() {
            return Err(options.error("option 'table' is empty"));
        }
        let sync = options
            .choice(
                "sync",
                &[("full", SqliteSync::Full), ("normal", SqliteSync::Normal)],
            )?
            .unwrap_or(SqliteSync::Full);
        Ok(Self { path, table, sync })
    }
}
