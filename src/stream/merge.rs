//! Several message streams merged into one, as a `UNION ALL` of streams or a two-input
//! operator sees them: rows as they come from any input, and a watermark that is the
//! minimum over the inputs' (an input that has ended holds nothing back), and checkpoint
//! barriers aligned over the inputs.

use futures::StreamExt;

use super::{Aligned, AlignedInputs, MessageStream, StreamMessage, Watermark};

/// Tracks the watermark of several inputs; their merged watermark is the minimum.
#[derive(Debug, Clone)]
pub struct MergedWatermark {
    inputs: Vec<Watermark>,
    current: Watermark,
}

impl MergedWatermark {
    /// Before any input's watermark.
    pub fn new(inputs: usize) -> Self {
        Self {
            inputs: vec![Watermark::MIN; inputs],
            current: if inputs == 0 {
                Watermark::END
            } else {
                Watermark::MIN
            },
        }
    }

    /// Records `watermark` of `input`; returns the merged watermark when it moved.
    pub fn advance(&mut self, input: usize, watermark: Watermark) -> Option<Watermark> {
        self.inputs[input] = self.inputs[input].max(watermark);
        let merged = self.inputs.iter().copied().min().unwrap_or(Watermark::END);
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
            Ok(Aligned::Input(_, message)) => Some(Ok(message)),
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
