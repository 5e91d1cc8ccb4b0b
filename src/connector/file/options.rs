//! `WITH` options of the `file` connector.

use crate::error::Error;
use crate::sql::WithOptions;

use super::location::FileLocation;

/// The encoding of a file table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    Json,
    /// Comma-separated values with a header line.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// The format's name in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }
}

/// Options of a `file` table.
#[derive(Debug, Clone)]
pub struct FileOptions {
    pub location: FileLocation,
    pub format: FileFormat,
    /// Rows per decoded batch.
    pub batch_size: usize,
}

impl FileOptions {
    /// Consumes the `file` options.
    pub fn parse(options: &mut WithOptions) -> Result<Self, Error> {
        let path = options.required("path")?;
        let location = FileLocation::resolve(&path)
            .map_err(|e| options.error(format!("option 'path': {e}")))?;
        let format = options
            .choice(
                "format",
                &[
                    ("json", FileFormat::Json),
                    ("csv", FileFormat::Csv),
                    ("parquet", FileFormat::Parquet),
                ],
            )?
            .ok_or_else(|| {
                options.error("missing required option 'format' (json, csv or parquet)")
            })?;
        let batch_size = options.parse::<usize>("batch_size")?.unwrap_or(8192).max(1);
        Ok(Self {
            location,
            format,
            batch_size,
        })
    }
}
