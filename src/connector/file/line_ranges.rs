//! Splitting a JSON-lines file into byte ranges read in parallel, each by a worker of its
//! own. A range owns the lines that start inside it: its reader starts one byte early and
//! skips through the first newline (the line there belongs to the range before), then
//! reads on past the range's end to the end of the line it is in.

use std::ops::Range;

use bytes::Bytes;

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

/// Where a range's lines are, as its bytes stream past: fed the bytes of [`fetched`] for
/// the range, block by block, it keeps the lines that start inside the range.
pub struct LineCut {
    position: u64,
    skipping: bool,
    /// True until the range's first line has been seen to start before its end.
    first_line: bool,
    end: u64,
    done: bool,
}

impl LineCut {
    /// The cut of the lines starting in `range`.
    pub fn new(range: Range<u64>) -> Self {
        Self {
            // Position of the next byte fed in the file.
            position: range.start.saturating_sub(1),
            skipping: range.start > 0,
            first_line: true,
            end: range.end,
            done: range.is_empty(),
        }
    }

    /// True once the range's last line has been taken: no later byte is the range's.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The part of `chunk` that belongs to the range, if any.
    pub fn take(&mut self, mut chunk: Bytes) -> Option<Bytes> {
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

    fn read(text: &'static str, range: Range<u64>, chunk: usize) -> String {
        let size = text.len() as u64;
        let fetched = fetched(&range, size);
        let bytes = &text.as_bytes()[fetched.start as usize..fetched.end as usize];
        let mut cut = LineCut::new(range);
        let mut kept = String::new();
        for block in bytes.chunks(chunk) {
            if cut.is_done() {
                break;
            }
            if let Some(part) = cut.take(Bytes::copy_from_slice(block)) {
                kept.push_str(&String::from_utf8_lossy(&part));
            }
        }
        kept
    }

    #[test]
    fn every_line_is_read_by_exactly_one_range_wherever_the_cuts_fall() {
        let text = "a1\nbb22\nccc333\nd\neeee4444\n";
        let size = text.len() as u64;
        for chunk in [1, 2, 3, 7, 100] {
            for cut in 0..=size {
                for second in cut..=size {
                    let parts = [
                        read(text, 0..cut, chunk),
                        read(text, cut..second, chunk),
                        read(text, second..size, chunk),
                    ];
                    assert_eq!(parts.concat(), text, "cuts {cut}, {second}, chunks {chunk}");
                }
            }
        }
    }
}
