//! Normalization functions: times, emails, URLs and user agents made comparable.

pub mod civil_time;
pub mod email;
pub mod epoch_millis;
pub mod string_map;
pub mod url_parts;
pub mod user_agent;
