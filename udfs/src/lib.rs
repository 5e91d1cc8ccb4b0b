//! `profusion-udfs`: normalization, enrichment, scoring and behavioural functions for
//! personalization pipelines, usable in any DataFusion session.
//!
//! [`register_all`] adds every function to a session; profusion calls it for each of its
//! own sessions. The functions are listed in one place ([`scalar_functions`],
//! [`aggregate_functions`]), so registration, documentation and the name-clash check all see
//! the same set.
//!
//! | family | functions |
//! |---|---|
//! | normalization | `to_epoch_millis`, `to_epoch_millis_strict`, `normalize_email`, `url_domain`, `url_path`, `parse_user_agent`, `categorize_intent` |
//! | enrichment | `enrich_http` |
//! | scoring | `score_linear`, `score_logistic`, `score_tree` |
//! | behaviour | `decayed_count`, `decayed_sum`, `top_k`, `session_count`, `online_logistic` |

pub mod aggregate;
pub mod arguments;
pub mod config_file;
pub mod docs;
pub mod duration;
pub mod enrich;
pub mod file_cache;
mod identity;
pub mod intent;
pub mod normalize;
pub mod score;

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::logical_expr::{AggregateUDF, Documentation, ScalarUDF};
use datafusion::prelude::SessionContext;

use aggregate::decayed::{Decayed, DecayedAggregate};
use aggregate::online_logistic::OnlineLogistic;
use aggregate::session_count::SessionCount;
use aggregate::top_k::TopK;
use enrich::http::{EnrichHttp, EnrichStats};
use intent::CategorizeIntent;
use normalize::email::NormalizeEmail;
use normalize::epoch_millis::ToEpochMillis;
use normalize::url_parts::{UrlPart, UrlPartFunction};
use normalize::user_agent::ParseUserAgent;
use score::linear::{LinearScore, LinkFunction};
use score::score_tree::ScoreTree;

/// Every scalar function of the library, `enrich_http` (an async function) included.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::new_from_impl(ToEpochMillis::lenient())),
        Arc::new(ScalarUDF::new_from_impl(ToEpochMillis::strict())),
        Arc::new(ScalarUDF::new_from_impl(NormalizeEmail::default())),
        Arc::new(ScalarUDF::new_from_impl(UrlPartFunction::new(
            UrlPart::Domain,
        ))),
        Arc::new(ScalarUDF::new_from_impl(UrlPartFunction::new(
            UrlPart::Path,
        ))),
        Arc::new(ScalarUDF::new_from_impl(ParseUserAgent::default())),
        Arc::new(ScalarUDF::new_from_impl(CategorizeIntent::default())),
        Arc::new(AsyncScalarUDF::new(Arc::new(EnrichHttp::default())).into_scalar_udf()),
        Arc::new(ScalarUDF::new_from_impl(LinearScore::new(
            LinkFunction::Identity,
        ))),
        Arc::new(ScalarUDF::new_from_impl(LinearScore::new(
            LinkFunction::Logistic,
        ))),
        Arc::new(ScalarUDF::new_from_impl(ScoreTree::default())),
    ]
}

/// Every aggregate function of the library.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![
        Arc::new(AggregateUDF::new_from_impl(DecayedAggregate::new(
            Decayed::Count,
        ))),
        Arc::new(AggregateUDF::new_from_impl(DecayedAggregate::new(
            Decayed::Sum,
        ))),
        Arc::new(AggregateUDF::new_from_impl(TopK::default())),
        Arc::new(AggregateUDF::new_from_impl(SessionCount::default())),
        Arc::new(AggregateUDF::new_from_impl(OnlineLogistic::default())),
    ]
}

/// Every function's name and documentation, scalar functions first, in registration order
/// (for `\\h` in the REPL and generated references).
pub fn documentation() -> Vec<(String, Documentation)> {
    let scalar = scalar_functions().into_iter().map(|f| {
        let doc = match f.documentation() {
            Some(doc) => doc.clone(),
            None if f.as_async().is_some() && f.name() == "enrich_http" => {
                enrich::http::documentation().clone()
            }
            None => Documentation::builder(docs::NORMALIZATION, "", f.name()).build(),
        };
        (f.name().to_string(), doc)
    });
    let aggregate = aggregate_functions().into_iter().filter_map(|f| {
        f.documentation()
            .map(|doc| (f.name().to_string(), doc.clone()))
    });
    scalar.chain(aggregate).collect()
}

/// Registers every function of the library with `ctx`.
pub fn register_all(ctx: &SessionContext) -> Result<()> {
    register_all_counting(ctx, Arc::default())
}

/// Registers every function of the library with `ctx`, `enrich_http` counting what it does
/// into `enrich_stats` (for an application's status output or metrics).
pub fn register_all_counting(ctx: &SessionContext, enrich_stats: Arc<EnrichStats>) -> Result<()> {
    for function in scalar_functions() {
        if function.name() == "enrich_http" {
            let enrich_http = EnrichHttp::with_stats(Arc::clone(&enrich_stats));
            ctx.register_udf(AsyncScalarUDF::new(Arc::new(enrich_http)).into_scalar_udf());
            continue;
        }
        ctx.register_udf(function.as_ref().clone());
    }
    for function in aggregate_functions() {
        ctx.register_udaf(function.as_ref().clone());
    }
    Ok(())
}
