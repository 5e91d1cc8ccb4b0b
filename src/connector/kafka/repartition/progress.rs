//! [`ReaderProgress`]: how far a task has read its partition of a repartition topic, and
//! what it makes of each frame. Rows a writer sends again after it was restored (numbered
//! as the first time, since a restored writer replays its source from the same offsets)
//! are dropped; rows missing between what was taken and a frame (the topic lost messages)
//! are an error, not a silent gap; the writers' watermarks merge as the inputs of a union
//! of streams do (the least over the writers that are not idle; the greatest once all are
//! idle). [`RepartitionProgress`] is that, with what the task's own writer has
//! sent each partition: the state one checkpoint keeps.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, Int64Array, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Result, exec_err};

use super::frame::Frame;
use crate::stream::{MergedWatermark, StateSnapshot, StreamMessage, Watermark};

/// What a task's reader has taken from each writer.
#[derive(Debug, Clone, PartialEq)]
pub struct ReaderProgress {
    /// Per writer: the number of its rows taken (the next sequence number expected).
    taken: Vec<u64>,
    /// The writers' watermarks, merged as a union of streams merges its inputs'.
    marks: MergedWatermark,
    /// True once `Idle` has been handed on for every writer being idle.
    idle_handed_on: bool,
    /// The offset after the last frame read.
    pub position: Option<i64>,
}

impl ReaderProgress {
    /// Nothing read yet from any of `writers` writers.
    pub fn new(writers: usize) -> Self {
        Self {
            taken: vec![0; writers],
            marks: MergedWatermark::new(writers),
            idle_handed_on: false,
            position: None,
        }
    }

    /// Takes a frame from `writer` read at `offset`, handing on what it makes to `out`.
    pub fn take(
        &mut self,
        writer: u32,
        frame: Frame,
        offset: i64,
        out: &mut impl Extend<StreamMessage>,
    ) -> Result<()> {
        let writers = self.taken.len();
        let w = writer as usize;
        if w >= writers {
            return exec_err!(
                "a repartition frame from writer {writer}, but the group has {writers} tasks: \
                 the source topics' partitions changed under the group's repartition topic"
            );
        }
        self.position = Some(offset + 1);
        let sent = match &frame {
            Frame::Rows { first_seq, .. } => *first_seq,
            Frame::Watermark { sent, .. } | Frame::Idle { sent } => *sent,
        };
        if sent > self.taken[w] {
            return exec_err!(
                "rows {}..{sent} of task {writer} are missing before offset {offset}: the \
                 topic lost messages (its retention deleted them, or the broker lost \
                 acknowledged writes)",
                self.taken[w]
            );
        }
        match frame {
            Frame::Rows { first_seq, batches } => {
                self.marks.active(w);
                self.idle_handed_on = false;
                let mut seq = first_seq;
                for batch in batches {
                    let rows = batch.num_rows() as u64;
                    // Rows already taken, sent again by a restored writer (or its old run).
                    let seen = self.taken[w].saturating_sub(seq).min(rows);
                    if seen < rows {
                        let fresh = batch.slice(seen as usize, (rows - seen) as usize);
                        out.extend([StreamMessage::Batch(fresh)]);
                        self.taken[w] = seq + rows;
                    }
                    seq += rows;
                }
            }
            Frame::Watermark { watermark, .. } => {
                self.idle_handed_on = false;
                let merged = self.marks.advance(w, watermark);
                out.extend(merged.map(StreamMessage::Watermark));
            }
            Frame::Idle { .. } => {
                let merged = self.marks.idle(w);
                out.extend(merged.map(StreamMessage::Watermark));
                if self.marks.all_idle() && !self.idle_handed_on {
                    self.idle_handed_on = true;
                    out.extend([StreamMessage::Idle]);
                }
            }
        }
        Ok(())
    }
}

/// What a task's repartition keeps in a checkpoint: rows its writer has sent each
/// partition, and how far its reader has read.
#[derive(Debug, Clone, PartialEq)]
pub struct RepartitionProgress {
    /// Per partition: the number of rows the task's writer has sent it.
    pub sent: Vec<u64>,
    /// How far the task's reader has read and taken.
    pub reader: ReaderProgress,
}

impl RepartitionProgress {
    /// Nothing sent or read in a group of `tasks` tasks.
    pub fn new(tasks: usize) -> Self {
        Self {
            sent: vec![0; tasks],
            reader: ReaderProgress::new(tasks),
        }
    }

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("sent", DataType::UInt64, false),
            Field::new("taken", DataType::UInt64, false),
            Field::new("mark", DataType::Int64, false),
            Field::new("idle", DataType::Boolean, false),
        ]))
    }

    /// The checkpointed form: a row per task.
    pub fn snapshot(&self) -> Result<StateSnapshot> {
        let reader = &self.reader;
        let (marks, idle, handed_on) = reader.marks.parts();
        let batch = RecordBatch::try_new(
            Self::schema(),
            vec![
                Arc::new(UInt64Array::from(self.sent.clone())),
                Arc::new(UInt64Array::from(reader.taken.clone())),
                Arc::new(Int64Array::from_iter_values(marks.iter().map(|m| m.0))),
                Arc::new(BooleanArray::from(idle.to_vec())),
            ],
        )?;
        StateSnapshot::new(
            Self::schema(),
            vec![batch],
            &[
                ("position", reader.position.unwrap_or(-1)),
                ("handed_on", handed_on.0),
                ("idle_handed_on", reader.idle_handed_on as i64),
            ],
        )
    }

    /// The progress `snapshot` kept, for a group of `tasks` tasks.
    pub fn restore(snapshot: &StateSnapshot, tasks: usize) -> Result<Self> {
        let rows = snapshot.num_rows();
        if rows != tasks {
            return exec_err!(
                "the checkpoint's repartition state is of {rows} tasks, the group has {tasks}: \
                 the source topics' partitions changed; start the group anew (a new \
                 --checkpoint-dir)"
            );
        }
        let mut progress = Self::new(tasks);
        let mut marks_of = vec![Watermark::MIN; tasks];
        let mut idle_of = vec![false; tasks];
        let mut at = 0;
        for batch in &snapshot.batches {
            let column = |i: usize| batch.column(i);
            let (Some(sent), Some(taken), Some(marks), Some(idle)) = (
                column(0).as_any().downcast_ref::<UInt64Array>(),
                column(1).as_any().downcast_ref::<UInt64Array>(),
                column(2).as_any().downcast_ref::<Int64Array>(),
                column(3).as_any().downcast_ref::<BooleanArray>(),
            ) else {
                return exec_err!("the checkpoint's repartition state has other columns");
            };
            for row in 0..batch.num_rows() {
                progress.sent[at] = sent.value(row);
                progress.reader.taken[at] = taken.value(row);
                marks_of[at] = Watermark(marks.value(row));
                idle_of[at] = idle.value(row);
                at += 1;
            }
        }
        let position = snapshot.scalar("position")?;
        progress.reader.position = (position >= 0).then_some(position);
        let handed_on = Watermark(snapshot.scalar("handed_on")?);
        progress.reader.marks = MergedWatermark::from_parts(marks_of, idle_of, handed_on);
        progress.reader.idle_handed_on = snapshot.scalar("idle_handed_on")? != 0;
        Ok(progress)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int32Array;

    use super::*;

    /// A frame of one batch per slice of `values`.
    fn rows(first_seq: u64, values: &[&[i32]]) -> Frame {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int32, false)]));
        let batches = values
            .iter()
            .map(|v| {
                let column = Arc::new(Int32Array::from(v.to_vec()));
                RecordBatch::try_new(Arc::clone(&schema), vec![column]).unwrap()
            })
            .collect();
        Frame::Rows { first_seq, batches }
    }

    /// The batches `frame` makes, as values.
    fn take(reader: &mut ReaderProgress, writer: u32, frame: Frame, at: i64) -> Vec<Vec<i32>> {
        let mut out = Vec::new();
        reader.take(writer, frame, at, &mut out).unwrap();
        out.into_iter()
            .map(|message| match message {
                StreamMessage::Batch(batch) => batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .unwrap()
                    .values()
                    .to_vec(),
                other => panic!("expected rows, got {other:?}"),
            })
            .collect()
    }

    /// The one message `frame` makes, if any.
    fn progress(
        reader: &mut ReaderProgress,
        writer: u32,
        frame: Frame,
        at: i64,
    ) -> Option<StreamMessage> {
        let mut out = Vec::new();
        reader.take(writer, frame, at, &mut out).unwrap();
        assert!(out.len() <= 1, "{out:?}");
        out.pop()
    }

    #[test]
    fn rows_a_restored_writer_sends_again_are_taken_once_in_their_batches() {
        let mut reader = ReaderProgress::new(2);
        assert_eq!(
            take(&mut reader, 0, rows(0, &[&[1, 2], &[3]]), 10),
            [vec![1, 2], vec![3]]
        );
        assert_eq!(take(&mut reader, 1, rows(0, &[&[7]]), 11), [vec![7]]);
        // Writer 0 restored from a checkpoint after its first row sends rows 1.. again.
        assert_eq!(
            take(&mut reader, 0, rows(1, &[&[2], &[3, 4]]), 12),
            [vec![4]]
        );
        assert!(take(&mut reader, 0, rows(1, &[&[2]]), 13).is_empty());
        assert_eq!(take(&mut reader, 0, rows(4, &[&[5]]), 14), [vec![5]]);
        assert_eq!(reader.position, Some(15));
    }

    #[test]
    fn rows_missing_from_the_topic_are_an_error() {
        let mut reader = ReaderProgress::new(2);
        take(&mut reader, 1, rows(0, &[&[1, 2]]), 0);
        let mut out: Vec<StreamMessage> = Vec::new();
        let error = reader.take(1, rows(5, &[&[6]]), 1, &mut out).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("rows 2..5 of task 1 are missing"),
            "{error}"
        );
        // A watermark says how many rows came before it: the last rows lost are seen too.
        let mark = Frame::Watermark {
            watermark: Watermark(9),
            sent: 3,
        };
        let error = reader.take(1, mark, 2, &mut out).unwrap_err();
        assert!(error.to_string().contains("rows 2..3 of task 1"), "{error}");
    }

    #[test]
    fn the_watermark_is_the_least_over_writers_not_idle_and_never_goes_back() {
        let mut reader = ReaderProgress::new(2);
        let mark = |w| Frame::Watermark {
            watermark: Watermark(w),
            sent: 0,
        };
        let idle = || Frame::Idle { sent: 0 };
        assert!(
            progress(&mut reader, 0, mark(10), 0).is_none(),
            "writer 1 unheard"
        );
        assert!(matches!(
            progress(&mut reader, 1, mark(5), 1),
            Some(StreamMessage::Watermark(Watermark(5)))
        ));
        assert!(matches!(
            progress(&mut reader, 1, idle(), 2),
            Some(StreamMessage::Watermark(Watermark(10)))
        ));
        assert!(matches!(
            progress(&mut reader, 0, idle(), 3),
            Some(StreamMessage::Idle)
        ));
        assert!(progress(&mut reader, 0, idle(), 4).is_none());
        // Writer 1 is back, behind what was handed on: nothing goes back.
        assert!(progress(&mut reader, 1, mark(7), 5).is_none());
        assert!(matches!(
            progress(&mut reader, 1, mark(12), 6),
            Some(StreamMessage::Watermark(Watermark(12)))
        ));
    }

    #[test]
    fn progress_survives_its_checkpoint() {
        let mut kept = RepartitionProgress::new(3);
        kept.sent = vec![4, 0, 9];
        take(&mut kept.reader, 2, rows(0, &[&[1, 2]]), 40);
        let mark = Frame::Watermark {
            watermark: Watermark(8),
            sent: 0,
        };
        assert!(progress(&mut kept.reader, 1, mark, 41).is_none());
        let snapshot = StateSnapshot::decode(&kept.snapshot().unwrap().encode().unwrap());
        let restored = RepartitionProgress::restore(&snapshot.unwrap(), 3).unwrap();
        assert_eq!(restored, kept);
        assert!(RepartitionProgress::restore(&kept.snapshot().unwrap(), 4).is_err());
    }
}
