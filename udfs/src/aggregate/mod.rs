//! Behavioural aggregates: recency-weighted engagement, frequent values, sessions and a
//! logistic regression trained online. Their states are Arrow values, so window and
//! profile operators checkpoint and restore them like any DataFusion aggregate's.

pub mod constants;
pub mod decayed;
pub mod online_logistic;
pub mod session_count;
pub mod top_k;
