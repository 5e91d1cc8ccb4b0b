//! The DataFusion session profusion runs in: window table functions, the streaming
//! operators and physical optimizer rules (windows, joins, upserts, lookup joins), the UDF
//! library, and configuration suited to streaming (queries planned for one partition, then
//! spread over the session's workers by exchanges; plain `Utf8` strings). It is where the pieces meet, so it lives with the pipeline, above them; the
//! crate re-exports it as `profusion::session`.

use std::sync::Arc;

use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::prelude::SessionContext;

use crate::connector::SourceExec;
use crate::connector::kafka::RepartitionTopicExec;
use crate::error::Result;
use crate::join::{
    IntervalJoinExec, StreamJoinRule, TemporalJoinAnalyzer, TemporalJoinExec, TemporalJoinRule,
    VersionedTablePlanner,
};
use crate::lookup::{LookupJoinExec, LookupJoinRule};
use crate::pipeline::{
    ExchangeRule, UnboundedInputCheck, join_retention, lookup_table, table_declarations,
    table_event_time,
};
use crate::profile::{UpsertAggregateExec, UpsertAggregateRule};
use crate::stream::{
    ExchangeExec, GroupTask, PipelineContext, SourceReads, StreamingFilterExec,
    StreamingFilterRule, StreamingOperators,
};
use crate::top_n::{TopNExec, TopNRule};
use crate::window::{
    WindowAggregateExec, WindowAggregateRule, WindowAssignExec, WindowFunction, WindowQueryPlanner,
    is_window_end,
};

/// Options of a profusion session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Workers a query runs on: sources read their splits in this many partitions, and
    /// keyed operators run in this many partitions behind a hash exchange on their key.
    /// 1 by default (every query in one partition, polled by one task);
    /// [`SessionOptions::all_cores`] gives the machine's cores, as `profusion run` does.
    pub workers: usize,
    /// A limit for DataFusion's memory pool, in bytes; none by default.
    pub memory_limit: Option<usize>,
    /// A memory pool shared with other sessions, used instead of one of `memory_limit`:
    /// the tasks of one process in a consumer group share the process's limit.
    pub memory_pool: Option<Arc<dyn MemoryPool>>,
    /// How sources that never end on their own (Kafka topics, followed memory tables) are
    /// read by the tables this session declares.
    pub reads: SourceReads,
    /// The partition this session's sources read, when several processes share the
    /// pipeline through a consumer group (`profusion run --group`); none reads every
    /// partition.
    pub group_task: Option<GroupTask>,
}

impl SessionOptions {
    /// The machine's cores: the default number of workers of `profusion run`.
    pub fn all_cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            memory_limit: None,
            memory_pool: None,
            reads: SourceReads::default(),
            group_task: None,
        }
    }
}

/// A session with everything profusion adds registered, sharing `pipeline`.
pub fn new_session(
    options: &SessionOptions,
    pipeline: Arc<PipelineContext>,
) -> Result<SessionContext> {
    let plain = SessionStateBuilder::new().with_default_features().build();
    with_profusion(plain, options, pipeline)
}

/// `state`, a session of the application's own, with everything profusion adds: its
/// catalogs, functions, settings and optimizer rules stay, and profusion's are added (the
/// window table functions, the UDF library, the streaming optimizer rules before the
/// final sanity check, the relation planners of windows and temporal joins), sharing
/// `pipeline`. Queries run in one partition behind profusion's own exchanges
/// (`target_partitions` = 1); `options` may set a memory limit.
pub fn with_profusion(
    state: SessionState,
    options: &SessionOptions,
    pipeline: Arc<PipelineContext>,
) -> Result<SessionContext> {
    let mut config = state
        .config()
        .clone()
        .with_target_partitions(1)
        .with_information_schema(true)
        .with_coalesce_batches(false);
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    // The session has its catalog already: building again must not replace it.
    config
        .options_mut()
        .catalog
        .create_default_catalog_and_schema = false;
    let shared = Arc::clone(&pipeline);
    let mut config = config
        .with_extension(pipeline)
        .with_extension(Arc::new(streaming_operators()))
        .with_extension(Arc::new(table_declarations()));
    if let Some(task) = &options.group_task {
        config = config.with_extension(Arc::new(task.clone()));
    }
    let runtime = match (&options.memory_pool, options.memory_limit) {
        (Some(pool), _) => Some(RuntimeEnvBuilder::new().with_memory_pool(Arc::clone(pool))),
        (None, Some(limit)) => Some(RuntimeEnvBuilder::new().with_memory_limit(limit, 1.0)),
        (None, None) => None,
    };
    let rules = streaming_rules(state.physical_optimizers().to_vec(), options);
    let mut builder = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .with_physical_optimizer_rules(rules)
        .with_analyzer_rule(Arc::new(TemporalJoinAnalyzer));
    if let Some(runtime) = runtime {
        builder = builder.with_runtime_env(runtime.build_arc()?);
    }
    let mut state = builder.build();
    // Each goes first: windows are consulted before temporal joins, as listed.
    state.register_relation_planner(Arc::new(VersionedTablePlanner::new(Arc::new(
        table_event_time,
    ))))?;
    state.register_relation_planner(Arc::new(WindowQueryPlanner))?;
    let context = SessionContext::new_with_state(state);
    // Table function names are matched as written: accept both common spellings.
    for function in WindowFunction::ALL {
        context.register_udtf(function.name(), Arc::new(function));
        context.register_udtf(&function.name().to_ascii_uppercase(), Arc::new(function));
    }
    // enrich_http counts its failures where the status line reads them.
    profusion_udfs::register_all_counting(&context, Arc::clone(&shared.metrics.enrich_http))?;
    Ok(context)
}

/// The operators that run with event time in band.
pub fn streaming_operators() -> StreamingOperators {
    StreamingOperators::default()
        .with::<SourceExec>()
        .with::<StreamingFilterExec>()
        .with::<ExchangeExec>()
        .with::<LookupJoinExec>()
        .with::<WindowAssignExec>()
        .with::<WindowAggregateExec>()
        .with::<IntervalJoinExec>()
        .with::<TemporalJoinExec>()
        .with::<TopNExec>()
        .with::<UpsertAggregateExec>()
        .with::<RepartitionTopicExec>()
}

/// `rules` (a session's physical optimizer rules) with profusion's streaming rules before
/// the final sanity check.
fn streaming_rules(
    mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
    options: &SessionOptions,
) -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let at = rules
        .iter()
        .position(|r| r.name() == "SanityCheckPlan")
        .unwrap_or(rules.len());
    rules.insert(at, Arc::new(UnboundedInputCheck));
    rules.insert(
        at,
        Arc::new(ExchangeRule::new(options.workers, streaming_operators())),
    );
    rules.insert(at, Arc::new(StreamingFilterRule));
    rules.insert(at, Arc::new(UpsertAggregateRule));
    rules.insert(at, Arc::new(TopNRule));
    // Joins are planned after windows: a window join recognises windowed aggregations.
    rules.insert(
        at,
        Arc::new(StreamJoinRule::new(
            Arc::new(join_retention),
            Arc::new(is_window_end),
        )),
    );
    rules.insert(at, Arc::new(WindowAggregateRule));
    rules.insert(at, Arc::new(LookupJoinRule::new(Arc::new(lookup_table))));
    // A temporal join may read a bounded table: it is planned before lookup joins are.
    rules.insert(at, Arc::new(TemporalJoinRule));
    rules
}
