//! Durations as users write them in options: `'5 seconds'`, `'500ms'`, `'1 minute'`,
//! `'2h'`, or a plain number of milliseconds. The UDF library's parser, so `WITH` options
//! and function arguments read a duration the same way.

pub use profusion_udfs::duration::parse_duration;
