//! Where a group's plans go through repartition topics: under every keyed operator (a
//! window, view, join or Top-N) whose input is not partitioned by its key, that is, whose
//! Kafka topics are not keyed by some of its key columns. Each task then sends that
//! input's rows through `GROUP-JOB-repartition` to the task of their key (see
//! [`RepartitionTopicExec`]). Every input of a join goes through a topic of its own when
//! any must: the producers' partitioner and the repartition hash place keys differently.
//!
//! Placement depends only on the plan, so every task of every process places the same
//! topics under the same names.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::{Distribution, ExecutionPlan};

use super::shared_plan::{key_names, partitioning_gap};
use crate::connector::kafka::{KafkaOptions, KafkaSource, RepartitionTopic, RepartitionTopicExec};
use crate::connector::{CountingSink, SourceExec};
use crate::error::{Error, Result};
use crate::pipeline::session::streaming_operators;
use crate::pipeline::{Job, JobKind};
use crate::stream::{ExchangeExec, partitions_of};

/// What names and sizes a group's repartition topics.
#[derive(Debug, Clone)]
pub struct Repartitioning {
    pub group: String,
    /// The partitions of the source topics.
    pub partitions: usize,
    /// The group's lineage (kept in its checkpoint directory).
    pub lineage: u64,
}

impl Repartitioning {
    /// Puts a repartition topic under each keyed operator of `job`'s plan that needs one;
    /// returns those topics.
    pub fn place(&self, job: &mut Job) -> Result<Vec<Arc<RepartitionTopic>>> {
        let base = format!("{}-{}-repartition", self.group, job_name(job));
        let mut topics: Vec<Arc<RepartitionTopic>> = Vec::new();
        let placed = Arc::clone(&job.plan).transform_up(|node| {
            if streaming_operators().find(node.as_ref()).is_none() {
                return Ok(Transformed::no(node));
            }
            let requirements = node.input_distribution_requirements().into_per_child();
            let children: Vec<Arc<dyn ExecutionPlan>> =
                node.children().into_iter().map(Arc::clone).collect();
            let keyed: Vec<(usize, Vec<Arc<dyn PhysicalExpr>>)> = requirements
                .into_iter()
                .enumerate()
                .filter_map(|(i, requirement)| match requirement {
                    Distribution::KeyPartitioned(keys) => Some((i, keys)),
                    _ => None,
                })
                .collect();
            let needed = keyed.iter().any(|(i, keys)| {
                let child = &children[*i];
                kafka_under(child).is_some()
                    && partitioning_gap(child, &key_names(child, keys)).is_some()
            });
            if !needed {
                return Ok(Transformed::no(node));
            }
            let mut placed = children.clone();
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
                topics.push(Arc::clone(&topic));
                let input = match partitions_of(&children[i]) {
                    1 => Arc::clone(&children[i]),
                    _ => Arc::new(ExchangeExec::gather(Arc::clone(&children[i]))),
                };
                placed[i] = Arc::new(RepartitionTopicExec::new(input, keys, topic));
            }
            Ok(Transformed::yes(replace_children_if_necessary(
                node, placed,
            )?))
        });
        let placed = placed.map_err(|source| Error::Statement {
            line: job.line,
            source,
        })?;
        job.plan = placed.data;
        Ok(topics)
    }
}

/// The options of the first Kafka table read under `plan`: the cluster its rows come from.
fn kafka_under(plan: &Arc<dyn ExecutionPlan>) -> Option<KafkaOptions> {
    let mut found = None;
    let _ = plan.apply(|node| {
        if let Some(kafka) = node
            .downcast_ref::<SourceExec>()
            .and_then(|scan| scan.source().downcast_ref::<KafkaSource>())
        {
            found = Some(kafka.options().clone());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
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
