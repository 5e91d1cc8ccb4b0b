//! The `postgres` connector: a table in PostgreSQL, for profiles that several workers or
//! services share. A batch is one statement (`INSERT … SELECT FROM unnest(…) ON CONFLICT …
//! DO UPDATE … WHERE` the stored version is older) over a connection pool, and the table
//! reads back as a bounded DataFusion table.

mod options;
mod store;
mod types;

pub use options::PostgresOptions;
pub use store::PostgresStore;
