//! `connector = 'file'`: JSON lines, CSV or Parquet files through `object_store`, on a local
//! path or an `s3://` URL. As a source it is bounded and reads each file as a split; as a
//! sink it writes JSON lines or Parquet.

mod location;
mod options;
mod sink;
mod source;

pub use location::FileLocation;
pub use options::{FileFormat, FileOptions};
pub use sink::FileSink;
pub use source::{FileSource, read_file};
