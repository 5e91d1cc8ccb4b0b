//! The `sqlite` connector: a table in an SQLite file, the embedded store of profile views.
//! Rows are upserted by primary key in one transaction per batch (WAL journal), and the
//! table reads back as a bounded DataFusion table. The file stays inspectable with `sqlite3`.

mod options;
mod store;
mod values;

pub use options::SqliteOptions;
pub use store::SqliteStore;
