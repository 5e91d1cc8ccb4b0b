//! `CREATE MATERIALIZED VIEW`: a keyed query kept up to date in a store. Planning a view
//! gives two things: a table under the view's name that reads the store (for ad-hoc
//! queries and enrichment joins), and the plan of the job that upserts the query's rows
//! into the store, each with its version.
//!
//! Versions come from the query's shape:
//! - an unbounded `GROUP BY`: the number of rows folded into the key (see
//!   [`UpsertAggregateExec`]), which replays of the same input reproduce;
//! - a `GROUP BY` over a window: the window's end, in nanoseconds, so a later window of
//!   the same key replaces an earlier one and a replayed window changes nothing;
//! - a bounded query: the time the run was planned, in milliseconds, so each refresh
//!   replaces the previous one (and, once it has finished, rows of older runs are keys the
//!   query no longer returns, and are deleted).
//!
//! A view over other views (read from their stores, a bounded query) runs again whenever
//! one of them changes, at most once per `'refresh.min_interval'` (see [`ViewChanges`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result as DFResult, ScalarValue, plan_err};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::SessionContext;

use crate::connector::store::{
    StoreSink, StoreSource, UpstreamViews, VERSION_COLUMN, ViewChanges, ViewStore,
};
use crate::connector::{Declared, SourceDefinition, StreamTable, connector, connector_names};
use crate::error::{Error, Result};
use crate::profile::plan_scores;
use crate::profile::{ConflictPolicies, LatestPerKey, UpsertAggregateExec, ViewScore, is_grouped};
use crate::sql::{CreateMaterializedView, WithOptions, sql_frame};
use crate::stream::{ExchangeExec, Source, SourceReads, StreamingFilterExec};
use crate::window::{WINDOW_END, WindowAggregateExec};

/// The least time between two runs of a view over other views, unless
/// `'refresh.min_interval'` says otherwise.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A planned materialized view.
pub struct PlannedView {
    /// The table that reads the view's store, under the view's name.
    pub table: StreamTable,
    pub definition: Arc<ViewDefinition>,
    /// The first run.
    pub run: ViewRun,
}

/// What a materialized view is: enough to plan a run of it again (a refresh).
#[derive(Debug)]
pub struct ViewDefinition {
    pub name: String,
    /// The defining query.
    pub query: String,
    pub store: ViewStore,
    pub state_ttl: Option<Duration>,
    /// How often a view over a bounded query runs again (`refresh`).
    pub refresh: Option<Duration>,
    /// The views (kept in store tables) this view's query reads: it runs again when they
    /// change.
    pub upstream: Vec<(String, Arc<ViewChanges>)>,
    /// The least time between two runs brought by upstream changes
    /// (`'refresh.min_interval'`).
    pub min_interval: Duration,
    /// This view's own change signal, for the views defined over it.
    pub changes: Arc<ViewChanges>,
    /// The version of the latest run of a bounded query: each run's is newer, even two
    /// planned within one millisecond.
    run_version: AtomicI64,
    /// The line of the `CREATE MATERIALIZED VIEW`.
    pub line: usize,
    /// The key columns.
    pub primary_key: Vec<String>,
    /// The scoring functions `POST /v1/score` evaluates on a row (`'score.<name>'`).
    pub scores: Vec<ViewScore>,
    /// Held through a run of a bounded query and the deletes after it, so that runs of one
    /// view (the first, `REFRESH`, the schedule) never overlap.
    pub runs: tokio::sync::Mutex<()>,
}

impl ViewDefinition {
    /// A watch on the views this one reads, for waiting between its runs.
    pub fn watch_upstream(&self) -> UpstreamViews {
        UpstreamViews::new(self.upstream.iter().map(|(n, c)| (n.as_str(), c)))
    }

    /// The version of a new run of a bounded query: when it was planned, in milliseconds,
    /// and always newer than the previous run's.
    fn next_run_version(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let newer = |previous: i64| now.max(previous + 1);
        let previous = self
            .run_version
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| Some(newer(p)))
            .unwrap_or_else(|p| p);
        newer(previous)
    }
}

/// One planned run of a view: a plan that keeps the store up to date, or, for a bounded
/// query, brings it up to date once.
pub struct ViewRun {
    pub plan: Arc<dyn ExecutionPlan>,
    /// For a bounded query: the version every row of this run carries. Once the run has
    /// finished, rows with older versions are keys the query no longer returns.
    pub version: Option<i64>,
}

/// Plans `view` in `context`; `views` finds the materialized views declared so far, by
/// name (those the query reads make it run again when they change).
pub async fn plan_view(
    context: &SessionContext,
    view: CreateMaterializedView,
    reads: SourceReads,
    views: impl Fn(&str) -> Option<Arc<ViewDefinition>>,
) -> Result<PlannedView> {
    let CreateMaterializedView {
        name,
        primary_key,
        mut options,
        query,
        line,
    } = view;
    let failed = |source| Error::Statement { line, source };
    let declared_options = options.remaining().clone();
    let frame = sql_frame(context, &query).await.map_err(failed)?;
    let mut schema: SchemaRef = Arc::clone(frame.schema().inner());
    for key in &primary_key {
        if schema.field_with_name(key).is_err() {
            let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(options.error(format!(
                "PRIMARY KEY column '{key}' is not a column of the query (columns: {})",
                columns.join(", ")
            )));
        }
    }
    let conflicts = ConflictPolicies::parse(&mut options)?;
    let grouped = is_grouped(frame.logical_plan());
    let upstream: Vec<(String, Arc<ViewChanges>)> = tables_read(frame.logical_plan())
        .into_iter()
        .filter_map(|table| views(&table).map(|view| (table, view)))
        .filter(|(_, view)| matches!(view.store, ViewStore::Table(_)))
        .map(|(table, view)| (table, Arc::clone(&view.changes)))
        .collect();
    let query = if grouped {
        if conflicts.is_some() {
            return Err(options.error(
                "the 'conflict.*' options are for views over updates without GROUP BY; a \
                 GROUP BY picks each value with its aggregates (last_value(x ORDER BY ts))",
            ));
        }
        query
    } else {
        let unbounded = frame
            .clone()
            .create_physical_plan()
            .await
            .map_err(failed)?
            .boundedness()
            .is_unbounded();
        if conflicts.is_none() && !unbounded {
            query
        } else {
            let merge = conflicts.unwrap_or_default();
            let merged = merge.merge_query(&query, &schema, &primary_key, |m| options.error(m))?;
            let frame = sql_frame(context, &merged).await.map_err(failed)?;
            schema = Arc::clone(frame.schema().inner());
            merged
        }
    };
    let state_ttl = options.duration("state.ttl")?;
    let scores = plan_scores(context, &schema, &mut options)?;
    let refresh = options.duration("refresh")?;
    if refresh.is_some_and(|r| r.is_zero()) {
        return Err(options.error("option 'refresh' must be longer than zero"));
    }
    let min_interval = options.duration("refresh.min_interval")?;
    let min_interval_alone = options.error(
        "option 'refresh.min_interval' is for views over other materialized views (kept in \
         sqlite or postgres), which run again when those change",
    );
    let connector = options
        .take("connector")
        .unwrap_or_else(|| "sqlite".into())
        .to_ascii_lowercase();
    let declared = Declared {
        name: &name,
        schema: &schema,
        metadata: &[],
        primary_key: &primary_key,
    };
    let store = open_store(&connector, declared, &mut options, reads)?;
    let refresh_on_topic = options.error(
        "option 'refresh' needs a store table (sqlite, postgres): an upsert topic cannot \
         delete the keys a later run no longer returns",
    );
    let refresh_on_stream = options.error(
        "option 'refresh' is for views over bounded queries (files, stores, snapshots); \
         a view over a stream is kept up to date as events arrive",
    );
    options.finish(&connector)?;

    if refresh.is_some() && matches!(store, ViewStore::Topic { .. }) {
        return Err(refresh_on_topic);
    }
    let definition = Arc::new(ViewDefinition {
        name: name.clone(),
        query,
        store: store.clone(),
        state_ttl,
        refresh,
        upstream,
        min_interval: min_interval.unwrap_or(DEFAULT_MIN_INTERVAL),
        changes: Arc::default(),
        run_version: AtomicI64::new(0),
        line,
        runs: tokio::sync::Mutex::new(()),
        primary_key: primary_key.clone(),
        scores,
    });
    let run = plan_run(context, &definition).await?;
    if refresh.is_some() && run.version.is_none() {
        return Err(refresh_on_stream);
    }
    // Only a bounded query over other views runs again when they change.
    if min_interval.is_some() && (definition.upstream.is_empty() || run.version.is_none()) {
        return Err(min_interval_alone);
    }
    let source: Arc<dyn Source> = match store {
        ViewStore::Table(store) => Arc::new(StoreSource(store)),
        ViewStore::Topic { source, .. } => {
            let key = primary_key
                .iter()
                .map(|k| schema.index_of(k))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::DataFusion(e.into()))?;
            Arc::new(LatestPerKey::new(source, key))
        }
    };
    let source = SourceDefinition {
        table: name.clone(),
        source,
        watermark: None,
        lateness: Default::default(),
        dedup: None,
        lookup_refresh: None,
        state_ttl: None,
        change_op: None,
    };
    Ok(PlannedView {
        table: StreamTable::new(name, connector, schema, Some(Arc::new(source)), None)
            .with_options(declared_options),
        definition,
        run,
    })
}

/// Plans one run of `view`: its query, each row with its version, into its store.
pub async fn plan_run(context: &SessionContext, view: &ViewDefinition) -> Result<ViewRun> {
    let failed = |source| Error::Statement {
        line: view.line,
        source,
    };
    let frame = sql_frame(context, &view.query).await.map_err(failed)?;
    let plan = frame.create_physical_plan().await.map_err(failed)?;
    let (versioned, version) = with_versions(&plan, view).map_err(failed)?;
    let plan: Arc<dyn ExecutionPlan> = match &view.store {
        ViewStore::Table(store) => {
            let sink = StoreSink::versioned(Arc::clone(store), versioned.schema())
                .signalling(Arc::clone(&view.changes));
            Arc::new(DataSinkExec::new(versioned, Arc::new(sink), None))
        }
        ViewStore::Topic { sink, .. } => {
            // Messages carry the rows without their version, which is the last column.
            let schema = versioned.schema();
            let rows = leading_columns(&schema, schema.fields().len() - 1);
            let rows = ProjectionExec::try_new(rows, versioned).map_err(failed)?;
            Arc::new(DataSinkExec::new(Arc::new(rows), Arc::clone(sink), None))
        }
    };
    Ok(ViewRun { plan, version })
}

/// The store named by `connector`, consuming its options.
fn open_store(
    name: &str,
    declared: Declared<'_>,
    options: &mut WithOptions,
    reads: SourceReads,
) -> Result<ViewStore> {
    match connector(name).filter(|c| c.holds_views()) {
        Some(store) => store.view_store(declared, options, reads),
        None => Err(options.error(format!(
            "unknown store connector '{name}' for a materialized view (known: {})",
            connector_names(|c| c.holds_views()).join(", ")
        ))),
    }
}

/// `plan` with each row's version appended as a last `_version` column; for a bounded
/// plan, also the one version all its rows carry.
fn with_versions(
    plan: &Arc<dyn ExecutionPlan>,
    view: &ViewDefinition,
) -> DFResult<(Arc<dyn ExecutionPlan>, Option<i64>)> {
    let state_ttl = view.state_ttl;
    // The plan's workers gathered for the store: the rows are versioned before that.
    if let Some(gather) = plan.downcast_ref::<ExchangeExec>()
        && gather.is_gather()
    {
        let (input, version) = with_versions(gather.input(), view)?;
        return Ok((Arc::new(ExchangeExec::gather(input)), version));
    }
    if let Some(upsert) = plan.downcast_ref::<UpsertAggregateExec>() {
        return Ok((
            Arc::new(upsert.with_versions().with_state_ttl(state_ttl)),
            None,
        ));
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>()
        && plan.boundedness().is_unbounded()
    {
        let (input, version) = with_versions(projection.input(), view)?;
        let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = projection
            .expr()
            .iter()
            .map(|e| (Arc::clone(&e.expr), e.alias.clone()))
            .collect();
        let column = Column::new(VERSION_COLUMN, input.schema().fields().len() - 1);
        exprs.push((Arc::new(column), VERSION_COLUMN.into()));
        return Ok((Arc::new(ProjectionExec::try_new(exprs, input)?), version));
    }
    if plan.is::<WindowAggregateExec>() {
        let schema = plan.schema();
        let Ok(end) = schema.index_of(WINDOW_END) else {
            return plan_err!("a windowed view must GROUP BY window_end");
        };
        let version = CastExpr::new(
            Arc::new(Column::new(WINDOW_END, end)),
            DataType::Int64,
            None,
        );
        return Ok((append_column(plan, Arc::new(version))?, None));
    }
    let filters = plan.is::<FilterExec>() || plan.is::<StreamingFilterExec>();
    if filters && plan.boundedness().is_unbounded() {
        return plan_err!(
            "a materialized view cannot filter its groups (HAVING): a key that stops matching \
             would keep its last row in the store. Filter when reading the view instead"
        );
    }
    if !plan.boundedness().is_unbounded() {
        let planned_at = view.next_run_version();
        let version = Literal::new(ScalarValue::Int64(Some(planned_at)));
        return Ok((append_column(plan, Arc::new(version))?, Some(planned_at)));
    }
    plan_err!(
        "a materialized view over a stream must be a GROUP BY of its primary key, directly or \
         over a window (TUMBLE, HOP, SESSION, CUMULATE); found {} at the top of its plan",
        plan.name()
    )
}

/// The names of the tables `plan` reads, in subqueries and through views too.
fn tables_read(plan: &LogicalPlan) -> BTreeSet<String> {
    let mut tables = BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            tables.insert(scan.table_name.table().to_string());
            if let Some(inner) = scan.source.get_logical_plan() {
                tables.extend(tables_read(&inner));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    tables
}

/// `plan`'s columns followed by `version`.
fn append_column(
    plan: &Arc<dyn ExecutionPlan>,
    version: Arc<dyn PhysicalExpr>,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let schema = plan.schema();
    let mut exprs = leading_columns(&schema, schema.fields().len());
    exprs.push((version, VERSION_COLUMN.into()));
    Ok(Arc::new(ProjectionExec::try_new(exprs, Arc::clone(plan))?))
}

/// The first `count` columns of `schema`, as projection expressions keeping their names.
fn leading_columns(
    schema: &datafusion::arrow::datatypes::Schema,
    count: usize,
) -> Vec<(Arc<dyn PhysicalExpr>, String)> {
    schema
        .fields()
        .iter()
        .take(count)
        .enumerate()
        .map(|(i, f)| {
            (
                Arc::new(Column::new(f.name(), i)) as Arc<dyn PhysicalExpr>,
                f.name().clone(),
            )
        })
        .collect()
}
