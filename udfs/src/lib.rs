//! `profusion-udfs`: normalization, enrichment and scoring functions for personalization
//! pipelines, usable in any DataFusion session.
//!
//! [`register_all`] adds every function to a session; profusion calls it for each of its
//! own sessions. Functions are listed in one place, [`scalar_functions`], so registration,
//! documentation and the name-clash check all see the same set.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

/// Every scalar function of the library.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    Vec::new()
}

/// Registers every function of the library with `ctx`.
pub fn register_all(ctx: &SessionContext) -> Result<()> {
    for function in scalar_functions() {
        ctx.register_udf(function.as_ref().clone());
    }
    Ok(())
}
