//! [`AlignedInputs`]: several message streams read as one, with checkpoint barriers
//! aligned: once an input has delivered a barrier it is not read again until every other
//! input still running has delivered it too; then the barrier is handed on once. So an
//! operator of several inputs (a join, a merge, an exchange's receiver) snapshots its state
//! with every row from before the barrier on each input in it, and none from after.

use std::pin::Pin;
use std::task::{Context, Poll};

use datafusion::common::Result;
use futures::{Stream, StreamExt};

use super::{MessageStream, StreamMessage};

/// A message of one of the inputs, or a barrier every input has delivered.
#[derive(Debug)]
pub enum Aligned {
    /// A batch or a watermark of input `.0`.
    Input(usize, StreamMessage),
    /// Every running input has delivered this barrier.
    Barrier(u64),
}

/// Reads `inputs` in turn, aligning their barriers.
pub struct AlignedInputs {
    inputs: Vec<Option<MessageStream>>,
    /// Inputs that delivered the barrier being aligned, and are not read until it is.
    blocked: Vec<bool>,
    /// The barrier being aligned.
    aligning: Option<u64>,
    /// The last barrier handed on: older ones (of an abandoned checkpoint) are dropped.
    last: u64,
    next: usize,
}

impl AlignedInputs {
    /// Aligned reading of `inputs`.
    pub fn new(inputs: Vec<MessageStream>) -> Self {
        let count = inputs.len();
        Self {
            inputs: inputs.into_iter().map(Some).collect(),
            blocked: vec![false; count],
            aligning: None,
            last: 0,
            next: 0,
        }
    }

    /// Takes in barrier `epoch` of `input`.
    fn on_barrier(&mut self, input: usize, epoch: u64) {
        if epoch <= self.last {
            return;
        }
        match self.aligning {
            // A newer checkpoint supersedes one some inputs never got a barrier for.
            Some(aligning) if epoch > aligning => {
                self.blocked.iter_mut().for_each(|b| *b = false);
                self.aligning = Some(epoch);
            }
            Some(aligning) if epoch < aligning => return,
            Some(_) => {}
            None => self.aligning = Some(epoch),
        }
        self.blocked[input] = true;
    }

    /// The aligned barrier, once every running input has delivered it.
    fn take_aligned(&mut self) -> Option<u64> {
        let epoch = self.aligning?;
        let all = self
            .inputs
            .iter()
            .zip(&self.blocked)
            .all(|(input, blocked)| input.is_none() || *blocked);
        if !all {
            return None;
        }
        self.aligning = None;
        self.last = epoch;
        self.blocked.iter_mut().for_each(|b| *b = false);
        Some(epoch)
    }
}

impl Stream for AlignedInputs {
    type Item = Result<Aligned>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let count = this.inputs.len();
        let mut step = 0;
        while step < count {
            if let Some(epoch) = this.take_aligned() {
                return Poll::Ready(Some(Ok(Aligned::Barrier(epoch))));
            }
            let index = (this.next + step) % count;
            step += 1;
            if this.blocked[index] {
                continue;
            }
            let Some(input) = this.inputs[index].as_mut() else {
                continue;
            };
            match input.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(StreamMessage::Barrier(epoch)))) => {
                    this.on_barrier(index, epoch);
                    // Look at every input again: this one may have completed the alignment.
                    step = 0;
                }
                Poll::Ready(Some(Ok(message))) => {
                    this.next = index + 1;
                    return Poll::Ready(Some(Ok(Aligned::Input(index, message))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    this.inputs[index] = None;
                    step = 0;
                }
                Poll::Pending => {}
            }
        }
        if let Some(epoch) = this.take_aligned() {
            return Poll::Ready(Some(Ok(Aligned::Barrier(epoch))));
        }
        if this.inputs.iter().all(Option::is_none) {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Watermark;

    fn input(messages: Vec<StreamMessage>) -> MessageStream {
        Box::pin(futures::stream::iter(messages.into_iter().map(Ok)))
    }

    fn describe(item: Result<Aligned>) -> String {
        match item.unwrap() {
            Aligned::Input(i, StreamMessage::Watermark(w)) => format!("{i}:w{}", w.0),
            Aligned::Input(i, _) => format!("{i}:?"),
            Aligned::Barrier(e) => format!("b{e}"),
        }
    }

    #[tokio::test]
    async fn a_barrier_waits_for_every_input_and_holds_back_what_follows_it() {
        let w = |t| StreamMessage::Watermark(Watermark(t));
        let aligned = AlignedInputs::new(vec![
            input(vec![w(1), StreamMessage::Barrier(1), w(2)]),
            input(vec![w(10), w(11), w(12), StreamMessage::Barrier(1), w(13)]),
        ]);
        let seen: Vec<String> = aligned.map(describe).collect().await;
        let barrier = seen.iter().position(|s| s == "b1").unwrap();
        assert_eq!(seen.iter().filter(|s| s.starts_with('b')).count(), 1);
        for before in ["0:w1", "1:w10", "1:w11", "1:w12"] {
            assert!(
                seen.iter().position(|s| s == before).unwrap() < barrier,
                "{seen:?}"
            );
        }
        for after in ["0:w2", "1:w13"] {
            assert!(
                seen.iter().position(|s| s == after).unwrap() > barrier,
                "{seen:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_ended_input_does_not_hold_a_barrier_and_a_newer_one_supersedes() {
        let w = |t| StreamMessage::Watermark(Watermark(t));
        let aligned = AlignedInputs::new(vec![
            input(vec![
                StreamMessage::Barrier(1),
                StreamMessage::Barrier(2),
                w(1),
            ]),
            input(vec![StreamMessage::Barrier(2), w(2)]),
            input(vec![]),
        ]);
        let seen: Vec<String> = aligned.map(describe).collect().await;
        assert_eq!(
            seen.iter()
                .filter(|s| s.starts_with('b'))
                .collect::<Vec<_>>(),
            ["b2"]
        );
        assert_eq!(seen.len(), 3, "{seen:?}");
    }
}
