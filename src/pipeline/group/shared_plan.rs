//! What processes sharing a pipeline through a consumer group need of it, checked before
//! any joins the group: every query reads Kafka topics, all with the same number of
//! partitions (partition N of each is task N, as Kafka Streams co-partitions its inputs);
//! every keyed operator (window, view, join, Top-N, dedup) sees every row of its keys in
//! one task: its topics are keyed by some of its key columns, or its input goes through
//! a repartition topic (see [`Repartitioning`]); and every result goes somewhere all the
//! processes reach (Kafka, PostgreSQL), not into a file of one machine.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::sink::DataSink;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{PhysicalExpr, physical_exprs_equal};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{Distribution, ExecutionPlan};

use super::repartition::Repartitioning;
use crate::connector::file::FileSink;
use crate::connector::kafka::{
    KafkaOptions, KafkaSource, RepartitionTopic, RepartitionTopicExec, StartupMode,
    partition_counts,
};
use crate::connector::memory::MemorySink;
use crate::connector::store::{StoreSink, ViewStore};
use crate::connector::{CountingSink, SourceExec};
use crate::error::{Error, Result};
use crate::pipeline::session::streaming_operators;
use crate::pipeline::{Job, Pipeline};
use crate::window::WindowAssignExec;

/// The work the group shares: the partitions of the lead topic are its tasks.
#[derive(Debug, Clone)]
pub struct SharedPlan {
    /// How to reach the broker (the first Kafka table's options).
    pub kafka: KafkaOptions,
    /// The topic the group subscribes to: the first Kafka table's first topic.
    pub lead_topic: String,
    /// The partitions of every source topic.
    pub partitions: usize,
    /// How the group's repartition topics are named and sized.
    repartitioning: Repartitioning,
    /// The repartition topics the plans go through.
    pub topics: Vec<Arc<RepartitionTopic>>,
}

impl SharedPlan {
    /// Checks that `pipeline` can be shared by group `group` (of lineage `lineage`), and
    /// says how; the pipeline's plans go through the repartition topics they need.
    pub async fn of(pipeline: &mut Pipeline, group: &str, lineage: u64) -> Result<Self> {
        let refused = |message: String| Error::Group {
            group: group.to_string(),
            message,
        };
        for job in pipeline.jobs() {
            check_job(job, Check::Tables)?;
        }
        let sources: Vec<KafkaOptions> = pipeline
            .jobs()
            .iter()
            .flat_map(|job| kafka_tables(&job.plan))
            .map(|kafka| kafka.options().clone())
            .collect();
        let Some(kafka) = sources.first().cloned() else {
            return Err(refused(
                "the pipeline reads no Kafka topic: --group deals Kafka partitions out".into(),
            ));
        };
        let mut counts = Vec::new();
        for options in sources {
            let listed = tokio::task::spawn_blocking(move || partition_counts(&options))
                .await
                .map_err(|e| Error::Io {
                    context: "listing partitions".into(),
                    source: std::io::Error::other(e),
                })??;
            counts.extend(listed);
        }
        let (lead_topic, partitions) = counts[0].clone();
        if let Some((topic, count)) = counts.iter().find(|(_, n)| *n != partitions) {
            return Err(refused(format!(
                "with --group every source topic needs the same number of partitions (task N \
                     reads partition N of each): {lead_topic} has {partitions}, {topic} has {count}"
            )));
        }
        let mut shared = Self {
            kafka,
            lead_topic,
            partitions,
            repartitioning: Repartitioning {
                group: group.to_string(),
                partitions,
                lineage,
            },
            topics: Vec::new(),
        };
        shared.topics = shared.place(pipeline)?;
        for job in pipeline.jobs() {
            check_job(job, Check::Keys)?;
        }
        Ok(shared)
    }

    /// Puts `pipeline`'s plans (a task's, planned from the same text) through the group's
    /// repartition topics; returns the topics.
    pub fn place(&self, pipeline: &mut Pipeline) -> Result<Vec<Arc<RepartitionTopic>>> {
        let mut topics = Vec::new();
        let mut used = std::collections::HashSet::new();
        for job in pipeline.jobs_mut() {
            topics.extend(self.repartitioning.place(job, &mut used)?);
        }
        Ok(topics)
    }
}

/// The scan of a Kafka table that `node` is, if it is one.
pub(super) fn kafka_scan(node: &Arc<dyn ExecutionPlan>) -> Option<(&SourceExec, &KafkaSource)> {
    let scan = node.downcast_ref::<SourceExec>()?;
    Some((scan, scan.source().downcast_ref::<KafkaSource>()?))
}

/// Every Kafka table read under `plan`, in plan order.
pub(super) fn kafka_tables(plan: &Arc<dyn ExecutionPlan>) -> Vec<&KafkaSource> {
    let mut tables = Vec::new();
    let _ = plan.apply(|node| {
        tables.extend(kafka_scan(node).map(|(_, kafka)| kafka));
        Ok(TreeNodeRecursion::Continue)
    });
    tables
}

/// What a pass of the checks looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    /// Sources, sinks, totals over every key and deduplication: before the broker is asked
    /// anything.
    Tables,
    /// That every keyed operator sees every row of its keys: once repartition topics are
    /// placed.
    Keys,
}

/// Checks one job as `check` says.
fn check_job(job: &Job, check: Check) -> Result<()> {
    if job.is_bounded() {
        return Err(statement_refused(
            job.line,
            "this query reads no stream: with --group it would run once in every partition's \
             task. Run it on its own, without --group"
                .into(),
        ));
    }
    if let Some((view, _)) = &job.view
        && let ViewStore::Table(store) = &view.store
        && !store.is_shared()
    {
        return Err(statement_refused(
            job.line,
            format!(
                "view {} is kept in {}, on this machine only: processes sharing a pipeline with \
                 --group need a store they all reach, connector = 'postgres' or 'kafka'",
                view.name,
                store.describe()
            ),
        ));
    }
    let mut found = Ok(());
    job.plan
        .apply(|node| {
            found = match check {
                Check::Tables => check_node(node),
                Check::Keys => check_keys(node),
            };
            Ok(match found {
                Ok(()) => TreeNodeRecursion::Continue,
                Err(_) => TreeNodeRecursion::Stop,
            })
        })
        .map_err(|source| Error::Statement {
            line: job.line,
            source,
        })?;
    found.map_err(|message| statement_refused(job.line, message))
}

/// Checks that a keyed operator at `node` sees every row of its keys in its task.
fn check_keys(node: &Arc<dyn ExecutionPlan>) -> std::result::Result<(), String> {
    let requirements = node.input_distribution_requirements().into_per_child();
    for (child, requirement) in node.children().into_iter().zip(requirements) {
        if let Distribution::KeyPartitioned(keys) = requirement
            && let Some(gap) = partitioning_gap(child, &keys)
        {
            return Err(gap);
        }
    }
    Ok(())
}

/// Checks one plan node: a stream it reads must be a Kafka table, a sink must be shared,
/// an operator over every row refused.
fn check_node(node: &Arc<dyn ExecutionPlan>) -> std::result::Result<(), String> {
    let requirements = node.input_distribution_requirements().into_per_child();
    for (child, requirement) in node.children().into_iter().zip(requirements) {
        match requirement {
            // A streaming operator wanting one partition of every row: a total over all
            // keys. A sink's gather is not one, nor is window assignment, which keeps no
            // state by key (it stays in one partition for its late-row writer).
            Distribution::SinglePartition
                if streaming_operators().find(node.as_ref()).is_some()
                    && !node.is::<WindowAssignExec>() =>
            {
                if let Some(gap) = partitioning_gap(child, &[]) {
                    return Err(gap);
                }
            }
            _ => {}
        }
    }
    if let Some(scan) = node.downcast_ref::<SourceExec>() {
        let source = scan.source();
        if let Some(kafka) = source.downcast_ref::<KafkaSource>() {
            if kafka.options().startup == StartupMode::Latest {
                return Err(format!(
                    "table {} starts reading at the end of its topic ('scan.startup.mode' = \
                     'latest'): a partition that moves to another process before its first \
                     checkpoint would skip what came meanwhile. Start from 'earliest', \
                     'group-offsets' or a 'timestamp' with --group",
                    scan.table()
                ));
            }
            if let Some(dedup) = scan.dedup_columns() {
                check_key(scan.table(), kafka, &dedup)?;
            }
        } else if !source.is_bounded() {
            return Err(format!(
                "table {} ({}) is not a Kafka topic: processes sharing a pipeline with --group \
                 divide Kafka partitions among them, and only those",
                scan.table(),
                source.describe()
            ));
        }
    }
    if let Some(sink) = node.downcast_ref::<DataSinkExec>() {
        check_sink(sink.sink(), "the query writes to")?;
    }
    if let Some(late) = node
        .downcast_ref::<WindowAssignExec>()
        .and_then(WindowAssignExec::late_sink)
    {
        check_sink(
            late.sink.as_ref(),
            &format!("late rows (table {}) go to", late.table),
        )?;
    }
    Ok(())
}

/// Checks that `sink` writes where every process reaches, not to this machine only.
fn check_sink(sink: &dyn DataSink, what: &str) -> std::result::Result<(), String> {
    let sink = match sink.downcast_ref::<CountingSink>() {
        Some(counted) => counted.inner().as_ref(),
        None => sink,
    };
    let local = match sink.downcast_ref::<StoreSink>() {
        Some(store) => (!store.store().is_shared()).then(|| store.store().describe()),
        None if sink.is::<FileSink>() => Some("a file".into()),
        None if sink.is::<MemorySink>() => Some("memory".into()),
        None => None,
    };
    match local {
        Some(local) => Err(format!(
            "{what} {local}, on this machine only: processes sharing a pipeline with --group \
             write to a table they all reach, connector = 'postgres' or 'kafka'"
        )),
        None => Ok(()),
    }
}

/// The names of the columns `keys` (over `input`'s rows) are, traced back to the tables
/// (or repartition topics) they come from. A key that is not such a column is no key: an
/// operator keyed by it needs the topic's key among its other keys.
fn key_names(input: &Arc<dyn ExecutionPlan>, keys: &[Arc<dyn PhysicalExpr>]) -> Vec<String> {
    keys.iter()
        .filter_map(|key| key.downcast_ref::<Column>())
        .filter_map(|column| source_column(input, column.index()))
        .collect()
}

/// Why an operator keyed by `keys` over `input` would not see every row of its keys in
/// one task, if it would not: a Kafka table read under `input` (above any repartition
/// topic) whose topic is not keyed by some of the keys' columns, or a repartition topic
/// placing rows by other columns. A topic right under the operator placing rows by the
/// same keys (expressions too) is the operator's own.
pub(super) fn partitioning_gap(
    input: &Arc<dyn ExecutionPlan>,
    keys: &[Arc<dyn PhysicalExpr>],
) -> Option<String> {
    let names = key_names(input, keys);
    let mut gap = None;
    let _ = input.apply(|node| {
        if let Some(repartition) = node.downcast_ref::<RepartitionTopicExec>() {
            let placed: Vec<String> = repartition
                .keys()
                .iter()
                .filter_map(|key| key.downcast_ref::<Column>().map(|c| c.name().to_string()))
                .collect();
            let own = Arc::ptr_eq(node, input) && physical_exprs_equal(repartition.keys(), keys);
            let by_columns = placed.len() == repartition.keys().len()
                && !placed.is_empty()
                && placed.iter().all(|column| names.contains(column));
            if !own && !by_columns {
                gap = Some(format!(
                    "an operator keyed by ({}) reads rows placed by ({}) through {}",
                    names.join(", "),
                    placed.join(", "),
                    repartition.topic().name
                ));
                return Ok(TreeNodeRecursion::Stop);
            }
            return Ok(TreeNodeRecursion::Jump);
        }
        if let Some((scan, kafka)) = kafka_scan(node) {
            gap = check_key(scan.table(), kafka, &names).err();
        }
        Ok(match gap {
            None => TreeNodeRecursion::Continue,
            Some(_) => TreeNodeRecursion::Stop,
        })
    });
    gap
}

/// Checks that an operator keyed by `keys` over `table` sees every row of its keys in one
/// partition: the topic's message key is among them. Once the group's repartition topics
/// are placed, what can fail this is a total over every key and a `'dedup.key'`, which
/// the source applies as it reads.
fn check_key(table: &str, kafka: &KafkaSource, keys: &[String]) -> std::result::Result<(), String> {
    let partition_key = kafka.partition_key();
    if keys.is_empty() {
        return Err(format!(
            "a total over every row of table {table} (an aggregate without a key, or a Top-N \
             without PARTITION BY) would be computed per partition with --group: group it by \
             a key, or run the pipeline without --group"
        ));
    }
    if partition_key.is_empty() {
        return Err(format!(
            "an operator keyed by ({}) reads table {table}, which does not say what its \
             topic's messages are keyed by: declare it with 'key.fields' (or a PRIMARY KEY), \
             so that each process is sure to see every row of the keys it holds",
            keys.join(", ")
        ));
    }
    if !partition_key.iter().all(|column| keys.contains(column)) {
        return Err(format!(
            "an operator keyed by ({}) reads table {table}, whose topic is keyed by ({}): the \
             rows of one key are spread over partitions. Include the topic's key (for \
             'dedup.key', in the key)",
            keys.join(", "),
            partition_key.join(", ")
        ));
    }
    Ok(())
}

/// The name of the table (or repartition topic) column that column `index` of `plan`'s
/// output is, traced down through projections, window assignments and the nodes that pass
/// their input's columns on in place; `None` when it is computed, or comes through a node
/// that changes columns.
fn source_column(plan: &Arc<dyn ExecutionPlan>, index: usize) -> Option<String> {
    if plan.is::<SourceExec>() || plan.is::<RepartitionTopicExec>() {
        return Some(plan.schema().field(index).name().clone());
    }
    // A window assignment's columns other than the window's are its input's, projected.
    if let Some(assign) = plan.downcast_ref::<WindowAssignExec>() {
        let column = Column::new(plan.schema().field(index).name(), index);
        let input = assign.input_keys(&[Arc::new(column)])?;
        let input_column = input.first()?.downcast_ref::<Column>()?;
        return source_column(assign.children()[0], input_column.index());
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let expr = &projection.expr().get(index)?.expr;
        let column = expr.downcast_ref::<Column>()?;
        return source_column(projection.input(), column.index());
    }
    // A node over one input whose column `index` is the input's (filters, exchanges,
    // window assignment, lookups appending columns): the same column below.
    let children = plan.children();
    let [input] = children.as_slice() else {
        return None;
    };
    let here = plan.schema();
    let below = input.schema();
    (index < below.fields().len() && here.field(index).name() == below.field(index).name())
        .then(|| source_column(input, index))
        .flatten()
}

fn statement_refused(line: usize, message: String) -> Error {
    Error::Statement {
        line,
        source: datafusion::common::DataFusionError::Plan(message),
    }
}
