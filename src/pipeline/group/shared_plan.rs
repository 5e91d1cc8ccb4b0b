//! What processes sharing a pipeline through a consumer group need of it, checked before
//! any joins the group: every query reads Kafka topics, all with the same number of
//! partitions (partition N of each is task N, as Kafka Streams co-partitions its inputs);
//! every keyed operator (window, view, join, Top-N, dedup) is keyed by at least the
//! columns its topics' messages are keyed by, so that a task sees every row of its keys;
//! and every result goes somewhere all the processes reach (Kafka, PostgreSQL), not into a
//! file of one machine.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::sink::DataSink;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{Distribution, ExecutionPlan};

use crate::connector::file::FileSink;
use crate::connector::kafka::{KafkaOptions, KafkaSource, StartupMode, partition_counts};
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
}

impl SharedPlan {
    /// Checks that `pipeline` can be shared by a group, and says how.
    pub async fn of(pipeline: &Pipeline, group: &str) -> Result<Self> {
        let refused = |message: String| Error::Group {
            group: group.to_string(),
            message,
        };
        let mut sources = Vec::new();
        for job in pipeline.jobs() {
            check_job(job, &mut sources)?;
        }
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
        Ok(Self {
            kafka,
            lead_topic,
            partitions,
        })
    }
}

/// Checks one job's sources and sinks, collecting its Kafka tables' options.
fn check_job(job: &Job, sources: &mut Vec<KafkaOptions>) -> Result<()> {
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
            found = check_node(node, sources);
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

/// Checks one plan node: a stream it reads must be a Kafka table, a sink must be shared.
fn check_node(
    node: &Arc<dyn ExecutionPlan>,
    sources: &mut Vec<KafkaOptions>,
) -> std::result::Result<(), String> {
    let requirements = node.input_distribution_requirements().into_per_child();
    for (child, requirement) in node.children().into_iter().zip(requirements) {
        match requirement {
            Distribution::KeyPartitioned(keys) => {
                // A key that is not a column traced back to its table is no key: the
                // operator is then refused unless the topic's key is among the others.
                let names: Vec<String> = keys
                    .iter()
                    .filter_map(|key| key.downcast_ref::<Column>())
                    .filter_map(|column| source_column(child, column.index()))
                    .collect();
                check_partitioning(child, &names)?;
            }
            // A streaming operator wanting one partition of every row: a total over all
            // keys. A sink's gather is not one, nor is window assignment, which keeps no
            // state by key (it stays in one partition for its late-row writer).
            Distribution::SinglePartition
                if streaming_operators().find(node.as_ref()).is_some()
                    && !node.is::<WindowAssignExec>() =>
            {
                check_partitioning(child, &[])?
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
                check_key(scan.table(), kafka, &dedup, "deduplicated by")?;
            }
            sources.push(kafka.options().clone());
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

/// Checks that every Kafka table read under `input` is partitioned by some of `keys`.
fn check_partitioning(
    input: &Arc<dyn ExecutionPlan>,
    keys: &[String],
) -> std::result::Result<(), String> {
    let mut found = Ok(());
    let _ = input.apply(|node| {
        if let Some(scan) = node.downcast_ref::<SourceExec>()
            && let Some(kafka) = scan.source().downcast_ref::<KafkaSource>()
        {
            found = check_key(scan.table(), kafka, keys, "keyed by");
        }
        Ok(match found {
            Ok(()) => TreeNodeRecursion::Continue,
            Err(_) => TreeNodeRecursion::Stop,
        })
    });
    found
}

/// Checks that an operator `keyed` by `keys` over `table` sees every row of its keys in
/// one partition: the topic's message key is among them.
fn check_key(
    table: &str,
    kafka: &KafkaSource,
    keys: &[String],
    keyed: &str,
) -> std::result::Result<(), String> {
    let partition_key = kafka.partition_key();
    if partition_key.is_empty() {
        return Err(format!(
            "table {table} does not say what its topic's messages are keyed by: declare it with \
             'key.fields' (or a PRIMARY KEY), so that each process is sure to hold every row of \
             the keys it holds"
        ));
    }
    if !partition_key.iter().all(|column| keys.contains(column)) {
        return Err(format!(
            "an operator {keyed} ({}) reads table {table}, whose topic is keyed by ({}): the \
             rows of one key are spread over partitions, which needs a repartition topic that \
             --group does not build yet. Key the topic by these columns, or run the pipeline \
             without --group",
            keys.join(", "),
            partition_key.join(", ")
        ));
    }
    Ok(())
}

/// The name of the table column that column `index` of `plan`'s output is, traced down
/// through projections and the nodes that pass their input's columns on in place; `None`
/// when it is computed, or comes through a node that changes columns.
fn source_column(plan: &Arc<dyn ExecutionPlan>, index: usize) -> Option<String> {
    if let Some(scan) = plan.downcast_ref::<SourceExec>() {
        return Some(scan.schema().field(index).name().clone());
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
