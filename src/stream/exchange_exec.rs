//! [`ExchangeExec`]: moves a stream's rows between workers. Each input partition runs in a
//! task of its own and sends every batch to the output partitions: split by the hash of
//! its key columns (a hash exchange in front of a keyed operator), or all to one (a gather
//! in front of a sink). Watermarks and checkpoint barriers go to every output partition;
//! each output partition's watermark is the minimum over the input partitions, and a
//! barrier is handed on once every input partition has sent it (see
//! [`merge_messages`](super::merge_messages)), so one checkpoint covers every worker.
//!
//! The hash is fixed (not seeded per process), so a key goes to the same partition in
//! every run and every process of a pipeline.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::common::tree_node::{TreeNodeIterator, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties,
};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;

use super::merge_messages;
use super::{MessageStream, StreamMessage, StreamingExec, execute_messages, execute_rows, lock};

/// Messages in flight from one input partition to one output partition.
const CHANNEL_CAPACITY: usize = 16;

/// The hash that places a key in a partition: the same in every process.
const PARTITION_HASH: RandomState = RandomState::with_seed(0x7072_6f66_7573_696f);

/// What an operator keyed by `keys` needs of its input: every row of a key in one
/// partition (a hash exchange on the keys places them), or every row in one partition
/// when it has no keys.
pub fn key_distribution(keys: Vec<Arc<dyn PhysicalExpr>>) -> Distribution {
    match keys.is_empty() {
        true => Distribution::SinglePartition,
        false => Distribution::KeyPartitioned(keys),
    }
}

/// The partitions `plan` runs in.
pub fn partitions_of(plan: &Arc<dyn ExecutionPlan>) -> usize {
    plan.output_partitioning().partition_count()
}

/// Rows of every input partition, sent to `partitions` output partitions by the hash of
/// `keys` (or all to one output partition, when there are no keys).
pub struct ExchangeExec {
    input: Arc<dyn ExecutionPlan>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// The receivers of a run of the exchange not yet taken by their output partitions.
    receivers: Mutex<Vec<Option<MessageStream>>>,
}

impl ExchangeExec {
    /// Rows of `input` sent to `partitions` partitions by the hash of `keys`.
    pub fn hash(
        input: Arc<dyn ExecutionPlan>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        partitions: usize,
    ) -> Self {
        let partitioning = Partitioning::Hash(keys.clone(), partitions);
        Self::new(input, keys, partitioning)
    }

    /// Rows of every partition of `input` in one partition.
    pub fn gather(input: Arc<dyn ExecutionPlan>) -> Self {
        Self::new(input, Vec::new(), Partitioning::UnknownPartitioning(1))
    }

    fn new(
        input: Arc<dyn ExecutionPlan>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        partitioning: Partitioning,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            partitioning,
            EmissionType::Incremental,
            input.boundedness(),
        );
        Self {
            input,
            keys,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
            receivers: Mutex::new(Vec::new()),
        }
    }

    /// The exchanged plan.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// True when every row goes to one partition.
    pub fn is_gather(&self) -> bool {
        self.keys.is_empty() && self.partitions() == 1
    }

    fn partitions(&self) -> usize {
        self.properties.partitioning.partition_count()
    }

    /// Starts a run: one task per input partition, and a receiver per output partition.
    fn start(&self, context: &Arc<TaskContext>) -> Result<Vec<Option<MessageStream>>> {
        let outputs = self.partitions();
        let inputs = self.input.output_partitioning().partition_count();
        // Executed here, in order, so that state names are the same in every run.
        let streams = (0..inputs)
            .map(|p| execute_messages(&self.input, p, Arc::clone(context)))
            .collect::<Result<Vec<_>>>()?;
        let mut receivers: Vec<Vec<MessageStream>> = (0..outputs).map(|_| Vec::new()).collect();
        let mut tasks = Vec::with_capacity(inputs);
        for (input, stream) in streams.into_iter().enumerate() {
            let mut senders = Vec::with_capacity(outputs);
            for receiver in receivers.iter_mut() {
                let (sender, channel) = mpsc::channel(CHANNEL_CAPACITY);
                senders.push(sender);
                receiver.push(receiver_stream(channel));
            }
            let sender = Sender {
                senders,
                keys: self.keys.clone(),
                hashes: Vec::new(),
                rows_sent: MetricBuilder::new(&self.metrics).output_rows(input),
            };
            tasks.push(tokio::spawn(sender.run(stream)).abort_handle());
        }
        let tasks = Arc::new(AbortOnDrop(tasks));
        Ok(receivers
            .into_iter()
            .map(|channels| {
                let tasks = Arc::clone(&tasks);
                let merged = merge_messages(channels).map(move |message| {
                    let _running = &tasks;
                    message
                });
                Some(Box::pin(merged) as MessageStream)
            })
            .collect())
    }
}

impl fmt::Debug for ExchangeExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeExec")
            .field("input", &self.input)
            .field("keys", &self.keys)
            .field("partitioning", &self.properties.partitioning)
            .finish()
    }
}

/// The stream of messages one input partition sends one output partition.
fn receiver_stream(channel: mpsc::Receiver<Result<StreamMessage>>) -> MessageStream {
    Box::pin(futures::stream::unfold(channel, |mut channel| async move {
        channel.recv().await.map(|message| (message, channel))
    }))
}

/// Stops the tasks of a run once no output partition reads it any more.
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

/// The sending end of one input partition.
struct Sender {
    senders: Vec<mpsc::Sender<Result<StreamMessage>>>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    hashes: Vec<u64>,
    rows_sent: datafusion::physical_plan::metrics::Count,
}

impl Sender {
    /// Sends every message of `input` on; an error or a panic reaches every receiver.
    async fn run(mut self, mut input: MessageStream) {
        let senders = self.senders.clone();
        let sent = AssertUnwindSafe(async {
            while let Some(message) = input.next().await {
                if !self.send(message).await {
                    return;
                }
            }
        })
        .catch_unwind()
        .await;
        if let Err(panic) = sent {
            let reason = panic_reason(panic.as_ref());
            for sender in &senders {
                let error = DataFusionError::Execution(format!(
                    "a worker of the pipeline panicked: {reason}"
                ));
                let _ = sender.send(Err(error)).await;
            }
        }
    }

    /// Sends `message` on; false once no receiver is left.
    async fn send(&mut self, message: Result<StreamMessage>) -> bool {
        match message {
            Ok(StreamMessage::Batch(batch)) => match self.split(&batch) {
                Ok(parts) => {
                    for (sender, part) in self.senders.iter().zip(parts) {
                        if let Some(part) = part {
                            self.rows_sent.add(part.num_rows());
                            if sender.send(Ok(StreamMessage::Batch(part))).await.is_err() {
                                return false;
                            }
                        }
                    }
                    true
                }
                Err(e) => self.broadcast(|| Err(e.to_string())).await,
            },
            Ok(progress) => self.broadcast(|| Ok(progress.clone())).await,
            Err(e) => {
                let message = e.to_string();
                let first = self.senders[0].send(Err(e)).await.is_ok();
                let mut rest = true;
                for sender in &self.senders[1..] {
                    let copy = DataFusionError::Execution(message.clone());
                    rest &= sender.send(Err(copy)).await.is_ok();
                }
                first || rest
            }
        }
    }

    /// Sends what `message` makes to every receiver.
    async fn broadcast(
        &self,
        message: impl Fn() -> std::result::Result<StreamMessage, String>,
    ) -> bool {
        let mut any = false;
        for sender in &self.senders {
            let message = message().map_err(DataFusionError::Execution);
            any |= sender.send(message).await.is_ok();
        }
        any
    }

    /// `batch` split by output partition: the rows whose key hashes to each.
    fn split(&mut self, batch: &RecordBatch) -> Result<Vec<Option<RecordBatch>>> {
        let outputs = self.senders.len();
        if outputs == 1 || self.keys.is_empty() {
            return Ok(vec![Some(batch.clone())]);
        }
        split_by_key(batch, &self.keys, outputs, &mut self.hashes)
    }
}

/// What a panic caught with `catch_unwind` said: its message, when it was a string.
pub fn panic_reason(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// `batch` split into `partitions` parts, each the rows whose `keys` hash to that
/// partition: how an exchange places rows, and how state checkpointed at another number
/// of workers is dealt out again. `hashes` is scratch space.
pub fn split_by_key(
    batch: &RecordBatch,
    keys: &[Arc<dyn PhysicalExpr>],
    partitions: usize,
    hashes: &mut Vec<u64>,
) -> Result<Vec<Option<RecordBatch>>> {
    let keys = keys
        .iter()
        .map(|key| key.evaluate(batch)?.into_array(batch.num_rows()))
        .collect::<Result<Vec<_>>>()?;
    hashes.clear();
    hashes.resize(batch.num_rows(), 0);
    create_hashes(&keys, &PARTITION_HASH, hashes)?;
    let mut indices: Vec<Vec<u32>> = vec![Vec::new(); partitions];
    for (row, hash) in hashes.iter().enumerate() {
        indices[(*hash % partitions as u64) as usize].push(row as u32);
    }
    indices
        .into_iter()
        .map(|rows| match rows.len() {
            0 => Ok(None),
            n if n == batch.num_rows() => Ok(Some(batch.clone())),
            _ => Ok(Some(take_record_batch(batch, &UInt32Array::from(rows))?)),
        })
        .collect()
}

impl DisplayAs for ExchangeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let inputs = self.input.output_partitioning().partition_count();
        if self.keys.is_empty() {
            return write!(f, "ExchangeExec: gather, inputs={inputs}");
        }
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        write!(
            f,
            "ExchangeExec: hash=[{}], inputs={inputs}, outputs={}",
            keys.join(", "),
            self.partitions()
        )
    }
}

impl ExecutionPlan for ExchangeExec {
    fn name(&self) -> &str {
        "ExchangeExec"
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
            return internal_err!("ExchangeExec takes one input");
        };
        Ok(Arc::new(Self::new(
            input,
            self.keys.clone(),
            self.properties.partitioning.clone(),
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

impl StreamingExec for ExchangeExec {
    /// The rows sent to `partition` by every input partition, with their watermarks
    /// merged and barriers aligned. The first output partition executed starts the run;
    /// once every output partition has taken its receiver, the next execution starts anew.
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        let outputs = self.partitions();
        if partition >= outputs {
            return internal_err!("ExchangeExec has {outputs} partitions, asked for {partition}");
        }
        let mut receivers = lock(&self.receivers);
        // A partition already taken starts a new run: what is left of an earlier one (whose
        // other partitions never ran) is dropped, and its tasks with it.
        if receivers.get(partition).is_none_or(Option::is_none) {
            receivers.clear();
            *receivers = self.start(&context)?;
        }
        let Some(receiver) = receivers[partition].take() else {
            return internal_err!("ExchangeExec partition {partition} executed twice in one run");
        };
        Ok(receiver)
    }
}
