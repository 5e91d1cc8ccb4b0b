//! A view's scoring functions: `'score.<name>' = '<expression>'` options of a
//! `CREATE MATERIALIZED VIEW`, SQL expressions over the view's columns (usually a call of
//! `score_logistic`, `score_tree` or `score_linear`) that `POST /v1/score/{view}/{key}`
//! evaluates on the profile row when asked. Planned once, with the view.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use crate::error::Error;
use crate::sql::WithOptions;

/// One scoring function of a view.
#[derive(Debug)]
pub struct ViewScore {
    /// The score's name: what follows `score.` in the option key.
    pub name: String,
    /// The expression as written.
    pub sql: String,
    expr: Arc<dyn PhysicalExpr>,
}

impl ViewScore {
    /// The score of the row in `row` (a batch of one row of the view's schema).
    pub fn evaluate(&self, row: &RecordBatch) -> Result<ScalarValue> {
        let value = self.expr.evaluate(row)?;
        let array = value.into_array(row.num_rows())?;
        ScalarValue::try_from_array(&array, 0)
    }
}

/// Consumes the `score.*` options of a view whose rows have `schema`, planning each
/// expression; an expression that does not plan is an error naming its key.
pub fn plan_scores(
    context: &SessionContext,
    schema: &SchemaRef,
    options: &mut WithOptions,
) -> Result<Vec<ViewScore>, Error> {
    let declared = options.take_prefixed("score.");
    let df_schema = DFSchema::try_from(Arc::clone(schema))?;
    let state = context.state();
    declared
        .into_iter()
        .map(|(name, sql)| {
            if name.is_empty() {
                return Err(options.error("option 'score.' needs a name: 'score.<name>'"));
            }
            let planned = state
                .create_logical_expr(&sql, &df_schema)
                .and_then(|expr| state.create_physical_expr(expr, &df_schema));
            match planned {
                Ok(expr) => Ok(ViewScore { name, sql, expr }),
                Err(e) => Err(options.error(format!("option 'score.{name}' ('{sql}'): {e}"))),
            }
        })
        .collect()
}
