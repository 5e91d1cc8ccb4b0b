//! Splitting a JSON-lines file into byte ranges read in parallel, each by a worker of its
//! own. A range owns the lines that start inside it: its reader starts one byte early and
//! skips through the first newline (the line there belongs to the range before), then
//! reads on past the range's end to the end of the line it is in.

use std::ops::Range;

use bytes::Bytes;
use datafusion::common::Result;
use futures::StreamExt;
use futures::stream::BoxStream;

/// Files smaller than this are read whole: a range costs a request and a partial line.
pub const MIN_RANGE_BYTES: u64 = 1 << 20;

/// `size` bytes cut into at most `pieces` ranges of about equal size, none smaller than
/// [`MIN_RANGE_BYTES`].
pub fn byte_ranges(size: u64, pieces: usize) -> Vec<Range<u64>> {
    let pieces = (pieces as u64).min(size / MIN_RANGE_BYTES).max(1);
    let step = size.div_ceil(pieces);
    (0..pieces)
        .map(|i| (i * step).min(size)..((i + 1) * step).min(size))
        .collect()
}

/// The byte range to fetch for the lines of `range`: from a byte before it (to find where
/// its first line starts) to the end of the file (its last line may end past it).
pub fn fetched(range: &Range<u64>, size: u64) -> Range<u64> {
    range.start.saturating_sub(1)..size
}

/// The lines starting in `range`, out of `bytes`, the bytes of [`fetched`] for it.
pub fn lines_of(
    bytes: BoxStream<'static, Result<Bytes>>,
    range: Range<u64>,
) -> BoxStream<'static, Result<Bytes>> {
    let cut = LineCut {
        // Position of the next byte of the stream in the file.
        position: range.start.saturating_sub(1),
        skipping: range.start > 0,
        first_line: true,
        end: range.end,
        done: range.is_empty(),
    };
    futures::stream::unfold((bytes, cut), |(mut bytes, mut cut)| async move {
        loop {
            if cut.done {
                return None;
            }
            let chunk = match bytes.next().await? {
                Ok(chunk) => chunk,
                Err(e) => return Some((Err(e), (bytes, cut))),
            };
            if let Some(kept) = cut.take(chunk) {
                return Some((Ok(kept), (bytes, cut)));
            }
        }
    })
    .boxed()
}

/// Where a range's lines are, as its bytes stream past.
struct LineCut {
    position: u64,
    skipping: bool,
    /// True until the range's first line has been seen to start before its end.
    first_line: bool,
    end: u64,
    done: bool,
}

impl LineCut {
    /// The part of `chunk` that belongs to the range, if any.
    fn take(&mut self, mut chunk: Bytes) -> Option<Bytes> {
        let start = self.position;
        self.position += chunk.len() as u64;
        let mut offset = start;
        if self.skipping {
            let newline = chunk.iter().position(|&b| b == b'\n')?;
            self.skipping = false;
            let _ = chunk.split_to(newline + 1);
            offset += newline as u64 + 1;
        }
        if chunk.is_empty() {
            return None;
        }
        if self.first_line {
            self.first_line = false;
            // The line after the skipped one starts past the range: none is its own.
            if offset >= self.end {
                self.done = true;
                return None;
            }
        }
        // A line starting at or after `end` belongs to the next range: stop after the
        // newline that ends the line in which `end - 1` lies.
        let last = self.end.saturating_sub(1);
        if offset + chunk.len() as u64 > last {
            let from = last.saturating_sub(offset) as usize;
            if let Some(newline) = chunk[from..].iter().position(|&b| b == b'\n') {
                self.done = true;
                chunk.truncate(from + newline + 1);
            }
        }
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(text: &'static str, range: Range<u64>, chunk: usize) -> String {
        let size = text.len() as u64;
        let fetched = fetched(&range, size);
        let bytes = &text.as_bytes()[fetched.start as usize..fetched.end as usize];
        let chunks: Vec<Result<Bytes>> = bytes
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let lines = lines_of(futures::stream::iter(chunks).boxed(), range);
        let parts: Vec<Bytes> = lines.map(|b| b.unwrap()).collect().await;
        parts.iter().map(|b| String::from_utf8_lossy(b)).collect()
    }

    #[tokio::test]
    async fn every_line_is_read_by_exactly_one_range_wherever_the_cuts_fall() {
        let text = "a1\nbb22\nccc333\nd\neeee4444\n";
        let size = text.len() as u64;
        for chunk in [1, 2, 3, 7, 100] {
            for cut in 0..=size {
                for second in cut..=size {
                    let parts = [
                        read(text, 0..cut, chunk).await,
                        read(text, cut..second, chunk).await,
                        read(text, second..size, chunk).await,
                    ];
                    assert_eq!(parts.concat(), text, "cuts {cut}, {second}, chunks {chunk}");
                }
            }
        }
    }
}
