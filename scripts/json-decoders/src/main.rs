//! JSON lines into Arrow batches of a declared schema, two ways, timed on one thread:
//! arrow-json's push decoder fed 4 MiB blocks (what profusion's file and Kafka sources
//! use), and sonic-rs (a SIMD JSON parser) walking each line's object into Arrow builders,
//! with timestamps parsed by a hand-written ISO-8601 reader. Both make batches of 8,192
//! rows. Three rounds each, alternating.
//!
//!     json-decoders FILE bids|events

use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{
    Float64Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sonic_rs::JsonValueTrait;

const BATCH_ROWS: usize = 8192;

/// The schema of Nexmark's bids, or of `profusion bench`'s events.
fn schema_of(kind: &str) -> SchemaRef {
    let time = DataType::Timestamp(TimeUnit::Nanosecond, None);
    Arc::new(Schema::new(match kind {
        "bids" => vec![
            Field::new("auction", DataType::Int64, true),
            Field::new("bidder", DataType::Int64, true),
            Field::new("price", DataType::Int64, true),
            Field::new("channel", DataType::Utf8, true),
            Field::new("url", DataType::Utf8, true),
            Field::new("date_time", time, false),
            Field::new("extra", DataType::Utf8, true),
        ],
        _ => vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("amount", DataType::Float64, true),
            Field::new("ts", time, false),
        ],
    }))
}

/// arrow-json's decoder: the rows decoded.
fn with_arrow_json(data: &[u8], schema: &SchemaRef) -> usize {
    let mut decoder = arrow_json::ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(BATCH_ROWS)
        .build_decoder()
        .expect("a decoder");
    let mut rows = 0;
    for block in data.chunks(4 << 20) {
        let mut rest = block;
        while !rest.is_empty() {
            let taken = decoder.decode(rest).expect("valid JSON");
            rest = &rest[taken..];
            if !rest.is_empty() {
                rows += decoder
                    .flush()
                    .expect("a batch")
                    .map_or(0, |b| b.num_rows());
            }
        }
    }
    rows + decoder
        .flush()
        .expect("a batch")
        .map_or(0, |b| b.num_rows())
}

/// A column being built.
enum Column {
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Time(TimestampNanosecondBuilder),
}

impl Column {
    fn new(data_type: &DataType) -> Self {
        match data_type {
            DataType::Int64 => Self::Int(Int64Builder::with_capacity(BATCH_ROWS)),
            DataType::Float64 => Self::Float(Float64Builder::with_capacity(BATCH_ROWS)),
            DataType::Utf8 => Self::Text(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 32)),
            _ => Self::Time(TimestampNanosecondBuilder::with_capacity(BATCH_ROWS)),
        }
    }

    fn append<V: JsonValueTrait>(&mut self, value: &V) {
        match self {
            Self::Int(b) => b.append_option(value.as_i64()),
            Self::Float(b) => b.append_option(value.as_f64()),
            Self::Text(b) => b.append_option(value.as_str()),
            Self::Time(b) => b.append_option(value.as_str().and_then(iso_nanos)),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Int(b) => b.append_null(),
            Self::Float(b) => b.append_null(),
            Self::Text(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Int(b) => Arc::new(b.finish()),
            Self::Float(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]` as nanoseconds since the epoch.
fn iso_nanos(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let digit = |i: usize| i64::from(b[i].wrapping_sub(b'0'));
    let two = |i: usize| digit(i) * 10 + digit(i + 1);
    let year = two(0) * 100 + two(2);
    let (month, day) = (two(5), two(8));
    let seconds = two(11) * 3600 + two(14) * 60 + two(17);
    let mut nanos = 0;
    if b.get(19) == Some(&b'.') {
        let mut scale = 100_000_000;
        for &c in b[20..].iter().take_while(|c| c.is_ascii_digit()) {
            nanos += i64::from(c - b'0') * scale;
            scale /= 10;
        }
    }
    // Days since the epoch of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some((days * 86_400 + seconds) * 1_000_000_000 + nanos)
}

/// sonic-rs walking each line's object into builders: the rows decoded.
fn with_sonic_rs(data: &[u8], schema: &SchemaRef) -> usize {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut columns: Vec<Column> = schema
        .fields()
        .iter()
        .map(|f| Column::new(f.data_type()))
        .collect();
    let mut seen = vec![false; names.len()];
    let (mut rows, mut pending) = (0, 0);
    let finish = |columns: &mut Vec<Column>| {
        let arrays = columns.iter_mut().map(Column::finish).collect();
        RecordBatch::try_new(Arc::clone(schema), arrays)
            .expect("a batch")
            .num_rows()
    };
    for line in data.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        seen.fill(false);
        for field in sonic_rs::to_object_iter(line) {
            let (key, value) = field.expect("valid JSON");
            if let Some(i) = names.iter().position(|n| *n == key.as_ref()) {
                seen[i] = true;
                columns[i].append(&value);
            }
        }
        for (column, _) in columns.iter_mut().zip(&seen).filter(|(_, seen)| !**seen) {
            column.append_null();
        }
        pending += 1;
        if pending == BATCH_ROWS {
            rows += finish(&mut columns);
            pending = 0;
        }
    }
    rows + finish(&mut columns)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(kind)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: json-decoders FILE bids|events");
        std::process::exit(2);
    };
    let data = std::fs::read(path).expect("a readable file");
    let schema = schema_of(kind);
    let decoders: [(&str, fn(&[u8], &SchemaRef) -> usize); 2] =
        [("arrow-json", with_arrow_json), ("sonic-rs", with_sonic_rs)];
    for round in 1..=3 {
        for (name, decode) in decoders {
            let started = Instant::now();
            let rows = decode(&data, &schema);
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "round {round} {name:<10} {rows} rows in {seconds:.3} s: {:.0} MB/s, {:.2}M rows/s",
                data.len() as f64 / 1e6 / seconds,
                rows as f64 / 1e6 / seconds
            );
        }
    }
}
