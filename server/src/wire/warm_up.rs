//! Warm-up at start: a server runs a few queries through a connection's own path before its
//! first client does, so that client's first query does not pay for the work a process does
//! once (parsers and function registries built on first use, the allocator's first pages on
//! the worker threads, the first Parquet read's code).

use std::collections::HashMap;

use datafusion::common::{DataFusionError, ParamValues};
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::Response;
use pgwire::error::PgWireResult;

use super::errors::api_error;
use super::format_options::SessionFormatOptions;
use super::session_plans::{SessionPlans, SimpleQueryPlan};

/// Plans, runs and encodes each of `queries` (as text) in `plans`, as the simple protocol
/// would, dropping the rows; returns how many rows they gave.
pub(crate) async fn run_queries(plans: &SessionPlans, queries: &[String]) -> PgWireResult<usize> {
    let options = SessionFormatOptions::default().of(&HashMap::new());
    let mut rows = 0;
    for query in queries {
        let response = match plans.plan_simple_query(query).await? {
            SimpleQueryPlan::Reusable(plan) => {
                let parameters = ParamValues::List(vec![]);
                let run = plans.run(&plan, parameters, &Format::UnifiedText, options.clone());
                run.await?
            }
            SimpleQueryPlan::Once(plan) => {
                plans
                    .run_once(plan, &Format::UnifiedText, options.clone())
                    .await?
            }
            _ => {
                let refused = format!("a warm-up query must be one plain query: {query}");
                return Err(api_error(DataFusionError::Internal(refused)));
            }
        };
        if let Response::Query(mut answer) = response {
            while let Some(row) = answer.data_rows.next().await {
                row?;
                rows += 1;
            }
        }
    }
    Ok(rows)
}
