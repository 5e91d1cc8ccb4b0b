//! The deterministic event generator behind `datagen`: every row is a pure function of the
//! seed and its position, so the same options always produce the same rows, whatever the
//! batch size or rate.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, RecordBatch, StringBuilder, TimestampNanosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::Result;

use super::options::DatagenOptions;

/// The columns `datagen` can produce, in their canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagenColumn {
    UserId,
    SessionId,
    EventId,
    EventType,
    Amount,
    Page,
    Ts,
}

impl DatagenColumn {
    /// Every column, in order.
    pub const ALL: [DatagenColumn; 7] = [
        Self::UserId,
        Self::SessionId,
        Self::EventId,
        Self::EventType,
        Self::Amount,
        Self::Page,
        Self::Ts,
    ];

    /// The column's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::UserId => "user_id",
            Self::SessionId => "session_id",
            Self::EventId => "event_id",
            Self::EventType => "event_type",
            Self::Amount => "amount",
            Self::Page => "page",
            Self::Ts => "ts",
        }
    }

    /// The column's type.
    pub fn data_type(self) -> DataType {
        match self {
            Self::Amount => DataType::Float64,
            Self::Ts => DataType::Timestamp(TimeUnit::Nanosecond, None),
            _ => DataType::Utf8,
        }
    }

    /// The column named `name`.
    pub fn by_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The full `datagen` schema.
    pub fn full_schema() -> SchemaRef {
        Arc::new(Schema::new(
            Self::ALL
                .iter()
                .map(|c| Field::new(c.name(), c.data_type(), *c == Self::Amount))
                .collect::<Vec<_>>(),
        ))
    }
}

/// The event types and how often each occurs, out of 100.
pub const EVENT_TYPES: [(&str, u64); 5] = [
    ("page_view", 50),
    ("click", 25),
    ("form_submit", 10),
    ("chat_message", 10),
    ("purchase", 5),
];

const PAGES: [&str; 8] = [
    "/",
    "/pricing",
    "/signup",
    "/onboarding/profile",
    "/onboarding/goals",
    "/docs",
    "/chat",
    "/checkout",
];

/// One generated event (before it is written into columns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// The event's identity: duplicates share it.
    pub index: u64,
    pub user: u64,
    pub event_type: usize,
    pub amount: Option<f64>,
    pub page: usize,
    pub ts: i64,
}

/// Generates rows for given options.
#[derive(Debug, Clone)]
pub struct Generator {
    options: DatagenOptions,
    duplicate_threshold: u64,
    late_threshold: u64,
}

impl Generator {
    pub fn new(options: DatagenOptions) -> Self {
        let threshold = |rate: f64| (rate * u64::MAX as f64) as u64;
        Self {
            duplicate_threshold: threshold(options.duplicate_rate),
            late_threshold: threshold(options.late_rate),
            options,
        }
    }

    /// The event at row `row`: a fresh event, or a repeat of an earlier one.
    pub fn event(&self, row: u64) -> Event {
        let mut index = row;
        // A duplicate repeats the nearest earlier fresh row within 16 rows.
        if self.is_duplicate(row) {
            let back = 1 + mix(self.options.seed, row, 7) % 16;
            index = row.saturating_sub(back);
            while index > 0 && self.is_duplicate(index) {
                index -= 1;
            }
        }
        self.fresh_event(index)
    }

    fn is_duplicate(&self, row: u64) -> bool {
        row > 0 && mix(self.options.seed, row, 1) < self.duplicate_threshold
    }

    fn fresh_event(&self, index: u64) -> Event {
        let seed = self.options.seed;
        let user = mix(seed, index, 2) % self.options.users;
        let roll = mix(seed, index, 3) % 100;
        let mut cumulative = 0;
        let event_type = EVENT_TYPES
            .iter()
            .position(|(_, weight)| {
                cumulative += weight;
                roll < cumulative
            })
            .unwrap_or(0);
        let amount = (EVENT_TYPES[event_type].0 == "purchase")
            .then(|| 1.0 + (mix(seed, index, 4) % 20_000) as f64 / 100.0);
        let page = (mix(seed, index, 5) % PAGES.len() as u64) as usize;
        let step = self.options.step.as_nanos() as i64;
        let mut ts = self.options.start_nanos + index as i64 * step;
        let spread = self.options.out_of_order.as_nanos() as u64;
        if spread > 0 {
            ts -= (mix(seed, index, 6) % spread) as i64;
        }
        if mix(seed, index, 8) < self.late_threshold {
            ts -= self.options.late_by.as_nanos() as i64;
        }
        Event {
            index,
            user,
            event_type,
            amount,
            page,
            ts,
        }
    }

    /// Rows `first..first + len` with the columns of `schema` (a subset of the full schema).
    pub fn batch(&self, schema: &SchemaRef, first: u64, len: usize) -> Result<RecordBatch> {
        let columns: Vec<DatagenColumn> = schema
            .fields()
            .iter()
            .filter_map(|f| DatagenColumn::by_name(f.name()))
            .collect();
        let events: Vec<Event> = (first..first + len as u64)
            .map(|row| self.event(row))
            .collect();
        let arrays = columns
            .iter()
            .map(|&column| self.column(column, &events))
            .collect::<Vec<_>>();
        Ok(RecordBatch::try_new(Arc::clone(schema), arrays)?)
    }

    fn column(&self, column: DatagenColumn, events: &[Event]) -> ArrayRef {
        let strings = |write: &dyn Fn(&mut StringBuilder, &Event)| -> ArrayRef {
            let mut builder = StringBuilder::with_capacity(events.len(), events.len() * 12);
            for event in events {
                write(&mut builder, event);
                builder.append_value("");
            }
            Arc::new(builder.finish())
        };
        match column {
            DatagenColumn::UserId => strings(&|b, e| {
                let _ = write!(b, "u{:06}", e.user);
            }),
            DatagenColumn::SessionId => strings(&|b, e| {
                let _ = write!(b, "u{:06}-{}", e.user, e.ts.div_euclid(1_800_000_000_000));
            }),
            DatagenColumn::EventId => strings(&|b, e| {
                let _ = write!(b, "e{:010}", e.index);
            }),
            DatagenColumn::EventType => strings(&|b, e| {
                let _ = b.write_str(EVENT_TYPES[e.event_type].0);
            }),
            DatagenColumn::Page => strings(&|b, e| {
                let _ = b.write_str(PAGES[e.page]);
            }),
            DatagenColumn::Amount => {
                let mut builder = Float64Builder::with_capacity(events.len());
                builder.extend(events.iter().map(|e| e.amount));
                Arc::new(builder.finish())
            }
            DatagenColumn::Ts => {
                let mut builder = TimestampNanosecondBuilder::with_capacity(events.len());
                builder.extend(events.iter().map(|e| Some(e.ts)));
                Arc::new(builder.finish())
            }
        }
    }
}

/// A well-mixed 64-bit value for (seed, row, stream): SplitMix64's finalizer.
fn mix(seed: u64, row: u64, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_add(row.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::WithOptions;

    fn generator(pairs: &[(&str, &str)]) -> Generator {
        let mut options = WithOptions::new("CREATE TABLE t", 1);
        for (k, v) in pairs {
            options.insert(k.to_string(), v.to_string()).unwrap();
        }
        Generator::new(DatagenOptions::parse(&mut options).unwrap())
    }

    #[test]
    fn same_seed_same_rows_whatever_the_batching() {
        let g = generator(&[("seed", "7"), ("duplicate_rate", "0.1")]);
        let schema = DatagenColumn::full_schema();
        let whole = g.batch(&schema, 0, 100).unwrap();
        let first = g.batch(&schema, 0, 60).unwrap();
        let second = g.batch(&schema, 60, 40).unwrap();
        let joined =
            datafusion::arrow::compute::concat_batches(&schema, [&first, &second]).unwrap();
        assert_eq!(whole, joined);
    }

    #[test]
    fn duplicates_repeat_earlier_events() {
        let g = generator(&[("duplicate_rate", "0.2")]);
        let duplicates = (0..10_000u64).filter(|&r| g.event(r).index != r).count();
        assert!((1_500..2_500).contains(&duplicates), "{duplicates}");
        for row in 0..10_000u64 {
            let event = g.event(row);
            assert!(event.index <= row && row - event.index <= 32);
            assert_eq!(event, g.fresh_event(event.index));
        }
    }

    #[test]
    fn out_of_order_and_late_rows_stay_within_their_bounds() {
        let g = generator(&[
            ("out_of_order", "2s"),
            ("late_rate", "0.01"),
            ("late_by", "10m"),
        ]);
        let start = 1_767_225_600_000_000_000i64;
        let mut late = 0;
        for row in 0..10_000u64 {
            let event = g.event(row);
            let nominal = start + row as i64 * 1_000_000;
            let behind = nominal - event.ts;
            if behind >= 600_000_000_000 {
                late += 1;
                assert!(behind < 602_000_000_000);
            } else {
                assert!((0..2_000_000_000).contains(&behind), "{behind}");
            }
        }
        assert!((50..150).contains(&late), "{late}");
    }
}
