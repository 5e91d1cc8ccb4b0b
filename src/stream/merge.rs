//! Several message streams merged into one, as a `UNION ALL` of streams or a two-input
//! operator sees them: rows as they come from any input, and a watermark that is the
//! minimum over the inputs' (an input that has ended holds nothing back), and checkpoint
//! barriers aligned over the inputs.

use futures::StreamExt;

use super::{Aligned, AlignedInputs, MessageStream, StreamMessage, Watermark};

/// Tracks the watermark of several inputs; their merged watermark is the minimum.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedWatermark {
    inputs: Vec<Watermark>,
    /// Inputs that said they are idle and have sent nothing since.
    idle: Vec<bool>,
    current: Watermark,
}

impl MergedWatermark {
    /// Before any input's watermark.
    pub fn new(inputs: usize) -> Self {
        Self {
            inputs: vec![Watermark::MIN; inputs],
            idle: vec![false; inputs],
            current: if inputs == 0 {
                Watermark::END
            } else {
                Watermark::MIN
            },
        }
    }

    /// The tracker as [`Self::parts`] left it (restored from a checkpoint).
    pub fn from_parts(inputs: Vec<Watermark>, idle: Vec<bool>, current: Watermark) -> Self {
        Self {
            inputs,
            idle,
            current,
        }
    }

    /// Each input's watermark, whether it is idle, and the merged watermark: what a
    /// checkpoint keeps.
    pub fn parts(&self) -> (&[Watermark], &[bool], Watermark) {
        (&self.inputs, &self.idle, self.current)
    }

    /// Records `watermark` of `input`; returns the merged watermark when it moved.
    pub fn advance(&mut self, input: usize, watermark: Watermark) -> Option<Watermark> {
        self.inputs[input] = self.inputs[input].max(watermark);
        self.idle[input] = false;
        self.merge()
    }

    /// Records that `input` is idle; returns the merged watermark when that moved it.
    pub fn idle(&mut self, input: usize) -> Option<Watermark> {
        self.idle[input] = true;
        self.merge()
    }

    /// Records that `input` sent rows: it holds the others back again.
    pub fn active(&mut self, input: usize) {
        self.idle[input] = false;
    }

    /// True when every input that has not ended is idle.
    pub fn all_idle(&self) -> bool {
        self.inputs
            .iter()
            .zip(&self.idle)
            .all(|(watermark, idle)| *idle || watermark.is_end())
    }

    /// The minimum over the inputs that are not idle (over all of them when all are).
    fn merge(&mut self) -> Option<Watermark> {
        let active = self
            .inputs
            .iter()
            .zip(&self.idle)
            .filter(|(_, idle)| !**idle)
            .map(|(watermark, _)| *watermark)
            .min();
        let merged = match active {
            Some(merged) => merged,
            // Every input idle: none holds the others back.
            None => self.inputs.iter().copied().max().unwrap_or(Watermark::END),
        };
        (merged > self.current).then(|| {
            self.current = merged;
            merged
        })
    }

    /// The merged watermark.
    pub fn current(&self) -> Watermark {
        self.current
    }
}

/// `inputs` merged: every row, the minimum watermark whenever it moves, and each barrier
/// once every input has delivered it.
pub fn merge_messages(inputs: Vec<MessageStream>) -> MessageStream {
    let mut watermark = MergedWatermark::new(inputs.len());
    Box::pin(AlignedInputs::new(inputs).filter_map(move |aligned| {
        let out = match aligned {
            Ok(Aligned::Input(input, StreamMessage::Watermark(w))) => watermark
                .advance(input, w)
                .map(|merged| Ok(StreamMessage::Watermark(merged))),
            // Idle inputs are left out of the minimum; the merge is idle when all are.
            Ok(Aligned::Input(input, StreamMessage::Idle)) => match watermark.idle(input) {
                Some(merged) => Some(Ok(StreamMessage::Watermark(merged))),
                None if watermark.all_idle() => Some(Ok(StreamMessage::Idle)),
                None => None,
            },
            Ok(Aligned::Input(input, message)) => {
                watermark.active(input);
                Some(Ok(message))
            }
            Ok(Aligned::Barrier(epoch)) => Some(Ok(StreamMessage::Barrier(epoch))),
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merged_watermark_is_the_minimum_and_never_moves_back() {
        let mut merged = MergedWatermark::new(2);
        assert_eq!(
            merged.advance(0, Watermark(10)),
            None,
            "input 1 has none yet"
        );
        assert_eq!(merged.advance(1, Watermark(5)), Some(Watermark(5)));
        assert_eq!(merged.advance(1, Watermark(3)), None, "never backwards");
        assert_eq!(merged.advance(1, Watermark::END), Some(Watermark(10)));
        assert_eq!(merged.advance(0, Watermark::END), Some(Watermark::END));
    }
}
