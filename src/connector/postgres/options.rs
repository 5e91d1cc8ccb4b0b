//! `WITH` options of the `postgres` connector.

use super::tls::{client_config, ssl_mode_of};
use crate::error::Error;
use crate::sql::WithOptions;

/// Options of a `postgres` table or view.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// A connection string: `postgres://user:password@host:port/database` or
    /// `host=… port=… user=… dbname=…`.
    pub url: String,
    /// The table, in the connection's current schema; the declared name by default.
    pub table: String,
    /// Connections in the pool.
    pub pool_size: usize,
}

impl PostgresOptions {
    /// Consumes the `postgres` options of the table or view `name`.
    pub fn parse(options: &mut WithOptions, name: &str) -> Result<Self, Error> {
        let url = options.required("url")?;
        let (plain, ssl) =
            ssl_mode_of(&url).map_err(|e| options.error(format!("option 'url': {e}")))?;
        plain
            .parse::<tokio_postgres::Config>()
            .map_err(|e| options.error(format!("option 'url': {e}")))?;
        client_config(&ssl).map_err(|e| options.error(format!("option 'url': {e}")))?;
        let table = options.take("table").unwrap_or_else(|| name.to_string());
        if table.is_empty() {
            return Err(options.error("option 'table' is empty"));
        }
        let pool_size = options.parse::<usize>("pool.size")?.unwrap_or(4);
        if pool_size == 0 {
            return Err(
                options.error("option 'pool.size' has a bad value '0': expected at least 1")
            );
        }
        Ok(Self {
            url,
            table,
            pool_size,
        })
    }

    /// The URL with its password hidden, for messages and `EXPLAIN`.
    pub fn display_url(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut parsed) if parsed.password().is_some() => {
                let _ = parsed.set_password(Some("***"));
                parsed.to_string()
            }
            _ if self.url.contains("password") => "(connection string)".into(),
            _ => self.url.clone(),
        }
    }
}
