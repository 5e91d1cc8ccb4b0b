//! `WITH` options of the `sqlite` connector.

use std::path::PathBuf;

use crate::error::Error;
use crate::sql::WithOptions;

/// Options of a `sqlite` table or view.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file (created, with its folder, when missing).
    pub path: PathBuf,
    /// The table inside the file; the declared table's or view's name by default.
    pub table: String,
}

impl SqliteOptions {
    /// Consumes the `sqlite` options of the table or view `name`.
    pub fn parse(options: &mut WithOptions, name: &str) -> Result<Self, Error> {
        let path = PathBuf::from(options.required("path")?);
        let table = options.take("table").unwrap_or_else(|| name.to_string());
        if table.is_empty() {
            return Err(options.error("option 'table' is empty"));
        }
        Ok(Self { path, table })
    }
}
