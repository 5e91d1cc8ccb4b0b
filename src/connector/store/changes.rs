//! How a materialized view's store changes, watched by the views defined over it.
//!
//! A view over other views reads their stores as bounded tables, so it is brought up to
//! date by running it again. [`ViewChanges`] is what makes that continuous: the view's
//! sink counts every batch it applies (and every delete of a finished refresh), and each
//! job that writes the view holds a [`ViewWriter`] while it runs. [`UpstreamViews`] waits,
//! between two runs of the downstream view, until one of its views has applied something
//! the last run may not have read, and tells when none of them can change any more.
//!
//! The same signal hands the rows themselves to [`RowListener`]s, such as the cache that
//! `profusion serve` answers profile lookups from, so that it never serves a row older
//! than the store's.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Int64Array, RecordBatch};
use futures::future::select_all;
use tokio::sync::watch;

/// Told of every change a view's sink commits to its store.
pub trait RowListener: Debug + Send + Sync {
    /// `rows` (in the store's schema) were offered to the store, each with its version
    /// when the view is versioned; rows not newer than the stored ones were left out by the
    /// store.
    fn upserted(&self, rows: &RecordBatch, versions: Option<&Int64Array>);

    /// Keys were deleted (a finished refresh dropped the keys its query no longer returns).
    fn deleted(&self);
}

/// What a view's store has been through so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeCount {
    /// Batches applied and refresh deletes done, since the process started.
    pub applied: u64,
    /// Jobs writing the view now.
    pub writers: usize,
}

/// The change signal of one view's store.
#[derive(Debug)]
pub struct ViewChanges(watch::Sender<ChangeCount>, Mutex<Vec<Arc<dyn RowListener>>>);

impl Default for ViewChanges {
    fn default() -> Self {
        Self(watch::Sender::new(ChangeCount::default()), Mutex::default())
    }
}

impl ViewChanges {
    /// Records that rows were written to or deleted from the store (after the commit).
    pub fn applied(&self) {
        self.0.send_modify(|count| count.applied += 1);
    }

    /// Records that `rows` were upserted (after the commit), telling the listeners.
    pub fn upserted(&self, rows: &RecordBatch, versions: Option<&Int64Array>) {
        for listener in self.listeners() {
            listener.upserted(rows, versions);
        }
        self.applied();
    }

    /// Records that keys were deleted (after the commit), telling the listeners.
    pub fn deleted(&self) {
        for listener in self.listeners() {
            listener.deleted();
        }
        self.applied();
    }

    /// Tells `listener` of every change from now on.
    pub fn listen(&self, listener: Arc<dyn RowListener>) {
        crate::stream::lock(&self.1).push(listener);
    }

    fn listeners(&self) -> Vec<Arc<dyn RowListener>> {
        crate::stream::lock(&self.1).clone()
    }

    /// Registers a job that writes the view, until the returned guard is dropped.
    pub fn writer(self: &Arc<Self>) -> ViewWriter {
        self.0.send_modify(|count| count.writers += 1);
        ViewWriter(Arc::clone(self))
    }

    /// The count so far, and its changes from now on.
    pub fn watch(&self) -> watch::Receiver<ChangeCount> {
        self.0.subscribe()
    }
}

/// A job writing a view, registered for as long as this guard lives.
#[derive(Debug)]
pub struct ViewWriter(Arc<ViewChanges>);

impl Drop for ViewWriter {
    fn drop(&mut self) {
        self.0
            .0
            .send_modify(|count| count.writers = count.writers.saturating_sub(1));
    }
}

/// The views another view reads, with what its last run had seen of each.
#[derive(Debug)]
pub struct UpstreamViews {
    watched: Vec<Watched>,
}

#[derive(Debug)]
struct Watched {
    name: String,
    // Held so that the sender outlives the receiver.
    _changes: Arc<ViewChanges>,
    receiver: watch::Receiver<ChangeCount>,
    seen: u64,
}

impl UpstreamViews {
    /// Watches the views named with their change signals.
    pub fn new<'a>(views: impl IntoIterator<Item = (&'a str, &'a Arc<ViewChanges>)>) -> Self {
        let watched = views
            .into_iter()
            .map(|(name, changes)| Watched {
                name: name.to_string(),
                receiver: changes.watch(),
                _changes: Arc::clone(changes),
                seen: 0,
            })
            .collect();
        Self { watched }
    }

    /// True when the view reads no other view.
    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }

    /// Marks everything applied so far as read: called just before a run starts, so that
    /// whatever is applied from here on brings another run.
    pub fn mark_seen(&mut self) {
        for watched in &mut self.watched {
            watched.seen = watched.receiver.borrow_and_update().applied;
        }
    }

    /// Waits until some view has applied something since [`Self::mark_seen`] and returns
    /// their names; `None` once none has and none can any more (no job writes them).
    pub async fn changed(&mut self) -> Option<Vec<String>> {
        loop {
            let mut writing = false;
            let mut changed = Vec::new();
            for watched in &mut self.watched {
                let count = *watched.receiver.borrow_and_update();
                if count.applied != watched.seen {
                    changed.push(watched.name.clone());
                }
                writing |= count.writers > 0;
            }
            if !changed.is_empty() {
                return Some(changed);
            }
            if !writing {
                return None;
            }
            // Each sender lives as long as `self` (held above): `changed` cannot fail.
            let waits = self
                .watched
                .iter_mut()
                .map(|w| Box::pin(w.receiver.changed()));
            let _ = select_all(waits).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_change_after_the_last_run_brings_another_and_no_writer_means_done() {
        let profile = Arc::new(ViewChanges::default());
        let mut upstream = UpstreamViews::new([("profile", &profile)]);
        let writer = profile.writer();
        upstream.mark_seen();

        let signal = Arc::clone(&profile);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            signal.applied();
        });
        assert_eq!(upstream.changed().await, Some(vec!["profile".to_string()]));

        upstream.mark_seen();
        profile.applied();
        drop(writer);
        // Applied before the writer ended and not yet read: one more run.
        assert_eq!(upstream.changed().await, Some(vec!["profile".to_string()]));
        upstream.mark_seen();
        assert_eq!(upstream.changed().await, None);
    }

    #[tokio::test]
    async fn a_view_nobody_writes_never_changes() {
        let profile = Arc::new(ViewChanges::default());
        let mut upstream = UpstreamViews::new([("profile", &profile)]);
        upstream.mark_seen();
        assert_eq!(upstream.changed().await, None);
    }
}
