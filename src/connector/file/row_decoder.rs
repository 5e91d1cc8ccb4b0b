//! [`RowDecoder`]: the push decoder of a JSON-lines or CSV file, fed blocks of bytes as they
//! are read and flushed into Arrow batches of the table's schema.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::common::Result;

use super::options::FileFormat;
use crate::format::{JsonDecoder, JsonOptions};

/// A push decoder of JSON lines or CSV.
pub enum RowDecoder {
    Json(Box<JsonDecoder>),
    Csv(Box<datafusion::arrow::csv::reader::Decoder>),
}

impl RowDecoder {
    pub fn new(format: FileFormat, schema: SchemaRef, batch_size: usize) -> Result<Self> {
        Ok(match format {
            FileFormat::Json => Self::Json(Box::new(JsonDecoder::try_new(
                schema,
                JsonOptions::new(batch_size),
            )?)),
            _ => Self::Csv(Box::new(
                datafusion::arrow::csv::ReaderBuilder::new(schema)
                    .with_header(true)
                    .with_batch_size(batch_size)
                    .build_decoder(),
            )),
        })
    }

    pub fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        match self {
            Self::Json(d) => d.decode(buf),
            Self::Csv(d) => d.decode(buf),
        }
    }

    pub fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        match self {
            Self::Json(d) => d.flush(),
            Self::Csv(d) => d.flush(),
        }
    }
}
