//! Values of nested Arrow columns (lists, structs, maps) as JSON texts, one per row, and
//! back: how stores without nested types (SQLite, PostgreSQL's JSONB) keep them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::json::{LineDelimitedWriter, ReaderBuilder};
use datafusion::common::{Result, exec_datafusion_err};

/// Each value of a nested column as JSON text (NULL stays NULL).
pub fn json_texts(array: &ArrayRef) -> Result<StringArray> {
    let field = Field::new("v", array.data_type().clone(), true);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![Arc::clone(array)])?;
    let mut lines = Vec::new();
    let mut writer = LineDelimitedWriter::new(&mut lines);
    writer.write(&batch)?;
    writer.finish()?;
    let text = std::str::from_utf8(&lines).map_err(|e| exec_datafusion_err!("JSON text: {e}"))?;
    Ok(text
        .lines()
        .map(|line| {
            line.strip_prefix("{\"v\":")
                .and_then(|rest| rest.strip_suffix('}'))
        })
        .collect())
}

/// Parses JSON texts back into a nested column of `data_type`.
pub fn from_json_texts(texts: &StringArray, data_type: &DataType) -> Result<ArrayRef> {
    let field = Field::new("v", data_type.clone(), true);
    let schema = Arc::new(Schema::new(vec![field]));
    let mut lines = String::new();
    for text in texts {
        match text {
            Some(json) => {
                lines.push_str("{\"v\":");
                lines.push_str(json);
                lines.push_str("}\n");
            }
            None => lines.push_str("{}\n"),
        }
    }
    let mut decoder = ReaderBuilder::new(schema)
        .with_batch_size(texts.len().max(1))
        .build_decoder()?;
    decoder.decode(lines.as_bytes())?;
    match decoder.flush()? {
        Some(batch) => Ok(Arc::clone(batch.column(0))),
        None => Ok(datafusion::arrow::array::new_empty_array(data_type)),
    }
}
