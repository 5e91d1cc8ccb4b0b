//! [`Frame`]: one message of a repartition topic. A writer (the task of one source
//! partition) sends rows to the partition their key hashes to, numbered per destination
//! partition so that a reader drops what a restored writer sends again, and its watermark
//! (or that it is idle) to every partition, so that a reader's watermark is the minimum
//! over all writers. Each frame names the group's lineage (see
//! [`RepartitionTopic::lineage`](super::RepartitionTopic)): frames of an earlier run of a
//! group under the same name are skipped.
//!
//! ```text
//! byte 0      version (1)
//! byte 1      kind: 0 rows, 1 watermark, 2 idle
//! bytes 2-9   lineage (u64, big-endian)
//! bytes 10-13 writer (u32)
//! rows:       first sequence number (u64), then the rows as an Arrow IPC stream of one
//!             or more batches (the batches the writer was handed, kept apart)
//! watermark:  rows the writer had sent the partition before it (u64), nanoseconds (i64)
//! idle:       rows the writer had sent the partition before it (u64)
//! ```

use std::io::Cursor;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{Result, exec_err};

use crate::stream::Watermark;

const VERSION: u8 = 1;
const HEADER: usize = 14;

/// What a frame carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Rows numbered from `first_seq` on among what the writer sent this partition, in
    /// the batches they came in.
    Rows {
        first_seq: u64,
        batches: Vec<RecordBatch>,
    },
    /// No row earlier than `watermark` follows from the writer, which had sent the
    /// partition `sent` rows before it (so a reader knows whether it missed any).
    Watermark { watermark: Watermark, sent: u64 },
    /// The writer's input is idle: it holds no other writer's watermark back.
    Idle { sent: u64 },
}

/// A frame with the writer that sent it, read back.
#[derive(Debug)]
pub struct Received {
    /// The group run the frame belongs to.
    pub lineage: u64,
    /// The task that sent it.
    pub writer: u32,
    pub frame: Frame,
}

impl Frame {
    /// The message bytes of this frame from `writer` of `lineage`.
    pub fn encode(&self, lineage: u64, writer: u32) -> Result<Vec<u8>> {
        let kind = match self {
            Frame::Rows { .. } => 0,
            Frame::Watermark { .. } => 1,
            Frame::Idle { .. } => 2,
        };
        let mut bytes = Vec::with_capacity(HEADER + 8);
        bytes.push(VERSION);
        bytes.push(kind);
        bytes.extend_from_slice(&lineage.to_be_bytes());
        bytes.extend_from_slice(&writer.to_be_bytes());
        match self {
            Frame::Rows { first_seq, batches } => {
                let Some(first) = batches.first() else {
                    return exec_err!("a repartition frame of rows needs rows");
                };
                bytes.extend_from_slice(&first_seq.to_be_bytes());
                let mut ipc = StreamWriter::try_new(bytes, &first.schema())?;
                for batch in batches {
                    ipc.write(batch)?;
                }
                ipc.finish()?;
                bytes = ipc.into_inner()?;
            }
            Frame::Watermark { watermark, sent } => {
                bytes.extend_from_slice(&sent.to_be_bytes());
                bytes.extend_from_slice(&watermark.0.to_be_bytes());
            }
            Frame::Idle { sent } => bytes.extend_from_slice(&sent.to_be_bytes()),
        }
        Ok(bytes)
    }

    /// The frame in `bytes`, as [`Self::encode`] wrote it.
    pub fn decode(bytes: &[u8]) -> Result<Received> {
        if bytes.len() < HEADER || bytes[0] != VERSION {
            return exec_err!(
                "a message of {} bytes in a repartition topic is not a repartition frame",
                bytes.len()
            );
        }
        let lineage = u64::from_be_bytes(bytes[2..10].try_into().unwrap_or_default());
        let writer = u32::from_be_bytes(bytes[10..14].try_into().unwrap_or_default());
        let body = &bytes[HEADER..];
        let number = |body: &[u8]| -> Result<[u8; 8]> {
            match body.get(..8).and_then(|b| b.try_into().ok()) {
                Some(number) => Ok(number),
                None => exec_err!("a repartition frame is cut short"),
            }
        };
        let frame = match bytes[1] {
            0 => {
                let first_seq = u64::from_be_bytes(number(body)?);
                let reader = StreamReader::try_new(Cursor::new(&body[8..]), None)?;
                let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
                if batches.is_empty() {
                    return exec_err!("a repartition frame of rows holds no rows");
                }
                Frame::Rows { first_seq, batches }
            }
            1 => Frame::Watermark {
                sent: u64::from_be_bytes(number(body)?),
                watermark: Watermark(i64::from_be_bytes(number(&body[8..])?)),
            },
            2 => Frame::Idle {
                sent: u64::from_be_bytes(number(body)?),
            },
            kind => return exec_err!("a repartition frame of unknown kind {kind}"),
        };
        Ok(Received {
            lineage,
            writer,
            frame,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn every_kind_of_frame_reads_back_as_written() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("country", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["fr", "de"])),
                Arc::new(Int64Array::from(vec![Some(1), None])),
            ],
        )
        .unwrap();
        let frames = [
            Frame::Rows {
                first_seq: 41,
                batches: vec![batch.slice(0, 1), batch.slice(1, 1)],
            },
            Frame::Watermark {
                watermark: Watermark(-5),
                sent: 3,
            },
            Frame::Watermark {
                watermark: Watermark::END,
                sent: 0,
            },
            Frame::Idle { sent: 12 },
        ];
        for frame in frames {
            let read = Frame::decode(&frame.encode(7, 3).unwrap()).unwrap();
            assert_eq!((read.lineage, read.writer), (7, 3));
            assert_eq!(read.frame, frame);
        }
    }

    #[test]
    fn foreign_bytes_are_refused() {
        assert!(Frame::decode(b"{\"user_id\": 1}").is_err());
        let mark = Frame::Watermark {
            watermark: Watermark(1),
            sent: 1,
        };
        let mut cut = mark.encode(1, 1).unwrap();
        cut.truncate(HEADER + 3);
        assert!(Frame::decode(&cut).is_err());
    }
}
