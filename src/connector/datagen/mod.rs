//! `connector = 'datagen'`: a seeded, deterministic generator of personalization events
//! (`user_id`, `session_id`, `event_id`, `event_type`, `amount`, `page`, `ts`) for demos,
//! tests and benchmarks. A table declares any subset of those columns.

mod generator;
mod options;

pub use generator::{DatagenColumn, EVENT_TYPES, Event, Generator};
pub use options::DatagenOptions;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::execution::TaskContext;
use futures::StreamExt;

use crate::error::Error;
use crate::sql::WithOptions;
use crate::stream::{ScanPartition, Source, SplitStream, WatermarkSpec};

/// The `datagen` source.
#[derive(Debug)]
pub struct DatagenSource {
    schema: SchemaRef,
    generator: Generator,
    options: DatagenOptions,
}

impl DatagenSource {
    /// Builds the source for a table with `schema`, consuming the `datagen` options.
    pub fn try_new(schema: SchemaRef, options: &mut WithOptions) -> Result<Self, Error> {
        for field in schema.fields() {
            let expected = DatagenColumn::by_name(field.name()).ok_or_else(|| {
                let names: Vec<&str> = DatagenColumn::ALL.iter().map(|c| c.name()).collect();
                options.error(format!(
                    "datagen has no column '{}' (it generates {})",
                    field.name(),
                    names.join(", ")
                ))
            })?;
            if field.data_type() != &expected.data_type() {
                return Err(options.error(format!(
                    "datagen column '{}' is {}, not {}",
                    field.name(),
                    expected.data_type(),
                    field.data_type()
                )));
            }
        }
        let parsed = DatagenOptions::parse(options)?;
        Ok(Self {
            schema,
            generator: Generator::new(parsed.clone()),
            options: parsed,
        })
    }
}

#[async_trait]
impl Source for DatagenSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn is_bounded(&self) -> bool {
        self.options.count.is_some()
    }

    fn describe(&self) -> String {
        let o = &self.options;
        let count = o.count.map_or("endless".to_string(), |c| c.to_string());
        let rate = o
            .rows_per_second
            .map_or("unlimited".to_string(), |r| format!("{r}/s"));
        format!(
            "datagen(count={count}, rate={rate}, users={}, seed={})",
            o.users, o.seed
        )
    }

    async fn open(
        &self,
        _context: Arc<TaskContext>,
        event_time: Option<&WatermarkSpec>,
        scan: &ScanPartition,
    ) -> Result<Vec<SplitStream>> {
        // Rows are a function of their index: a checkpoint keeps the next index to generate.
        if !scan.reads(0) {
            return Ok(Vec::new());
        }
        let ledger = scan.ledger("datagen");
        // A generator commits nowhere (its position lives in checkpoints): a finished job
        // has no last commit of it to wait for.
        if let Some(ledger) = &ledger {
            ledger.close();
        }
        let first = ledger
            .as_ref()
            .and_then(|ledger| scan.restored_position(ledger))
            .unwrap_or(0) as u64;
        let event_time = event_time.cloned();
        let schema = Arc::clone(&self.schema);
        let generator = self.generator.clone();
        let total = self.options.count.unwrap_or(u64::MAX);
        let rate = self.options.rows_per_second;
        // Paced output goes out in batches of about 50 ms worth of rows.
        let batch_size = match rate {
            Some(rate) => (rate / 20).clamp(1, self.options.batch_size as u64) as usize,
            None => self.options.batch_size,
        };
        let started = tokio::time::Instant::now();
        let stream = futures::stream::unfold(first, move |next| {
            let schema = Arc::clone(&schema);
            let generator = generator.clone();
            let ledger = ledger.clone();
            let event_time = event_time.clone();
            async move {
                if next >= total {
                    return None;
                }
                if let Some(rate) = rate {
                    let due = Duration::from_secs_f64((next - first) as f64 / rate as f64);
                    tokio::time::sleep_until(started + due).await;
                }
                let len = (total - next).min(batch_size as u64) as usize;
                let batch = generator.batch(&schema, next, len);
                let after = next + len as u64;
                if let (Some(ledger), Ok(batch)) = (&ledger, &batch) {
                    let latest = match &event_time {
                        Some(spec) => match spec.latest_event_time(batch) {
                            Ok(latest) => latest,
                            Err(e) => return Some((Err(e), total)),
                        },
                        None => None,
                    };
                    ledger.read(after as i64, latest);
                }
                Some((batch, after))
            }
        });
        Ok(vec![stream.boxed()])
    }
}

/// `connector = 'datagen'`.
pub struct DatagenConnector;

impl super::Connector for DatagenConnector {
    fn name(&self) -> &'static str {
        "datagen"
    }

    fn halves(
        &self,
        declared: super::Declared<'_>,
        options: &mut crate::sql::WithOptions,
        _reads: crate::stream::SourceReads,
    ) -> crate::error::Result<super::Halves> {
        Ok((
            Some(std::sync::Arc::new(DatagenSource::try_new(
                std::sync::Arc::clone(declared.schema),
                options,
            )?)),
            None,
        ))
    }
}
