//! `connector = 'file'`: JSON lines, CSV or Parquet files through `object_store`, on a local
//! path or an `s3://` URL. As a source it is bounded and reads each file as a split; as a
//! sink it writes JSON lines or Parquet.

mod line_ranges;
mod location;
mod options;
mod row_decoder;
mod sink;
mod source;
mod split_reader;

pub use location::FileLocation;
pub use options::{FileFormat, FileOptions};
pub use sink::{FileSink, streaming_file_sink};
pub use source::FileSource;

/// `connector = 'file'`.
pub struct FileConnector;

impl super::Connector for FileConnector {
    fn name(&self) -> &'static str {
        "file"
    }

    fn halves(
        &self,
        declared: super::Declared<'_>,
        options: &mut crate::sql::WithOptions,
        _reads: crate::stream::SourceReads,
    ) -> crate::error::Result<super::Halves> {
        let schema = std::sync::Arc::clone(declared.schema);
        let parsed = FileOptions::parse(options)?;
        Ok((
            Some(std::sync::Arc::new(FileSource::new(
                std::sync::Arc::clone(&schema),
                parsed.clone(),
            ))),
            Some(std::sync::Arc::new(FileSink::new(schema, parsed))),
        ))
    }
}
