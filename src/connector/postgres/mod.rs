//! The `postgres` connector: a table in PostgreSQL, for profiles that several workers or
//! services share. A batch is one statement (`INSERT … SELECT FROM unnest(…) ON CONFLICT …
//! DO UPDATE … WHERE` the stored version is older) over a connection pool, and the table
//! reads back as a bounded DataFusion table.

mod options;
mod store;
mod tls;
mod types;

pub use options::PostgresOptions;
pub use store::PostgresStore;

/// `connector = 'postgres'`: a keyed table, and a materialized view's store.
pub struct PostgresConnector;

impl PostgresConnector {
    /// The store of the table `declared`; `versioned` for a view's, whose rows carry the
    /// version of the change that wrote them.
    fn store(
        declared: &super::Declared<'_>,
        options: &mut crate::sql::WithOptions,
        versioned: bool,
    ) -> crate::error::Result<std::sync::Arc<dyn super::store::ProfileStore>> {
        Ok(std::sync::Arc::new(PostgresStore::try_new(
            PostgresOptions::parse(options, declared.name)?,
            std::sync::Arc::clone(declared.schema),
            declared.primary_key.to_vec(),
            versioned,
        )?))
    }
}

impl super::Connector for PostgresConnector {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn halves(
        &self,
        declared: super::Declared<'_>,
        options: &mut crate::sql::WithOptions,
        _reads: crate::stream::SourceReads,
    ) -> crate::error::Result<super::Halves> {
        Ok(super::store::store_halves(Self::store(
            &declared, options, false,
        )?))
    }

    fn holds_views(&self) -> bool {
        true
    }

    fn view_store(
        &self,
        declared: super::Declared<'_>,
        options: &mut crate::sql::WithOptions,
        _reads: crate::stream::SourceReads,
    ) -> crate::error::Result<super::store::ViewStore> {
        Ok(super::store::ViewStore::Table(Self::store(
            &declared, options, true,
        )?))
    }
}
