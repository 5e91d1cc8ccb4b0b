//! [`VersionedTable`]: a table read through `FOR SYSTEM_TIME AS OF`. Its rows are
//! versions, each valid from its event time until the next version of its key; a temporal
//! join picks, for each row of the stream it is joined to, the version valid at that
//! row's time. [`VersionedTablePlanner`] plans `users FOR SYSTEM_TIME AS OF e.ts` as a
//! scan of the table wrapped in one, which remembers the `AS OF` column for the join.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, Result, plan_datafusion_err, plan_err};
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::logical_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, TableFactor, TableVersion};

/// What makes a table's rows versions: its event-time column, the time each row starts
/// to be valid, and, for a changelog, the column of each row's change kind (`d` ends the
/// key's versions).
#[derive(Debug, Clone)]
pub struct VersionColumns {
    pub start: String,
    pub change_op: Option<String>,
}

/// The version columns of a table, if it declares an event time (`WATERMARK FOR ts …`).
pub type EventTimeOf = Arc<dyn Fn(&dyn TableProvider) -> Option<VersionColumns> + Send + Sync>;

/// How a table is read as of a time: which table, the stream's column named by `AS OF`,
/// and the table's own event-time column.
#[derive(Debug, Clone)]
pub struct Versioning {
    /// The table's name, as written.
    pub table: String,
    /// The stream's column named by `AS OF`.
    pub as_of: Column,
    /// The table's event-time column: when each version starts.
    pub version_time: String,
    /// The column of each row's change kind, for a changelog: a `d` row ends its key's
    /// versions.
    pub change_op: Option<String>,
}

/// A table read as of the time of each row of the stream it is joined to.
pub struct VersionedTable {
    inner: Arc<dyn TableProvider>,
    versioning: Versioning,
}

impl fmt::Debug for VersionedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Versioning { table, as_of, .. } = &self.versioning;
        write!(f, "VersionedTable({table} FOR SYSTEM_TIME AS OF {as_of})")
    }
}

#[async_trait]
impl TableProvider for VersionedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    /// Filters stay above the scan: a version the filter rejects must still hide the
    /// versions before it, so the join applies them to the version it picks.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }
}

/// Plans `table FOR SYSTEM_TIME AS OF column` as a scan of a [`VersionedTable`].
pub struct VersionedTablePlanner {
    event_time_of: EventTimeOf,
}

impl VersionedTablePlanner {
    /// The planner, asking `event_time_of` for a table's event-time column.
    pub fn new(event_time_of: EventTimeOf) -> Self {
        Self { event_time_of }
    }
}

impl fmt::Debug for VersionedTablePlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VersionedTablePlanner")
    }
}

impl RelationPlanner for VersionedTablePlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> Result<RelationPlanning> {
        let TableFactor::Table {
            name,
            alias,
            version: Some(version),
            args: None,
            with_hints,
            partitions,
            with_ordinality,
            json_path,
            sample,
            index_hints,
        } = relation
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let table = name.to_string();
        let TableVersion::ForSystemTimeAsOf(as_of) = version else {
            return plan_err!(
                "{table} {version}: a table is read as of a time with FOR SYSTEM_TIME AS OF"
            );
        };
        let as_of = as_of_column(&as_of, context).ok_or_else(|| {
            plan_datafusion_err!(
                "{table} FOR SYSTEM_TIME AS OF {as_of}: name the event-time column of the \
                 stream it is joined to (FOR SYSTEM_TIME AS OF e.ts)"
            )
        })?;
        let plain = TableFactor::Table {
            name,
            alias: None,
            version: None,
            args: None,
            with_hints,
            partitions,
            with_ordinality,
            json_path,
            sample,
            index_hints,
        };
        let LogicalPlan::TableScan(scan) = context.plan(plain)? else {
            return plan_err!("FOR SYSTEM_TIME AS OF reads a table, and {table} is not one");
        };
        let inner = source_as_provider(&scan.source)?;
        let Some(columns) = (self.event_time_of)(inner.as_ref()) else {
            return plan_err!(
                "{table} FOR SYSTEM_TIME AS OF {as_of}: {table} has no event time, so its rows \
                 are no versions; declare WATERMARK FOR <column> on it, the time each row \
                 starts to be valid"
            );
        };
        let versioned = Arc::new(VersionedTable {
            inner,
            versioning: Versioning {
                table,
                as_of,
                version_time: columns.start,
                change_op: columns.change_op,
            },
        });
        let plan = LogicalPlanBuilder::scan(scan.table_name, provider_as_source(versioned), None)?
            .build()?;
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan, alias,
        ))))
    }
}

/// The column `e.ts` or `ts` that `AS OF` names.
fn as_of_column(expr: &SqlExpr, context: &dyn RelationPlannerContext) -> Option<Column> {
    match expr {
        SqlExpr::Identifier(column) => Some(Column::new_unqualified(
            context.normalize_ident(column.clone()),
        )),
        SqlExpr::CompoundIdentifier(parts) => match parts.as_slice() {
            [relation, column] => Some(Column::new(
                Some(context.normalize_ident(relation.clone())),
                context.normalize_ident(column.clone()),
            )),
            _ => None,
        },
        SqlExpr::Nested(inner) => as_of_column(inner, context),
        _ => None,
    }
}

/// How `plan` reads its table, if it is a scan of a [`VersionedTable`].
pub fn versioned_scan(plan: &LogicalPlan) -> Option<Versioning> {
    let LogicalPlan::TableScan(scan) = plan else {
        return None;
    };
    let provider = source_as_provider(&scan.source).ok()?;
    let versioned = provider.downcast_ref::<VersionedTable>()?;
    Some(versioned.versioning.clone())
}
