//! The sections the library's functions are documented under, the way DataFusion groups
//! its own (`SHOW FUNCTIONS`, `\h` in the REPL, `udfs/README.md`).

use datafusion::logical_expr::DocSection;

/// Times, emails, URLs, user agents and intents made comparable.
pub const NORMALIZATION: DocSection = DocSection {
    include: true,
    label: "Normalization Functions",
    description: Some("Turn the raw fields of events into comparable values."),
};

/// Data fetched for a key from elsewhere.
pub const ENRICHMENT: DocSection = DocSection {
    include: true,
    label: "Enrichment Functions",
    description: Some("Add data looked up for a key from another system."),
};

/// Models applied to features.
pub const SCORING: DocSection = DocSection {
    include: true,
    label: "Scoring Functions",
    description: Some("Apply linear, logistic and tree-ensemble models to features."),
};

/// Aggregates over a user's behaviour and models trained on it.
pub const BEHAVIOUR: DocSection = DocSection {
    include: true,
    label: "Behavioural Aggregate Functions",
    description: Some(
        "Recency-weighted engagement, frequent values, sessions and online learning.",
    ),
};
