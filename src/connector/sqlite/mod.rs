//! The `sqlite` connector: a table in an SQLite file, the embedded store of profile views.
//! Rows are upserted by primary key in one transaction per batch (WAL journal), and the
//! table reads back as a bounded DataFusion table. The file stays inspectable with `sqlite3`.

mod options;
mod store;
mod values;

pub use options::{SqliteOptions, SqliteSync};
pub use store::SqliteStore;

/// `connector = 'sqlite'`: a keyed table, and a materialized view's store.
pub struct SqliteConnector;

impl SqliteConnector {
    /// The store of the table `declared`; `versioned` for a view's, whose rows carry the
    /// version of the change that wrote them.
    fn store(
        declared: &super::Declared<'_>,
        options: &mut crate::sql::WithOptions,
        versioned: bool,
    ) -> crate::error::Result<std::sync::Arc<dyn super::store::ProfileStore>> {
        Ok(std::sync::Arc::new(Ok::<_, crate::error::Error>(
            SqliteStore::new(
                SqliteOptions::parse(options, declared.name)?,
                std::sync::Arc::clone(declared.schema),
                declared.primary_key.to_vec(),
                versioned,
            ),
        )?))
    }
}

impl super::Connector for SqliteConnector {
    fn name(&self) -> &'static str {
        "sqlite"
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
