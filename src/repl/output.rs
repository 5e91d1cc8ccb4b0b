//! How the REPL prints query results: an aligned table (the default), JSON lines, or CSV.
//! Rows are printed batch by batch as they arrive, so a long query shows its first rows
//! at once.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::Result;

use crate::format::{TextTable, encode_json_lines};

/// The output formats of `\format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned text table with a header.
    #[default]
    Table,
    /// One JSON object per row, timestamps as ISO-8601.
    Json,
    /// Comma-separated values with a header line (RFC 4180 quoting).
    Csv,
}

impl OutputFormat {
    /// `table`, `json` or `csv`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "table" => Ok(Self::Table),
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            other => Err(format!(
                "unknown format '{other}': expected table, json or csv"
            )),
        }
    }
}

/// Formats the batches of one result.
pub struct ResultPrinter {
    format: OutputFormat,
    schema: SchemaRef,
    table: TextTable,
    header_written: bool,
}

impl ResultPrinter {
    pub fn new(format: OutputFormat, schema: SchemaRef) -> Self {
        Self {
            format,
            table: TextTable::new(std::sync::Arc::clone(&schema)),
            schema,
            header_written: false,
        }
    }

    /// The text of `batch`, the header before the first rows.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>> {
        match self.format {
            OutputFormat::Table => {
                let mut out = String::new();
                if batch.num_rows() > 0 {
                    self.table.write(batch, &mut out)?;
                    self.header_written = true;
                }
                Ok(out.into_bytes())
            }
            OutputFormat::Json => {
                let mut out = Vec::new();
                encode_json_lines(batch, &mut out)?;
                Ok(out)
            }
            OutputFormat::Csv => {
                let mut out = String::new();
                if !self.header_written {
                    out.push_str(&self.csv_header());
                    self.header_written = true;
                }
                let options = FormatOptions::default();
                let formatters = batch
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                    .collect::<Result<Vec<_>, _>>()?;
                for row in 0..batch.num_rows() {
                    let values: Vec<String> = batch
                        .columns()
                        .iter()
                        .zip(&formatters)
                        .map(|(column, f)| match column.is_null(row) {
                            true => String::new(),
                            false => csv_field(&f.value(row).to_string()),
                        })
                        .collect();
                    out.push_str(&values.join(","));
                    out.push('\n');
                }
                Ok(out.into_bytes())
            }
        }
    }

    /// What ends a result of `rows` rows: the header of an empty table, and the count.
    pub fn finish(&mut self, rows: u64) -> Vec<u8> {
        match self.format {
            OutputFormat::Table => {
                let mut out = String::new();
                if !self.header_written {
                    let names: Vec<&str> = self
                        .schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect();
                    out.push_str(&names.join(" | "));
                    out.push('\n');
                }
                out.push_str(&format!(
                    "({rows} row{})\n",
                    if rows == 1 { "" } else { "s" }
                ));
                out.into_bytes()
            }
            OutputFormat::Csv if !self.header_written => self.csv_header().into_bytes(),
            OutputFormat::Json | OutputFormat::Csv => Vec::new(),
        }
    }
}

impl ResultPrinter {
    /// The CSV header line: the column names.
    fn csv_header(&self) -> String {
        let names: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| csv_field(f.name()))
            .collect();
        format!("{}\n", names.join(","))
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("events", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("u,1"), None])),
                Arc::new(Int64Array::from(vec![Some(3), Some(4)])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn csv_quotes_what_needs_it_and_leaves_nulls_empty() {
        let batch = batch();
        let mut printer = ResultPrinter::new(OutputFormat::Csv, batch.schema());
        let text = String::from_utf8(printer.batch(&batch).unwrap()).unwrap();
        assert_eq!(text, "user_id,events\n\"u,1\",3\n,4\n");
    }

    #[test]
    fn json_prints_one_object_per_row() {
        let batch = batch();
        let mut printer = ResultPrinter::new(OutputFormat::Json, batch.schema());
        let text = String::from_utf8(printer.batch(&batch).unwrap()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with("{\"user_id\":\"u,1\",\"events\":3}"));
    }

    #[test]
    fn an_empty_table_still_shows_its_columns() {
        let batch = batch();
        let mut printer = ResultPrinter::new(OutputFormat::Table, batch.schema());
        let text = String::from_utf8(printer.finish(0)).unwrap();
        assert_eq!(text, "user_id | events\n(0 rows)\n");
    }
}
