//! [`JsonDecoder`]: Arrow's push decoder of JSON values, with the timestamps of a table's
//! columns read on a fast path. arrow-json sets up a general timestamp parser for every
//! value, about a third of decoding a typical event; here a timestamp column is decoded as
//! text and read by [`iso_instant`], with Arrow's parser for the forms that does not read.
//!
//! What is decoded, and every error, stays exactly arrow-json's: the bytes of the rows
//! since the last flush are kept, and a batch the fast path cannot finish (a number in a
//! timestamp column, a bad value anywhere) is decoded again by a plain arrow-json decoder,
//! whose batch or error is the answer. When that one succeeds the data is of a shape the
//! fast path does not take, and the decoder stays plain from then on.

use std::sync::Arc;

use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch};
use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
use datafusion::arrow::datatypes::{
    ArrowTimestampType, DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::json::reader::Decoder;

use super::iso_timestamp::{in_unit, iso_instant};

/// How a [`JsonDecoder`] reads rows.
#[derive(Debug, Clone, Copy)]
pub struct JsonOptions {
    /// Rows per batch: `decode` stops taking bytes once it holds this many.
    pub batch_size: usize,
    /// A field the schema does not have is an error.
    pub strict: bool,
    /// Read timestamp columns on the fast path (off once a decoder found it does not pay).
    pub fast_timestamps: bool,
}

impl JsonOptions {
    /// Batches of `batch_size` rows, unknown fields ignored, timestamps on the fast path.
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            strict: false,
            fast_timestamps: true,
        }
    }
}

/// A push decoder of JSON values into batches of one schema, as arrow-json's.
pub struct JsonDecoder {
    schema: SchemaRef,
    options: JsonOptions,
    mode: Mode,
}

enum Mode {
    /// Timestamp columns decoded as text and parsed at each flush.
    Fast {
        text: Box<Decoder>,
        text_schema: SchemaRef,
        /// The timestamp columns: index and unit.
        timestamps: Vec<(usize, TimeUnit)>,
        /// The bytes the decoder took since the last flush, to decode again plainly.
        taken: Vec<u8>,
    },
    Plain(Box<Decoder>),
}

impl JsonDecoder {
    pub fn try_new(schema: SchemaRef, options: JsonOptions) -> Result<Self, ArrowError> {
        let timestamps: Vec<(usize, TimeUnit)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter_map(|(index, field)| match field.data_type() {
                // Text without a zone reads as UTC only in a column without one.
                DataType::Timestamp(unit, None) => Some((index, *unit)),
                _ => None,
            })
            .collect();
        let mode = match options.fast_timestamps && !timestamps.is_empty() {
            true => {
                let text_schema = Arc::new(Schema::new_with_metadata(
                    schema
                        .fields()
                        .iter()
                        .map(|field| match field.data_type() {
                            DataType::Timestamp(_, None) => {
                                Arc::new(Field::clone(field).with_data_type(DataType::Utf8))
                            }
                            _ => Arc::clone(field),
                        })
                        .collect::<Vec<_>>(),
                    schema.metadata().clone(),
                ));
                Mode::Fast {
                    text: Box::new(plain_decoder(&text_schema, options)?),
                    text_schema,
                    timestamps,
                    taken: Vec::new(),
                }
            }
            false => Mode::Plain(Box::new(plain_decoder(&schema, options)?)),
        };
        Ok(Self {
            schema,
            options,
            mode,
        })
    }

    /// Whether timestamps are still read on the fast path; once a batch showed that they
    /// cannot be, later decoders of the same source should start plain.
    pub fn fast_timestamps(&self) -> bool {
        matches!(self.mode, Mode::Fast { .. })
    }

    /// Takes bytes of JSON values, as arrow-json's `Decoder::decode`: how many it took.
    pub fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        match &mut self.mode {
            Mode::Fast { text, taken, .. } => {
                let took = text.decode(buf)?;
                taken.extend_from_slice(&buf[..took]);
                Ok(took)
            }
            Mode::Plain(decoder) => decoder.decode(buf),
        }
    }

    /// The rows taken since the last flush, as arrow-json's `Decoder::flush`.
    pub fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        let (text, text_schema, timestamps, taken) = match &mut self.mode {
            Mode::Plain(decoder) => return decoder.flush(),
            Mode::Fast {
                text,
                text_schema,
                timestamps,
                taken,
            } => (text, text_schema, timestamps, taken),
        };
        let fast = text.flush().and_then(|batch| match batch {
            Some(batch) => {
                let columns = parse_timestamps(&batch, timestamps)?;
                RecordBatch::try_new(Arc::clone(&self.schema), columns).map(Some)
            }
            None => Ok(None),
        });
        if let Ok(batch) = fast {
            taken.clear();
            return Ok(batch);
        }
        // A failed flush leaves the decoder holding its rows: start a new one.
        **text = plain_decoder(text_schema, self.options)?;
        let mut plain = plain_decoder(&self.schema, self.options)?;
        let bytes = std::mem::take(taken);
        plain.decode(&bytes)?;
        let batch = plain.flush()?;
        self.mode = Mode::Plain(Box::new(plain));
        Ok(batch)
    }
}

fn plain_decoder(schema: &SchemaRef, options: JsonOptions) -> Result<Decoder, ArrowError> {
    ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(options.batch_size)
        .with_strict_mode(options.strict)
        .build_decoder()
}

/// The columns of `batch` with the text of each of `timestamps` parsed.
fn parse_timestamps(
    batch: &RecordBatch,
    timestamps: &[(usize, TimeUnit)],
) -> Result<Vec<ArrayRef>, ArrowError> {
    let mut columns = batch.columns().to_vec();
    for &(index, unit) in timestamps {
        let column = &columns[index];
        columns[index] = match unit {
            TimeUnit::Second => parse_column::<TimestampSecondType>(column),
            TimeUnit::Millisecond => parse_column::<TimestampMillisecondType>(column),
            TimeUnit::Microsecond => parse_column::<TimestampMicrosecondType>(column),
            TimeUnit::Nanosecond => parse_column::<TimestampNanosecondType>(column),
        }?;
    }
    Ok(columns)
}

/// A column of timestamp texts as timestamps in `T`'s unit; nulls stay null.
fn parse_column<T: ArrowTimestampType>(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let texts = column.as_string::<i32>();
    let mut utc: Option<Tz> = None;
    let mut values = Vec::with_capacity(texts.len());
    for index in 0..texts.len() {
        // A null's text is empty; it parses to nothing and is masked.
        let text = texts.value(index);
        let instant = match iso_instant(text.as_bytes()) {
            Some(instant) => Some(instant),
            None if texts.is_null(index) => Some((0, 0)),
            None => {
                let utc = match &utc {
                    Some(utc) => utc,
                    None => utc.insert("+00:00".parse()?),
                };
                string_to_datetime(utc, text)
                    .ok()
                    .map(|date| (date.timestamp(), date.timestamp_subsec_nanos()))
            }
        };
        let Some(value) = instant.and_then(|instant| in_unit(instant, T::UNIT)) else {
            return Err(ArrowError::JsonError(format!(
                "failed to parse \"{text}\" as a timestamp"
            )));
        };
        values.push(value);
    }
    Ok(Arc::new(PrimitiveArray::<T>::new(
        values.into(),
        texts.nulls().cloned(),
    )))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
            Field::new(
                "seen",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
            Field::new(
                "zoned",
                DataType::Timestamp(TimeUnit::Second, Some("+02:00".into())),
                true,
            ),
        ]))
    }

    /// A push decoder: ours or arrow-json's.
    trait Push {
        fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError>;
        fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError>;
    }

    impl Push for JsonDecoder {
        fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
            JsonDecoder::decode(self, buf)
        }
        fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
            JsonDecoder::flush(self)
        }
    }

    impl Push for Decoder {
        fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
            Decoder::decode(self, buf)
        }
        fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
            Decoder::flush(self)
        }
    }

    /// Every batch (or the first error) `decoder` makes of `input`, fed in pieces of
    /// `piece` bytes, with what each `decode` call took.
    fn run(
        decoder: &mut impl Push,
        input: &[u8],
        piece: usize,
    ) -> Result<(Vec<RecordBatch>, Vec<usize>), String> {
        let (mut batches, mut took) = (Vec::new(), Vec::new());
        for mut chunk in input.chunks(piece) {
            while !chunk.is_empty() {
                let n = decoder.decode(chunk).map_err(|e| e.to_string())?;
                took.push(n);
                chunk = &chunk[n..];
                if !chunk.is_empty() {
                    batches.extend(decoder.flush().map_err(|e| e.to_string())?);
                }
            }
        }
        batches.extend(decoder.flush().map_err(|e| e.to_string())?);
        Ok((batches, took))
    }

    /// Decodes `input` with a [`JsonDecoder`] and with arrow-json's own decoder and checks
    /// they agree; whether the fast path was still on at the end.
    fn agrees_with_arrow(input: &str) -> bool {
        let options = JsonOptions::new(3);
        let mut ours = JsonDecoder::try_new(schema(), options).unwrap();
        let mut plain = plain_decoder(&schema(), options).unwrap();
        let fast = run(&mut ours, input.as_bytes(), 7);
        let exact = run(&mut plain, input.as_bytes(), 7);
        assert_eq!(fast, exact, "{input}");
        ours.fast_timestamps()
    }

    #[test]
    fn iso_texts_decode_as_arrow_decodes_them_on_the_fast_path() {
        let input = r#"{"user_id":"a","ts":"2026-01-31T09:26:56.123456789Z","seen":"2026-01-31 09:26:56.5"}
{"user_id":"b","ts":"2026-01-31T09:26:56+05:30","seen":null,"zoned":"2026-01-31T09:26:56"}
{"user_id":"c","ts":"2026-01-31","zoned":"2026-01-31T09:26:56Z"}
{"user_id":"d","ts":"1969-12-31T23:59:59.9995","seen":"1969-12-31T23:59:59.9995"}
{"user_id":"e","ts":"2262-04-11T23:47:16.854775807"}
"#;
        assert!(agrees_with_arrow(input), "the fast path stays on");
    }

    #[test]
    fn numbers_decode_as_arrow_decodes_them_and_turn_the_fast_path_off() {
        let input = r#"{"user_id":"a","ts":"2026-01-31T09:26:56Z"}
{"user_id":"b","ts":1769851616000000000,"seen":1769851616000}
{"user_id":"c","ts":"2026-01-31T09:26:57Z"}
{"user_id":"d","ts":"2026-01-31T09:26:58Z"}
"#;
        assert!(!agrees_with_arrow(input), "the fast path is off");
    }

    #[test]
    fn bad_values_fail_with_arrows_own_errors_and_leave_the_fast_path_on() {
        for input in [
            r#"{"user_id":"a","ts":"yesterday"}"#,
            r#"{"user_id":"a","ts":"2263-01-01T00:00:00"}"#,
            r#"{"user_id":"a","ts":null}"#,
            r#"{"user_id":"a"}"#,
            r#"{"user_id":7,"ts":"2026-01-31T09:26:56Z"}"#,
            r#"{"user_id":"a","ts":"2026-01-31T09:26:56Z""#,
        ] {
            assert!(agrees_with_arrow(input), "{input}");
        }
    }
}
