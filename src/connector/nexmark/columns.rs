//! The columns of the three Nexmark streams, as Flink's and RisingWave's Nexmark tables
//! declare them, and the Arrow batches built from generated events. A table declares any
//! subset of its stream's columns, in any order.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::Result;
use nexmark::event::{Auction, Bid, Event, Person};

use super::options::NexmarkTable;
use crate::stream::time_array_from_nanos;

/// A column's value in one event.
enum Value<'a> {
    Int(i64),
    Text(&'a str),
    /// Milliseconds since the epoch.
    Time(u64),
}

/// The columns of `table`, with their types (times are any TIMESTAMP).
pub fn columns(table: NexmarkTable) -> &'static [(&'static str, ColumnType)] {
    use ColumnType::{Int, Text, Time};
    match table {
        NexmarkTable::Person => &[
            ("id", Int),
            ("name", Text),
            ("email_address", Text),
            ("credit_card", Text),
            ("city", Text),
            ("state", Text),
            ("date_time", Time),
            ("extra", Text),
        ],
        NexmarkTable::Auction => &[
            ("id", Int),
            ("item_name", Text),
            ("description", Text),
            ("initial_bid", Int),
            ("reserve", Int),
            ("date_time", Time),
            ("expires", Time),
            ("seller", Int),
            ("category", Int),
            ("extra", Text),
        ],
        NexmarkTable::Bid => &[
            ("auction", Int),
            ("bidder", Int),
            ("price", Int),
            ("channel", Text),
            ("url", Text),
            ("date_time", Time),
            ("extra", Text),
        ],
    }
}

/// The SQL type of a Nexmark column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// BIGINT.
    Int,
    /// TEXT.
    Text,
    /// TIMESTAMP, of any precision.
    Time,
}

impl ColumnType {
    /// True when a declared column of `data_type` can hold this column.
    pub fn accepts(self, data_type: &DataType) -> bool {
        match self {
            Self::Int => data_type == &DataType::Int64,
            Self::Text => data_type == &DataType::Utf8,
            Self::Time => matches!(data_type, DataType::Timestamp(_, None)),
        }
    }

    /// How to declare it.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Int => "BIGINT",
            Self::Text => "TEXT",
            Self::Time => "TIMESTAMP",
        }
    }
}

fn value<'a>(event: &'a Event, column: &str) -> Option<Value<'a>> {
    let int = |v: usize| Value::Int(v as i64);
    Some(match event {
        Event::Person(Person {
            id,
            name,
            email_address,
            credit_card,
            city,
            state,
            date_time,
            extra,
        }) => match column {
            "id" => int(*id),
            "name" => Value::Text(name),
            "email_address" => Value::Text(email_address),
            "credit_card" => Value::Text(credit_card),
            "city" => Value::Text(city),
            "state" => Value::Text(state),
            "date_time" => Value::Time(*date_time),
            "extra" => Value::Text(extra),
            _ => return None,
        },
        Event::Auction(Auction {
            id,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time,
            expires,
            seller,
            category,
            extra,
        }) => match column {
            "id" => int(*id),
            "item_name" => Value::Text(item_name),
            "description" => Value::Text(description),
            "initial_bid" => int(*initial_bid),
            "reserve" => int(*reserve),
            "date_time" => Value::Time(*date_time),
            "expires" => Value::Time(*expires),
            "seller" => int(*seller),
            "category" => int(*category),
            "extra" => Value::Text(extra),
            _ => return None,
        },
        Event::Bid(Bid {
            auction,
            bidder,
            price,
            channel,
            url,
            date_time,
            extra,
        }) => match column {
            "auction" => int(*auction),
            "bidder" => int(*bidder),
            "price" => int(*price),
            "channel" => Value::Text(channel),
            "url" => Value::Text(url),
            "date_time" => Value::Time(*date_time),
            "extra" => Value::Text(extra),
            _ => return None,
        },
    })
}

/// `events` as a batch of `schema`, whose columns are among the events' stream's.
pub fn batch(schema: &SchemaRef, events: &[Event]) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let name = field.name().as_str();
            let column: ArrayRef = match field.data_type() {
                DataType::Int64 => {
                    let mut builder = Int64Builder::with_capacity(events.len());
                    for event in events {
                        match value(event, name) {
                            Some(Value::Int(v)) => builder.append_value(v),
                            _ => builder.append_null(),
                        }
                    }
                    Arc::new(builder.finish())
                }
                DataType::Utf8 => {
                    let mut builder = StringBuilder::with_capacity(events.len(), events.len() * 16);
                    for event in events {
                        match value(event, name) {
                            Some(Value::Text(v)) => builder.append_value(v),
                            _ => builder.append_null(),
                        }
                    }
                    Arc::new(builder.finish())
                }
                time_type => {
                    let nanos = events
                        .iter()
                        .map(|event| match value(event, name) {
                            Some(Value::Time(ms)) => ms as i64 * 1_000_000,
                            _ => i64::MIN,
                        })
                        .collect();
                    time_array_from_nanos(nanos, time_type)?
                }
            };
            Ok(column)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}
