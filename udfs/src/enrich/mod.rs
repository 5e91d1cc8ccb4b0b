//! Enrichment functions: data for a key fetched from another system.

pub mod circuit;
pub mod http;
pub mod options;
pub mod response_cache;
