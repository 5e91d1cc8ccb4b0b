//! The crate's error type. Every variant carries its cause, and every error converts into
//! [`DataFusionError::External`] so it can cross DataFusion's traits unchanged.

use datafusion::error::DataFusionError;

/// Errors raised by profusion's own API (pipeline files, options, connectors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A statement of a pipeline file could not be understood.
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },

    /// A `WITH` option is unknown, missing or has a bad value.
    #[error("{statement} (line {line}): {message}")]
    Option {
        statement: String,
        line: usize,
        message: String,
    },

    /// DataFusion refused or failed a statement.
    #[error("line {line}: {source}")]
    Statement {
        line: usize,
        #[source]
        source: DataFusionError,
    },

    /// Reading or writing a pipeline file or an output.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A Kafka client call failed.
    #[error("kafka {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// A Kafka record could not be decoded, and the table's `bad_data` policy is `fail`.
    #[error("bad record in topic {topic}, partition {partition}, offset {offset}: {reason}")]
    BadRecord {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },

    /// A schema registry request failed (not a missing schema: that is a bad record).
    #[error("schema registry {url}: {context}: {source}")]
    SchemaRegistry {
        url: String,
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Reading or writing a checkpoint, or a checkpoint that does not fit the pipeline.
    #[error("checkpoint {location}: {source}")]
    Checkpoint {
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A pipeline that processes cannot share through a consumer group as it is, or a
    /// group whose membership failed.
    #[error("consumer group {group}: {message}")]
    Group { group: String, message: String },

    /// The user cancelled a running statement (Ctrl-C).
    #[error("cancelled (Ctrl-C)")]
    Cancelled,

    /// Anything DataFusion reports outside a specific statement.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

impl From<Error> for DataFusionError {
    fn from(error: Error) -> Self {
        match error {
            Error::DataFusion(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
