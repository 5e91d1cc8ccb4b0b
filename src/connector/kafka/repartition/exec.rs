//! [`RepartitionTopicExec`]: a keyed operator's input sent through the group's
//! repartition topic. Executed in task N, it runs its input into a [`RepartitionWriter`]
//! and reads partition N of the topic back: rows of the keys that hash to N, from every
//! task, with the least watermark over the tasks. A checkpoint barrier passes once the
//! writer's rows before it are in the topic; the operator's state (rows sent, frames read
//! and taken) is snapshotted where the barrier leaves it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::common::tree_node::{TreeNodeIterator, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, exec_err, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use tokio::sync::mpsc;

use super::RepartitionTopic;
use super::progress::RepartitionProgress;
use super::reader::{ReadFrame, read_frames};
use super::writer::{Control, RepartitionWriter};
use crate::connector::kafka::config::producer_config;
use crate::connector::kafka::delivery::{Deliveries, TrackedProducer};
use crate::error::Error;
use crate::stream::{
    GroupTask, JobProgress, MessageStream, OperatorCheckpoint, StreamMessage, StreamingExec,
    execute_messages, execute_rows, lock, node_id, panic_reason,
};

/// Control messages and groups of frames in flight between the halves.
const CHANNEL_CAPACITY: usize = 16;

/// A keyed operator's input, through a repartition topic.
pub struct RepartitionTopicExec {
    input: Arc<dyn ExecutionPlan>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    topic: Arc<RepartitionTopic>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl RepartitionTopicExec {
    /// `input`'s rows, through `topic` by the hash of `keys`.
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        topic: Arc<RepartitionTopic>,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            Partitioning::Hash(keys.clone(), 1),
            EmissionType::Incremental,
            input.boundedness(),
        );
        Self {
            input,
            keys,
            topic,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The topic the rows go through.
    pub fn topic(&self) -> &RepartitionTopic {
        &self.topic
    }

    /// The columns the rows are placed by.
    pub fn keys(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.keys
    }
}

impl fmt::Debug for RepartitionTopicExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepartitionTopicExec")
            .field("topic", &self.topic.name)
            .field("keys", &self.keys)
            .finish()
    }
}

impl DisplayAs for RepartitionTopicExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        write!(
            f,
            "RepartitionTopicExec: topic={}, hash=[{}], partitions={}",
            self.topic.name,
            keys.join(", "),
            self.topic.partitions
        )
    }
}

impl ExecutionPlan for RepartitionTopicExec {
    fn name(&self) -> &str {
        "RepartitionTopicExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.keys.iter().apply_until_stop(f)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(input) = children.pop() else {
            return internal_err!("RepartitionTopicExec takes one input");
        };
        Ok(Arc::new(Self::new(
            input,
            self.keys.clone(),
            Arc::clone(&self.topic),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        execute_rows(self, partition, context)
    }
}

impl StreamingExec for RepartitionTopicExec {
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        let Some(task) = GroupTask::of(&context) else {
            return exec_err!(
                "RepartitionTopicExec runs in a task of a consumer group (profusion run --group)"
            );
        };
        let tasks = self.topic.partitions;
        let mut checkpoint = OperatorCheckpoint::of(JobProgress::of_task(&context), node_id(self));
        let slot = checkpoint.slot("repartition", partition, 1, &[])?;
        let progress = match slot.as_ref().and_then(|s| s.restored.as_ref()) {
            Some(restored) => RepartitionProgress::restore(restored, tasks)?,
            None => RepartitionProgress::new(tasks),
        };
        let start = progress.reader.position;
        let writer = RepartitionWriter::new(
            self.producer()?,
            Arc::clone(&self.topic),
            task.partition as u32,
            self.keys.clone(),
            progress.sent.clone(),
            MetricBuilder::new(&self.metrics).counter("rows_sent", partition),
        );
        let progress = Arc::new(Mutex::new(progress));
        if let Some(slot) = slot {
            let progress = Arc::clone(&progress);
            checkpoint.register(&slot, move || lock(&progress).snapshot());
        }
        let input = execute_messages(&self.input, partition, Arc::clone(&context))?;
        let (control_sender, control) = mpsc::channel(CHANNEL_CAPACITY);
        let writing = tokio::spawn(writer.run(input, control_sender));
        let (frames_sender, frames) = mpsc::channel(CHANNEL_CAPACITY);
        let topic = Arc::clone(&self.topic);
        let task_partition = task.partition;
        let reading = tokio::task::spawn_blocking(move || {
            if let Err(error) = read_frames(&topic, task_partition, start, &frames_sender) {
                let _ = frames_sender.blocking_send(Err(error.into()));
            }
        });
        let receiving = Receiving {
            control,
            frames,
            progress,
            checkpoint,
            pending: VecDeque::new(),
            topic: self.topic.name.clone(),
            partition: task.partition,
            rows_taken: MetricBuilder::new(&self.metrics).output_rows(partition),
            _writing: AbortOnDrop(writing.abort_handle()),
            reading,
        };
        Ok(Box::pin(futures::stream::unfold(
            receiving,
            |mut receiving| async move {
                let message = receiving.next().await?;
                Some((message, receiving))
            },
        )))
    }
}

impl RepartitionTopicExec {
    fn producer(&self) -> Result<Arc<TrackedProducer>> {
        let mut config = producer_config(&self.topic.kafka);
        // Frames are Arrow buffers, padded and repetitive: they shrink several times.
        if config.get("compression.type").is_none() {
            config.set("compression.type", "lz4");
        }
        // A frame the broker lost while later ones got through fails the producer, which
        // fails the task, instead of leaving readers a gap to find.
        config.set("enable.gapless.guarantee", "true");
        let producer = config
            .create_with_context(Deliveries::default())
            .map_err(|source| Error::Kafka {
                context: format!("producer for repartition topic {}", self.topic.name),
                source,
            })?;
        Ok(Arc::new(producer))
    }
}

/// Stops the writer when the output is no longer read.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The reading half: frames from the topic and barriers from the writer, as messages.
struct Receiving {
    control: mpsc::Receiver<Control>,
    frames: mpsc::Receiver<Result<Vec<ReadFrame>>>,
    progress: Arc<Mutex<RepartitionProgress>>,
    checkpoint: OperatorCheckpoint,
    /// Messages made of frames taken, not yet handed on.
    pending: VecDeque<StreamMessage>,
    topic: String,
    /// The partition of the topic read: the task's.
    partition: i32,
    rows_taken: Count,
    _writing: AbortOnDrop,
    /// The reading thread; it ends once `frames` is dropped.
    reading: tokio::task::JoinHandle<()>,
}

impl Receiving {
    /// The next message; `None` once the writer's input has ended (the task stops).
    async fn next(&mut self) -> Option<Result<StreamMessage>> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                if let StreamMessage::Batch(batch) = &message {
                    self.rows_taken.add(batch.num_rows());
                }
                return Some(Ok(message));
            }
            tokio::select! {
                control = self.control.recv() => match control? {
                    Control::Barrier { epoch, sent } => {
                        let position = {
                            let mut progress = lock(&self.progress);
                            progress.sent = sent;
                            progress.reader.position
                        };
                        self.checkpoint.on_barrier(epoch);
                        if let Some(position) = position {
                            let id = format!("repartition:{}/{}", self.topic, self.partition);
                            self.checkpoint.record_position(epoch, id, position);
                        }
                        return Some(Ok(StreamMessage::Barrier(epoch)));
                    }
                    Control::Failed(error) => return Some(Err(error)),
                },
                frames = self.frames.recv() => match frames {
                    Some(Ok(frames)) => {
                        if let Err(error) = self.take(frames) {
                            return Some(Err(error.context(format!("repartition topic {}", self.topic))));
                        }
                    }
                    Some(Err(error)) => return Some(Err(error.context(format!("repartition topic {}", self.topic)))),
                    None => return Some(Err(self.reader_ended().await)),
                },
            }
        }
    }

    /// Why the reading thread ended before the task: it panicked (with what it said).
    async fn reader_ended(&mut self) -> DataFusionError {
        let cause = match (&mut self.reading).await {
            Err(error) if error.is_panic() => {
                format!(
                    ": it panicked: {}",
                    panic_reason(error.into_panic().as_ref())
                )
            }
            _ => String::new(),
        };
        DataFusionError::Execution(format!(
            "the reader of repartition topic {}/{} ended{cause}",
            self.topic, self.partition
        ))
    }

    fn take(&mut self, frames: Vec<ReadFrame>) -> Result<()> {
        let mut progress = lock(&self.progress);
        for ReadFrame {
            writer,
            frame,
            offset,
        } in frames
        {
            progress
                .reader
                .take(writer, frame, offset, &mut self.pending)?;
        }
        Ok(())
    }
}
