//! [`JobState`]: the part of one job's progress that checkpoints read and restores fill.
//!
//! Operators that keep state between batches (a view's keys, open windows, a source's
//! watermark and duplicate keys) register a snapshot function under a name that is the
//! same in every run of the same plan (`upsert-0`, `window-1/3`); on a restore they find
//! their state under that name. Sources register their splits' positions through their
//! ledgers.
//!
//! A checkpoint is taken with barriers, as Flink and Arroyo take theirs: [`JobState::request`]
//! asks every source partition to put a barrier into its stream after the rows it has
//! handed on, recording where its splits are; each operator snapshots its state when the
//! barrier reaches it (an operator of several inputs once it has the barrier from all of
//! them) and passes it on; the checkpoint is complete once the barrier has reached the
//! sink and the sink has made everything before it durable. Rows after a barrier may be
//! anywhere in the job meanwhile: no operator stops for a checkpoint but to align.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use datafusion::common::Result;
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::oneshot;

use super::state_snapshot::{JobSnapshot, StateSnapshot};
use super::{JobProgress, lock};

/// Takes an operator's snapshot; called when a barrier passes the operator.
type SnapshotFn = Box<dyn Fn() -> Result<StateSnapshot> + Send + Sync>;

/// A name under which an operator's state is checkpointed, and the state a restore found
/// for it: under that name, or, when the checkpoint was taken on another number of
/// workers, this partition's share of what every partition of the operator had.
pub struct StateSlot {
    pub id: String,
    pub restored: Option<StateSnapshot>,
    /// True when `restored` was dealt out again from another number of partitions.
    pub rescaled: bool,
}

/// The number of each plan node holding state, per kind.
#[derive(Default)]
struct NodeNumbers {
    numbers: HashMap<(&'static str, usize), usize>,
}

impl NodeNumbers {
    /// How many nodes of `kind` have a number.
    fn len_of(&self, kind: &str) -> usize {
        self.numbers.keys().filter(|(k, _)| *k == kind).count()
    }
}

/// The address of a plan node, which names it for [`JobState::slot`] in each partition.
pub fn node_id<T>(node: &T) -> usize {
    node as *const T as *const () as usize
}

/// A checkpoint on its way through the job.
struct PendingCheckpoint {
    epoch: u64,
    reply: oneshot::Sender<Result<JobSnapshot>>,
    states: Vec<(String, StateSnapshot)>,
    positions: Vec<(String, i64)>,
    /// Batches the sink had received when the barrier reached it.
    at_sink: Option<u64>,
}

/// A job's checkpointed state: registered snapshot functions, what a restore found, and
/// the checkpoint in flight.
#[derive(Default)]
pub struct JobState {
    registered: Mutex<HashMap<String, SnapshotFn>>,
    counters: Mutex<NodeNumbers>,
    restored: Mutex<HashMap<String, StateSnapshot>>,
    /// Restored state of operators, every partition merged, by the operator's name
    /// without its partition (`window-0`), for each partition to take its share of.
    merging: Mutex<HashMap<String, StateSnapshot>>,
    restored_positions: HashMap<String, i64>,
    /// Where the splits of source partitions that have ended stopped: they put no barrier
    /// in any more, and every later checkpoint holds these.
    ended_positions: Mutex<Vec<(String, i64)>>,
    pending: Mutex<Option<PendingCheckpoint>>,
    /// The epoch of the latest checkpoint asked for; sources put its barrier in.
    requested: AtomicU64,
    /// Sources waiting for input, woken when a barrier is due.
    sources: Mutex<Vec<Waker>>,
    /// Batches handed to the sink, and how many of them were durable at its last settle.
    delivered: AtomicU64,
    durable: AtomicU64,
}

impl fmt::Debug for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobState")
            .field("registered", &lock(&self.registered).len())
            .field("restored", &lock(&self.restored).len())
            .field("requested", &self.requested.load(Ordering::Relaxed))
            .finish()
    }
}

impl JobState {
    /// The state of a job resumed from `snapshot`.
    pub fn restored_from(snapshot: JobSnapshot) -> Self {
        Self {
            restored: Mutex::new(snapshot.states.into_iter().collect()),
            restored_positions: snapshot.positions.into_iter().collect(),
            ..Self::default()
        }
    }

    /// True when the job resumes from a checkpoint.
    pub fn is_restoring(&self) -> bool {
        !self.restored_positions.is_empty() || !lock(&self.restored).is_empty()
    }

    /// The name of the state of `kind` of the plan node `node` (its address: the same for
    /// each of its partitions) in `partition` of `partitions`, and the state a restore found
    /// for it. Nodes are numbered per kind in the order the plan is first executed, the same
    /// in every run of it: `window-0` for an operator of one partition, `window-0/2-of-4`
    /// for partition 2 of 4.
    ///
    /// Keyed state (`keys`, expressions over the snapshot's rows, not empty) is always
    /// dealt out again: every checkpointed partition of the operator merged, and the rows
    /// whose keys hash to this partition kept, as the exchange in front of it places rows,
    /// whatever number of partitions it was checkpointed on. Other state is taken as it
    /// was when the number of partitions is the same, and otherwise merged (its rows to
    /// partition 0, `rescaled` set).
    pub fn slot(
        &self,
        kind: &'static str,
        node: usize,
        partition: usize,
        partitions: usize,
        keys: &[Arc<dyn PhysicalExpr>],
    ) -> Result<StateSlot> {
        let operator = {
            let mut counters = lock(&self.counters);
            let next = counters.len_of(kind);
            let number = *counters.numbers.entry((kind, node)).or_insert(next);
            format!("{kind}-{number}")
        };
        let id = match partitions {
            1 => operator.clone(),
            _ => format!("{operator}/{partition}-of-{partitions}"),
        };
        if keys.is_empty() {
            let restored = lock(&self.restored).remove(&id);
            if restored.is_some() {
                return Ok(StateSlot {
                    id,
                    restored,
                    rescaled: false,
                });
            }
        }
        let Some(mut merged) = self.merged(&operator)? else {
            return Ok(StateSlot {
                id,
                restored: None,
                rescaled: false,
            });
        };
        merged.retain_partition(keys, partition, partitions)?;
        Ok(StateSlot {
            id,
            restored: Some(merged),
            rescaled: true,
        })
    }

    /// Every checkpointed partition's state of `operator`, merged; taken out of the
    /// restored states once, for every partition to deal out its share.
    fn merged(&self, operator: &str) -> Result<Option<StateSnapshot>> {
        let mut merging = lock(&self.merging);
        if let Some(merged) = merging.get(operator) {
            return Ok(Some(merged.clone()));
        }
        let mut restored = lock(&self.restored);
        let prefix = format!("{operator}/");
        let mut ids: Vec<String> = restored
            .keys()
            .filter(|id| *id == operator || id.starts_with(&prefix))
            .cloned()
            .collect();
        if ids.is_empty() {
            return Ok(None);
        }
        ids.sort();
        let parts: Vec<StateSnapshot> = ids.iter().filter_map(|id| restored.remove(id)).collect();
        let merged = StateSnapshot::concat(parts)?;
        merging.insert(operator.to_string(), merged.clone());
        Ok(Some(merged))
    }

    /// Registers the snapshot function of the operator state named `id`.
    pub fn register(
        &self,
        id: String,
        snapshot: impl Fn() -> Result<StateSnapshot> + Send + Sync + 'static,
    ) {
        lock(&self.registered).insert(id, Box::new(snapshot));
    }

    /// Where a restore resumes the split named `id`, if it was checkpointed.
    pub fn restored_position(&self, id: &str) -> Option<i64> {
        self.restored_positions.get(id).copied()
    }

    /// Starts a checkpoint: every source partition puts barrier `epoch` into its stream.
    /// The receiver gets the job's snapshot once the barrier has passed every operator and
    /// the sink has made all before it durable. A checkpoint still in flight is abandoned.
    pub fn request(&self, epoch: u64) -> oneshot::Receiver<Result<JobSnapshot>> {
        let (reply, receiver) = oneshot::channel();
        *lock(&self.pending) = Some(PendingCheckpoint {
            epoch,
            reply,
            states: Vec::new(),
            positions: Vec::new(),
            at_sink: None,
        });
        self.requested.store(epoch, Ordering::Release);
        for waker in lock(&self.sources).drain(..) {
            waker.wake();
        }
        receiver
    }

    /// For a source partition that has put in every barrier up to `seen`: the epoch of the
    /// barrier it is to put in now, if one is due; if none is, `waker` is woken when one is.
    pub fn barrier_due(&self, seen: u64, waker: &Waker) -> Option<u64> {
        let requested = self.requested.load(Ordering::Acquire);
        if requested > seen {
            return Some(requested);
        }
        let mut sources = lock(&self.sources);
        if !sources.iter().any(|w| w.will_wake(waker)) {
            sources.push(waker.clone());
        }
        // A request between the load and the push has woken nobody: look again.
        let requested = self.requested.load(Ordering::Acquire);
        (requested > seen).then_some(requested)
    }

    /// Takes the snapshots of the states named `ids` into checkpoint `epoch`: called by
    /// an operator when barrier `epoch` passes it. A failed snapshot fails the checkpoint,
    /// not the job.
    pub fn snapshot(&self, epoch: u64, ids: &[String]) {
        let taken: Result<Vec<(String, StateSnapshot)>> = {
            let registered = lock(&self.registered);
            ids.iter()
                .filter_map(|id| registered.get(id).map(|f| (id, f)))
                .map(|(id, f)| Ok((id.clone(), f()?)))
                .collect()
        };
        self.with_pending(epoch, |pending| {
            pending.states.extend(taken?);
            Ok(())
        });
    }

    /// Records where a source partition's splits had handed on up to when it put barrier
    /// `epoch` in.
    pub fn record_positions(&self, epoch: u64, positions: Vec<(String, i64)>) {
        self.with_pending(epoch, |pending| {
            pending.positions.extend(positions);
            Ok(())
        });
    }

    /// Records where a source partition's splits stopped when it ended.
    pub fn record_ended_positions(&self, positions: Vec<(String, i64)>) {
        lock(&self.ended_positions).extend(positions);
    }

    /// Called when barrier `epoch` reaches the sink: the checkpoint is complete once what
    /// the sink received before it is durable.
    pub fn barrier_at_sink(&self, epoch: u64) {
        let delivered = self.delivered.load(Ordering::Acquire);
        self.with_pending(epoch, |pending| {
            pending.at_sink = Some(delivered);
            Ok(())
        });
        self.complete();
    }

    /// Counts a batch handed to the sink.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::AcqRel);
    }

    /// Called when the sink has made everything it received durable.
    pub(crate) fn sink_settled(&self) {
        self.durable
            .store(self.delivered.load(Ordering::Acquire), Ordering::Release);
        self.complete();
    }

    /// Names of restored states no operator of the job has claimed: the checkpoint was
    /// taken of another plan.
    pub fn unclaimed(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.restored).keys().cloned().collect();
        names.sort();
        names
    }

    /// Applies `f` to the checkpoint in flight if it is `epoch`; an error fails it.
    fn with_pending(&self, epoch: u64, f: impl FnOnce(&mut PendingCheckpoint) -> Result<()>) {
        let mut slot = lock(&self.pending);
        let Some(pending) = slot.as_mut().filter(|p| p.epoch == epoch) else {
            return;
        };
        if let Err(e) = f(pending)
            && let Some(pending) = slot.take()
        {
            let _ = pending.reply.send(Err(e));
        }
    }

    /// Hands the checkpoint in flight to whoever asked, once the barrier has reached the
    /// sink and the sink has made all before it durable.
    fn complete(&self) {
        let durable = self.durable.load(Ordering::Acquire);
        let mut slot = lock(&self.pending);
        let ready = slot
            .as_ref()
            .is_some_and(|p| p.at_sink.is_some_and(|at| at <= durable));
        if !ready {
            return;
        }
        let Some(pending) = slot.take() else { return };
        // A split that has handed on nothing since the restore is still where it resumed.
        let mut positions = self.restored_positions.clone();
        positions.extend(lock(&self.ended_positions).iter().cloned());
        positions.extend(pending.positions);
        let mut positions: Vec<(String, i64)> = positions.into_iter().collect();
        positions.sort();
        let mut states = pending.states;
        states.sort_by(|a, b| a.0.cmp(&b.0));
        // A checkpoint that stopped waiting has nothing to do with it.
        let _ = pending.reply.send(Ok(JobSnapshot { positions, states }));
    }
}

/// The states of one running operator partition, snapshotted into a checkpoint when its
/// barrier passes the operator.
#[derive(Default)]
pub struct OperatorCheckpoint {
    job: Option<Arc<JobProgress>>,
    node: usize,
    ids: Vec<String>,
}

impl OperatorCheckpoint {
    /// The states of the operator `node` (see [`node_id`]) of the job `job` belongs to
    /// (none outside a pipeline job).
    pub fn of(job: Option<Arc<JobProgress>>, node: usize) -> Self {
        Self {
            job,
            node,
            ids: Vec::new(),
        }
    }

    /// The next slot for state of `kind` of this operator's `partition` of `partitions`;
    /// `keys` place the snapshot's rows in partitions when the checkpoint was taken on
    /// another number of them (none for rows that are not keyed state).
    pub fn slot(
        &self,
        kind: &'static str,
        partition: usize,
        partitions: usize,
        keys: &[Arc<dyn PhysicalExpr>],
    ) -> Result<Option<StateSlot>> {
        self.job
            .as_ref()
            .map(|job| job.state.slot(kind, self.node, partition, partitions, keys))
            .transpose()
    }

    /// Snapshots the state named by `slot` with `snapshot` at every barrier.
    pub fn register(
        &mut self,
        slot: &StateSlot,
        snapshot: impl Fn() -> Result<StateSnapshot> + Send + Sync + 'static,
    ) {
        if let Some(job) = &self.job {
            job.state.register(slot.id.clone(), snapshot);
            self.ids.push(slot.id.clone());
        }
    }

    /// Takes this operator's snapshots into checkpoint `epoch`.
    pub fn on_barrier(&self, epoch: u64) {
        if let Some(job) = &self.job {
            job.state.snapshot(epoch, &self.ids);
        }
    }

    /// Records, in checkpoint `epoch`, how far the operator has read a log it reads
    /// itself (a repartition topic's partition), named `id`: shown with the sources'
    /// positions, for operators to follow.
    pub fn record_position(&self, epoch: u64, id: String, position: i64) {
        if let Some(job) = &self.job {
            job.state.record_positions(epoch, vec![(id, position)]);
        }
    }
}

impl fmt::Debug for OperatorCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.ids).finish()
    }
}
