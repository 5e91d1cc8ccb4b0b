//! Record batches as JSON lines: one object per row, timestamps as ISO-8601 strings, nulls
//! left out.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::common::Result;

/// Appends `batch` to `out` as JSON lines.
pub fn encode_json_lines(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
    let mut writer = LineDelimitedWriter::new(out);
    writer.write(batch)?;
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    #[test]
    fn timestamps_are_iso_strings() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(TimestampNanosecondArray::from(vec![
                    1_767_225_600_000_000_000,
                    1_767_225_660_500_000_000,
                ])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        encode_json_lines(&batch, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"n\":1,\"ts\":\"2026-01-01T00:00:00\"}\n{\"ts\":\"2026-01-01T00:01:00.500\"}\n"
        );
    }
}
