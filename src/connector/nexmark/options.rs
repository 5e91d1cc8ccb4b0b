//! `WITH` options of the `nexmark` connector.

use crate::error::Error;
use crate::sql::WithOptions;

/// Which Nexmark stream a table reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexmarkTable {
    Person,
    Auction,
    Bid,
}

impl NexmarkTable {
    /// The option value naming this stream.
    pub fn name(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Auction => "auction",
            Self::Bid => "bid",
        }
    }
}

/// How the `nexmark` connector generates events.
#[derive(Debug, Clone, PartialEq)]
pub struct NexmarkOptions {
    pub table: NexmarkTable,
    /// Events of all three kinds to generate (the table reads its own kind among them);
    /// `None` generates forever.
    pub events: Option<u64>,
    /// Events of all kinds per second of wall-clock time; 0 generates as fast as possible.
    pub rate: u64,
    /// Events of all kinds per second of event time: `rate` when it is set, else 10,000.
    pub event_rate: u64,
    /// The same seed gives the same events.
    pub seed: u64,
    /// Rows per batch.
    pub batch_size: usize,
}

impl NexmarkOptions {
    /// Consumes the `nexmark` options.
    pub fn parse(options: &mut WithOptions) -> Result<Self, Error> {
        let table = options.required("table")?;
        let table = match table.as_str() {
            "person" => NexmarkTable::Person,
            "auction" => NexmarkTable::Auction,
            "bid" => NexmarkTable::Bid,
            other => {
                return Err(options.error(format!(
                    "option 'table' has a bad value '{other}': expected person, auction or bid"
                )));
            }
        };
        let rate = options.parse::<u64>("rate")?.unwrap_or(0);
        let event_rate = match options.parse::<u64>("event_rate")? {
            Some(0) => {
                return Err(options.error(
                    "option 'event_rate' has a bad value '0': expected events per second of event time",
                ));
            }
            Some(event_rate) => event_rate,
            None if rate > 0 => rate,
            None => 10_000,
        };
        Ok(Self {
            table,
            events: options.parse::<u64>("events")?,
            rate,
            event_rate,
            seed: options.parse::<u64>("seed")?.unwrap_or(0),
            batch_size: options.parse::<usize>("batch_size")?.unwrap_or(8192).max(1),
        })
    }
}
