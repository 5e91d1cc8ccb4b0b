//! [`JobState`]: the part of one job's progress that checkpoints read and restores fill.
//!
//! Operators that keep state between batches (a view's keys, open windows, a source's
//! watermark and duplicate keys) register a snapshot function under a name that is the
//! same in every run of the same plan (`upsert-0`, `window-1`); on a restore they find their
//! state under that name. Sources register their splits' positions through their ledgers.
//!
//! A snapshot is only consistent between two polls of the job's plan, when the sink holds
//! nothing it has not made durable: every row a split handed on has then had its effect on
//! the operators' state and the sink's output. A checkpoint asks for one with
//! [`JobState::request`]; the job serves it at its next such moment: when its sink settles
//! (see [`JobProgress::settle`]) or, when no rows flow, when its plan waits for input
//! ([`run_checkpointable`](super::run_checkpointable)).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;

use datafusion::common::Result;
use tokio::sync::oneshot;

use super::state_snapshot::{JobSnapshot, StateSnapshot};
use super::{JobProgress, lock};

/// Takes an operator's snapshot; called between two polls of the plan.
type SnapshotFn = Box<dyn Fn() -> Result<StateSnapshot> + Send + Sync>;

/// A name under which an operator's state is checkpointed, and the state a restore found
/// under it.
pub struct StateSlot {
    pub id: String,
    pub restored: Option<StateSnapshot>,
}

/// A job's checkpointed state: registered snapshot functions, what a restore found, and a
/// pending request for a snapshot.
#[derive(Default)]
pub struct JobState {
    registered: Mutex<Vec<(String, SnapshotFn)>>,
    counters: Mutex<HashMap<&'static str, usize>>,
    restored: Mutex<HashMap<String, StateSnapshot>>,
    restored_positions: HashMap<String, i64>,
    request: Mutex<Option<oneshot::Sender<Result<JobSnapshot>>>>,
    waker: Mutex<Option<Waker>>,
    /// Batches handed to the sink, and how many of them were durable at its last settle.
    delivered: AtomicU64,
    durable: AtomicU64,
}

impl fmt::Debug for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobState")
            .field("registered", &lock(&self.registered).len())
            .field("restored", &lock(&self.restored).len())
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

    /// The next name for an operator of `kind` (names are handed out in the order the plan
    /// is executed, the same in every run of it) and its restored state, if any.
    pub fn slot(&self, kind: &'static str) -> StateSlot {
        let mut counters = lock(&self.counters);
        let counter = counters.entry(kind).or_default();
        let id = format!("{kind}-{counter}");
        *counter += 1;
        let restored = lock(&self.restored).remove(&id);
        StateSlot { id, restored }
    }

    /// Registers the snapshot function of the operator named `id`.
    pub fn register(
        &self,
        id: String,
        snapshot: impl Fn() -> Result<StateSnapshot> + Send + Sync + 'static,
    ) {
        lock(&self.registered).push((id, Box::new(snapshot)));
    }

    /// Where a restore resumes the split named `id`, if it was checkpointed.
    pub fn restored_position(&self, id: &str) -> Option<i64> {
        self.restored_positions.get(id).copied()
    }

    /// Asks for a snapshot at the job's next consistent moment.
    pub fn request(&self) -> oneshot::Receiver<Result<JobSnapshot>> {
        let (sender, receiver) = oneshot::channel();
        *lock(&self.request) = Some(sender);
        if let Some(waker) = lock(&self.waker).as_ref() {
            waker.wake_by_ref();
        }
        receiver
    }

    /// Counts a batch handed to the sink.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::AcqRel);
    }

    /// Called when the sink has made everything it received durable.
    pub(crate) fn sink_settled(&self) {
        self.durable
            .store(self.delivered.load(Ordering::Acquire), Ordering::Release);
    }

    /// Remembers who to wake when a snapshot is requested while the job waits.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut slot = lock(&self.waker);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// Serves a pending request, if the sink holds nothing undurable. Call only between
    /// two polls of the job's plan.
    pub(crate) fn serve(&self, progress: &JobProgress) {
        if self.delivered.load(Ordering::Acquire) != self.durable.load(Ordering::Acquire) {
            return;
        }
        let Some(reply) = lock(&self.request).take() else {
            return;
        };
        let snapshot = self.snapshot(progress);
        // A checkpoint that stopped waiting has nothing to do with it.
        let _ = reply.send(snapshot);
    }

    /// Names of restored states no operator of the job has claimed: the checkpoint was
    /// taken of another plan.
    pub fn unclaimed(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.restored).keys().cloned().collect();
        names.sort();
        names
    }

    fn snapshot(&self, progress: &JobProgress) -> Result<JobSnapshot> {
        let states = lock(&self.registered)
            .iter()
            .map(|(id, snapshot)| Ok((id.clone(), snapshot()?)))
            .collect::<Result<Vec<_>>>()?;
        // A split that has handed on nothing since the restore is still where it resumed.
        let mut positions = self.restored_positions.clone();
        positions.extend(progress.positions());
        let mut positions: Vec<(String, i64)> = positions.into_iter().collect();
        positions.sort();
        Ok(JobSnapshot { positions, states })
    }
}
