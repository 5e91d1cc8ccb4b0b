//! Where a group's plans go through repartition topics: under every keyed operator (a
//! window, view, join or Top-N) whose input is not partitioned by its key, that is, whose
//! Kafka topics are not keyed by some of its key columns. Each task then sends that
//! input's rows through `GROUP-JOB-repartition` to the task of their key (see
//! [`RepartitionTopicExec`]). A window's topic goes under its window assignment, so that
//! lateness is judged against the watermark of every task, as on one process. Every input
//! of a join goes through a topic of its own when any must, or when its inputs are placed
//! by different partitioners (a producer's and the repartition hash place keys apart).
//!
//! A restored task numbers the rows it sends again as it did the first time, which holds
//! only if its input comes in the same order when read again from the same offsets: one
//! topic's partition, through stateless steps. A union or join of streams, or a table over
//! several topics, interleaves as its inputs arrive, so a topic over one is refused.
//!
//! Placement depends only on the plan, so every task of every process places the same
//! topics under the same names.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::{Distribution, ExecutionPlan, ExecutionPlanProperties};

use super::shared_plan::{kafka_scan, kafka_tables, partitioning_gap};
use crate::connector::kafka::{KafkaOptions, RepartitionTopic, RepartitionTopicExec};
use crate::connector::{CountingSink, SourceExec};
use crate::error::{Error, Result};
use crate::pipeline::session::streaming_operators;
use crate::pipeline::{Job, JobKind};
use crate::stream::{ExchangeExec, partitions_of};
use crate::window::WindowAssignExec;

/// What names and sizes a group's repartition topics.
#[derive(Debug, Clone)]
pub struct Repartitioning {
    /// The consumer group, the first part of every topic's name.
    pub group: String,
    /// The partitions of the source topics.
    pub partitions: usize,
    /// The group's lineage (kept in its checkpoint directory).
    pub lineage: u64,
}

impl Repartitioning {
    /// Puts a repartition topic under each keyed operator of `job`'s plan that needs one;
    /// returns those topics. `used` holds the names the pipeline's earlier jobs took.
    pub fn place(
        &self,
        job: &mut Job,
        used: &mut HashSet<String>,
    ) -> Result<Vec<Arc<RepartitionTopic>>> {
        let refused = |message: String| Error::Statement {
            line: job.line,
            source: datafusion::common::DataFusionError::Plan(message),
        };
        // Two jobs writing one table get topics of their own.
        let job_name = job_name(job);
        let mut base = format!("{}-{job_name}-repartition", self.group);
        if used.contains(&base) {
            base = format!("{}-{job_name}-line{}-repartition", self.group, job.line);
        }
        let mut topics: Vec<Arc<RepartitionTopic>> = Vec::new();
        let mut refusal = None;
        let placed = Arc::clone(&job.plan).transform_up(|node| {
            let keyed = keyed_inputs(&node);
            if keyed.is_empty() || !needs_topics(&node, &keyed) {
                return Ok(Transformed::no(node));
            }
            let mut children: Vec<Arc<dyn ExecutionPlan>> =
                node.children().into_iter().map(Arc::clone).collect();
            for (i, keys) in keyed {
                let Some(kafka) = kafka_under(&children[i]) else {
                    continue;
                };
                let name = match topics.len() {
                    0 => base.clone(),
                    n => format!("{base}-{}", n + 1),
                };
                let topic = Arc::new(RepartitionTopic {
                    group: self.group.clone(),
                    name,
                    kafka,
                    partitions: self.partitions,
                    lineage: self.lineage,
                });
                match through_topic(&children[i], keys, &topic)? {
                    Ok(placed) => children[i] = placed,
                    Err(message) => {
                        refusal = Some(message);
                        return Ok(Transformed::no(node));
                    }
                }
                topics.push(topic);
            }
            Ok(Transformed::yes(replace_children_if_necessary(
                node, children,
            )?))
        });
        let placed = placed.map_err(|source| Error::Statement {
            line: job.line,
            source,
        })?;
        if let Some(message) = refusal {
            return Err(refused(message));
        }
        job.plan = placed.data;
        used.extend(topics.iter().map(|topic| topic.name.clone()));
        Ok(topics)
    }
}

/// The inputs of `node` a keyed operator needs partitioned by key, with the keys.
fn keyed_inputs(node: &Arc<dyn ExecutionPlan>) -> Vec<(usize, Vec<Arc<dyn PhysicalExpr>>)> {
    if streaming_operators().find(node.as_ref()).is_none() {
        return Vec::new();
    }
    node.input_distribution_requirements()
        .into_per_child()
        .into_iter()
        .enumerate()
        .filter_map(|(i, requirement)| match requirement {
            Distribution::KeyPartitioned(keys) => Some((i, keys)),
            _ => None,
        })
        .collect()
}

/// True when the keyed inputs of `node` must go through repartition topics: one of them
/// is not partitioned by its keys, or (of a join) they are placed by different
/// partitioners.
fn needs_topics(
    node: &Arc<dyn ExecutionPlan>,
    keyed: &[(usize, Vec<Arc<dyn PhysicalExpr>>)],
) -> bool {
    let children = node.children();
    let reads_kafka = |i: usize| kafka_under(children[i]).is_some();
    let gap = keyed.iter().any(|(i, keys)| {
        let child = children[*i];
        reads_kafka(*i) && partitioning_gap(child, keys).is_some()
    });
    let placed_by_topic: HashSet<bool> = keyed
        .iter()
        .filter(|(i, _)| reads_kafka(*i))
        .map(|(i, _)| is_placed_by_topic(children[*i]))
        .collect();
    gap || placed_by_topic.len() > 1
}

/// `input`, the input of an operator keyed by `keys`, through `topic`: under the input's
/// window assignment when the keys are its input's columns. Refused (the message) when the
/// rows under the topic would not come in the same order when read again.
fn through_topic(
    input: &Arc<dyn ExecutionPlan>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    topic: &Arc<RepartitionTopic>,
) -> datafusion::common::Result<std::result::Result<Arc<dyn ExecutionPlan>, String>> {
    let (below, keys, assign) = match input.downcast_ref::<WindowAssignExec>() {
        Some(assign) => match assign.input_keys(&keys) {
            Some(input_keys) => (Arc::clone(assign.children()[0]), input_keys, true),
            None => (Arc::clone(input), keys, false),
        },
        None => (Arc::clone(input), keys, false),
    };
    if let Some(message) = replay_order_gap(&below) {
        return Ok(Err(format!(
            "this query needs a repartition topic (its key is not what its topic is keyed by), \
             and {message}: a task restored from a checkpoint would not send its rows in the \
             same order again. Key the operator by the topic's key, or run the pipeline \
             without --group"
        )));
    }
    let below = match partitions_of(&below) {
        1 => below,
        _ => Arc::new(ExchangeExec::gather(below)),
    };
    let topic: Arc<dyn ExecutionPlan> =
        Arc::new(RepartitionTopicExec::new(below, keys, Arc::clone(topic)));
    Ok(Ok(match assign {
        true => replace_children_if_necessary(Arc::clone(input), vec![topic])?,
        false => topic,
    }))
}

/// Why the rows of `plan` may come in another order when its sources are read again from
/// the same offsets, if they may: it merges streams (a union or join, a table over several
/// topics).
fn replay_order_gap(plan: &Arc<dyn ExecutionPlan>) -> Option<String> {
    let mut gap = None;
    let _ = plan.apply(|node| {
        let streams = node
            .children()
            .iter()
            .filter(|child| child.boundedness().is_unbounded())
            .count();
        let merged = partitions_of(node) > 1 || streams > 1;
        let topics = kafka_scan(node).map_or(1, |(_, kafka)| kafka.options().topics.len());
        gap = match (merged, topics) {
            (true, _) => Some(format!("its input merges streams ({})", node.name())),
            (false, 1) => None,
            (false, _) => Some("its input is a table over several topics".to_string()),
        };
        Ok(match gap {
            Some(_) => TreeNodeRecursion::Stop,
            None => TreeNodeRecursion::Continue,
        })
    });
    gap
}

/// True when `plan`'s rows were last placed by a repartition topic, not by the producers
/// of a Kafka topic.
fn is_placed_by_topic(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        found = node.is::<RepartitionTopicExec>();
        Ok(match found || node.is::<SourceExec>() {
            true => TreeNodeRecursion::Stop,
            false => TreeNodeRecursion::Continue,
        })
    });
    // The walk stops at the first topic or table, so `found` is what stopped it.
    found
}

/// The options of the first Kafka table read under `plan`: the cluster its rows come from.
fn kafka_under(plan: &Arc<dyn ExecutionPlan>) -> Option<KafkaOptions> {
    let first = kafka_tables(plan).into_iter().next()?;
    Some(first.options().clone())
}

/// What a job is called in its repartition topics' names: the view or table it writes, or
/// its line.
fn job_name(job: &Job) -> String {
    match &job.kind {
        JobKind::View(name) | JobKind::Refresh(name) => name.clone(),
        JobKind::Insert => {
            let mut table = None;
            let _ = job.plan.apply(|node| {
                table = node
                    .downcast_ref::<DataSinkExec>()
                    .and_then(|sink| sink.sink().downcast_ref::<CountingSink>())
                    .map(|counted| counted.table().to_string());
                Ok(match table {
                    Some(_) => TreeNodeRecursion::Stop,
                    None => TreeNodeRecursion::Continue,
                })
            });
            table.unwrap_or_else(|| format!("line{}", job.line))
        }
        JobKind::Query => format!("line{}", job.line),
    }
}
