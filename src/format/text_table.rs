//! An aligned text table that can be printed a batch at a time: the header once, column
//! widths fixed by the header and the first rows, so a stream of results reads as one table.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::Result;

/// The narrowest a column is drawn.
const MIN_WIDTH: usize = 8;

/// Formats batches of one schema as rows of a single table.
#[derive(Debug)]
pub struct TextTable {
    schema: SchemaRef,
    widths: Option<Vec<usize>>,
}

impl TextTable {
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            widths: None,
        }
    }

    /// Appends `batch` to `out`, with the header before the first rows.
    pub fn write(&mut self, batch: &RecordBatch, out: &mut String) -> Result<()> {
        let options = FormatOptions::default().with_null("NULL");
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        let rows: Vec<Vec<String>> = (0..batch.num_rows())
            .map(|row| {
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect()
            })
            .collect();
        if self.widths.is_none() {
            // Later rows may be wider than the first ones: leave some room.
            let mut widths: Vec<usize> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().chars().count().max(MIN_WIDTH))
                .collect();
            for row in &rows {
                for (width, value) in widths.iter_mut().zip(row) {
                    *width = (*width).max(value.chars().count());
                }
            }
            let header: Vec<String> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            push_row(out, &header, &widths);
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            push_row(out, &rule, &widths);
            self.widths = Some(widths);
        }
        let widths = self.widths.as_deref().unwrap_or_default();
        for row in &rows {
            push_row(out, row, widths);
        }
        Ok(())
    }
}

fn push_row(out: &mut String, cells: &[String], widths: &[usize]) {
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            out.push_str(" | ");
        }
        out.push_str(cell);
        let pad = width.saturating_sub(cell.chars().count());
        if i + 1 < cells.len() {
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn header_once_and_aligned_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = |users: Vec<&str>, n: Vec<Option<i64>>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(users)),
                    Arc::new(Int64Array::from(n)),
                ],
            )
            .unwrap()
        };
        let mut table = TextTable::new(Arc::clone(&schema));
        let mut out = String::new();
        table
            .write(
                &batch(vec!["u1", "user_long"], vec![Some(3), None]),
                &mut out,
            )
            .unwrap();
        table
            .write(&batch(vec!["u2"], vec![Some(12)]), &mut out)
            .unwrap();
        assert_eq!(
            out,
            "user_id   | n\n--------- | --------\nu1        | 3\nuser_long | NULL\nu2        | 12\n"
        );
    }
}
