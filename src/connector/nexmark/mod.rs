//! `connector = 'nexmark'`: the Nexmark benchmark's auction events (RisingWave's `nexmark`
//! generator), with `table` = `person`, `auction` or `bid`. Three tables with the same
//! `events` and `seed` read the three kinds of one event sequence, each in event-time order.
//! The source is planned as a stream even when `events` bounds it, as a Kafka topic is:
//! queries over it run on the continuous operators.

mod columns;
mod options;

pub use columns::ColumnType;
pub use options::{NexmarkOptions, NexmarkTable};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::execution::TaskContext;
use futures::StreamExt;
use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::EventType;

use crate::error::Error;
use crate::sql::WithOptions;
use crate::stream::{ScanPartition, Source, SplitStream, WatermarkSpec};

/// 2026-01-01T00:00:00Z, in milliseconds: the event time of the first event.
const BASE_TIME_MS: u64 = 1_767_225_600_000;

/// The `nexmark` source.
#[derive(Debug)]
pub struct NexmarkSource {
    schema: SchemaRef,
    options: NexmarkOptions,
}

impl NexmarkSource {
    /// Builds the source for a table with `schema`, consuming the `nexmark` options.
    pub fn try_new(schema: SchemaRef, options: &mut WithOptions) -> Result<Self, Error> {
        let parsed = NexmarkOptions::parse(options)?;
        let known = columns::columns(parsed.table);
        for field in schema.fields() {
            let Some((_, kind)) = known.iter().find(|(name, _)| name == field.name()) else {
                let names: Vec<&str> = known.iter().map(|(name, _)| *name).collect();
                return Err(options.error(format!(
                    "nexmark table '{}' has no column '{}' (it has {})",
                    parsed.table.name(),
                    field.name(),
                    names.join(", ")
                )));
            };
            if !kind.accepts(field.data_type()) {
                return Err(options.error(format!(
                    "nexmark column '{}' is {}, not {}",
                    field.name(),
                    kind.sql(),
                    field.data_type()
                )));
            }
        }
        Ok(Self {
            schema,
            options: parsed,
        })
    }

    fn generator(&self) -> EventGenerator {
        let config = NexmarkConfig {
            base_time: BASE_TIME_MS,
            first_event_id: self.options.seed as usize,
            first_rate: self.options.event_rate as usize,
            next_rate: self.options.event_rate as usize,
            ..NexmarkConfig::default()
        };
        EventGenerator::new(config).with_type_filter(match self.options.table {
            NexmarkTable::Person => EventType::Person,
            NexmarkTable::Auction => EventType::Auction,
            NexmarkTable::Bid => EventType::Bid,
        })
    }
}

#[async_trait]
impl Source for NexmarkSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn is_bounded(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        let o = &self.options;
        let events = o.events.map_or("endless".to_string(), |e| e.to_string());
        let rate = match o.rate {
            0 => "unlimited".to_string(),
            rate => format!("{rate}/s"),
        };
        format!(
            "nexmark(table={}, events={events}, rate={rate}, event_rate={}/s, seed={})",
            o.table.name(),
            o.event_rate,
            o.seed
        )
    }

    async fn open(
        &self,
        _context: Arc<TaskContext>,
        event_time: Option<&WatermarkSpec>,
        scan: &ScanPartition,
    ) -> Result<Vec<SplitStream>> {
        // Events are a function of their number: a checkpoint keeps the next one to read.
        if !scan.reads(0) {
            return Ok(Vec::new());
        }
        let ledger = scan.ledger(&format!("nexmark:{}", self.options.table.name()));
        // A generator commits nowhere: a finished job has no last commit of it to wait for.
        if let Some(ledger) = &ledger {
            ledger.close();
        }
        let first = ledger
            .as_ref()
            .and_then(|ledger| scan.restored_position(ledger))
            .unwrap_or(0) as u64;
        let generator = self.generator().with_offset(first);
        let schema = Arc::clone(&self.schema);
        let event_time = event_time.cloned();
        let events = self.options.events.unwrap_or(u64::MAX);
        let rate = self.options.rate;
        let batch_size = match rate {
            // Paced output goes out in batches of about 50 ms worth of events.
            0 => self.options.batch_size,
            rate => ((rate / 20) as usize).clamp(1, self.options.batch_size),
        };
        let started = tokio::time::Instant::now();
        let first_global = generator.global_offset();
        let stream = futures::stream::unfold(generator, move |mut generator| {
            let schema = Arc::clone(&schema);
            let ledger = ledger.clone();
            let event_time = event_time.clone();
            async move {
                if generator.global_offset() >= events {
                    return None;
                }
                if rate > 0 {
                    let done = generator.global_offset() - first_global;
                    let due = Duration::from_secs_f64(done as f64 / rate as f64);
                    tokio::time::sleep_until(started + due).await;
                }
                let mut batch = Vec::with_capacity(batch_size);
                while batch.len() < batch_size && generator.global_offset() < events {
                    batch.extend(generator.next());
                }
                let rows = columns::batch(&schema, &batch);
                if let (Some(ledger), Ok(rows)) = (&ledger, &rows) {
                    let latest = match &event_time {
                        Some(spec) => match spec.latest_event_time(rows) {
                            Ok(latest) => latest,
                            Err(e) => return Some((Err(e), generator)),
                        },
                        None => None,
                    };
                    ledger.read(generator.offset() as i64, latest);
                }
                Some((rows, generator))
            }
        });
        Ok(vec![stream.boxed()])
    }
}

/// `connector = 'nexmark'`.
pub struct NexmarkConnector;

impl super::Connector for NexmarkConnector {
    fn name(&self) -> &'static str {
        "nexmark"
    }

    fn halves(
        &self,
        declared: super::Declared<'_>,
        options: &mut crate::sql::WithOptions,
        _reads: crate::stream::SourceReads,
    ) -> crate::error::Result<super::Halves> {
        Ok((
            Some(std::sync::Arc::new(NexmarkSource::try_new(
                std::sync::Arc::clone(declared.schema),
                options,
            )?)),
            None,
        ))
    }
}
