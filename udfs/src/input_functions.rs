//! Casts to the types Quantatom holds as tagged text run those types' input functions.
//!
//! The server's type planner plans `x::json`, `x::jsonb` and `x::uuid` as a cast to text tagged
//! with the type (see [`crate::tagged_text_field`]); a cast alone would take any text.
//! [`InputFunctionRule`] turns each such cast into the type's input function, as PostgreSQL
//! casts through them: `json_in` checks the document, `jsonb_in` also normalises it, and
//! `uuid_in` checks the uuid and writes it canonically, so a value that is not of the type is
//! refused where it is cast (22P02) and equal values are equal text before anything compares,
//! groups or prints them.

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::{Expr, LogicalPlan, ScalarUDF};
use datafusion::optimizer::AnalyzerRule;
use std::sync::Arc;

use crate::json::JsonType;
use crate::json_functions::{JsonFunction, JsonFunctionKind};
use crate::plan_rewrite::rewrite_expressions;
use crate::tagged_text::postgres_type_of;
use crate::uuid::{UUID, UuidFunction, UuidFunctionKind};

/// The analyzer rule that plans casts to `json`, `jsonb` and `uuid` as their input functions.
///
/// ```
/// use std::sync::Arc;
/// let state = datafusion::execution::SessionStateBuilder::new()
///     .with_default_features()
///     .with_analyzer_rule(Arc::new(quantatom_udfs::InputFunctionRule))
///     .build();
/// ```
#[derive(Debug, Default)]
pub struct InputFunctionRule;

impl AnalyzerRule for InputFunctionRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        rewrite_expressions(plan, |expr| match expr {
            Expr::Cast(Cast { expr, field }) => {
                match postgres_type_of(&field).and_then(input_function) {
                    Some(input) => Ok(Transformed::yes(Expr::ScalarFunction(
                        ScalarFunction::new_udf(input, vec![*expr]),
                    ))),
                    None => Ok(Transformed::no(Expr::Cast(Cast { expr, field }))),
                }
            }
            other => Ok(Transformed::no(other)),
        })
    }

    fn name(&self) -> &str {
        "input_functions"
    }
}

/// The input function of the type tagged `tag`, if it has one.
fn input_function(tag: &str) -> Option<Arc<ScalarUDF>> {
    if tag == UUID {
        return Some(UuidFunction::udf(UuidFunctionKind::Input));
    }
    JsonType::of_tag(tag).map(|of| JsonFunction::udf(JsonFunctionKind::Input, of))
}
