//! [`Connector`]: what each connector folder provides, and the registry that lists them,
//! the one place a connector is named. Tables, views' stores and `serve`'s ingest ask the
//! registry what a connector can do instead of matching its name.

use std::sync::Arc;

use datafusion::datasource::sink::DataSink;

use crate::error::{Error, Result};
use crate::sql::WithOptions;
use crate::stream::SourceReads;

use super::store::ViewStore;
use super::{
    Declared, Halves, IngestCheck, blackhole, datagen, file, kafka, memory, nexmark, postgres,
    sqlite, stdout,
};

/// A connector: the `connector = '…'` of a `CREATE TABLE`.
pub trait Connector: Send + Sync {
    /// The name tables give it.
    fn name(&self) -> &'static str;

    /// The reading and writing halves of the table `declared`, consuming its options.
    fn halves(
        &self,
        declared: Declared<'_>,
        options: &mut WithOptions,
        reads: SourceReads,
    ) -> Result<Halves>;

    /// True when its tables may declare record metadata columns (`METADATA FROM`).
    fn has_metadata(&self) -> bool {
        false
    }

    /// True when a materialized view may keep its rows in it.
    fn holds_views(&self) -> bool {
        false
    }

    /// The store of the materialized view `declared`, consuming its options.
    fn view_store(
        &self,
        _declared: Declared<'_>,
        options: &mut WithOptions,
        _reads: SourceReads,
    ) -> Result<ViewStore> {
        Err(options.error(format!(
            "connector '{}' does not hold materialized views",
            self.name()
        )))
    }

    /// True when `serve` may write webhook events into its tables.
    fn takes_ingest(&self) -> bool {
        false
    }

    /// What `serve` checks of each request's webhook events for the table `table`, written
    /// through `sink`; an error saying why the table must not take webhook events at all,
    /// found when `serve` starts.
    fn ingest_check(
        &self,
        _table: &str,
        _sink: &Arc<dyn DataSink>,
    ) -> std::result::Result<Option<Arc<dyn IngestCheck>>, String> {
        Ok(None)
    }
}

/// Every connector.
const CONNECTORS: [&dyn Connector; 9] = [
    &blackhole::BlackholeConnector,
    &datagen::DatagenConnector,
    &file::FileConnector,
    &kafka::KafkaConnector,
    &memory::MemoryConnector,
    &nexmark::NexmarkConnector,
    &postgres::PostgresConnector,
    &sqlite::SqliteConnector,
    &stdout::StdoutConnector,
];

/// The connector named `name`.
pub fn connector(name: &str) -> Option<&'static dyn Connector> {
    CONNECTORS.iter().copied().find(|c| c.name() == name)
}

/// The names of the connectors that `which` picks, for messages.
pub fn names(which: impl Fn(&dyn Connector) -> bool) -> Vec<&'static str> {
    CONNECTORS
        .iter()
        .copied()
        .filter(|c| which(*c))
        .map(|c| c.name())
        .collect()
}

/// An error for a name no connector has.
pub fn unknown(options: &WithOptions, name: &str) -> Error {
    options.error(format!(
        "unknown connector '{name}' (known: {})",
        names(|_| true).join(", ")
    ))
}
