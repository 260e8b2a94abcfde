//! SQL functions for Quantatom that depend on DataFusion only.
//!
//! Mostly the hierarchy toolkit: member paths are PostgreSQL `ltree` values written as
//! text (`Total.EMEA.DE`), and the functions here give them PostgreSQL's exact semantics so a
//! planner can write `path <@ 'Total.EMEA'` or `subpath(path, 0, 2)` as they would in Postgres.
//! The engine registers [`functions`] and [`LtreeOperatorPlanner`] on every session; table
//! providers use [`ltree`] to validate paths they store. PostgreSQL's `LIKE ... ESCAPE` with
//! any escape character comes from [`LikeEscapeRule`] and `like_escape()`. `json` and `jsonb`
//! values (tagged text) get PostgreSQL's functions and operators from [`json`],
//! [`JsonFunction`] and [`JsonOperatorPlanner`]; `uuid` values its input and
//! `gen_random_uuid()` from [`uuid`]; [`aggregate_functions`] are the JSON aggregates.
//! [`InputFunctionRule`] makes casts to these types run their input functions, and
//! [`PostgresNumericRule`] types casts to a bare `numeric`, decimal quotients, written numbers
//! and decimals meeting floats as PostgreSQL does. [`IntervalArithmeticPlanner`] plans an
//! interval times or divided by a number; [`PostgresMathFunction`] adds PostgreSQL's `mod`,
//! `div`, `sign` and `ceiling`. [`TemporalTextRule`] writes timestamps, times and intervals
//! cast to text as PostgreSQL does.

pub mod datetime_text;
mod evaluation;
mod input_functions;
mod interval_arithmetic;
pub mod interval_text;
pub mod json;
pub mod json_agg;
pub mod json_build;
mod json_functions;
mod json_planning;
mod like_escape;
pub mod lquery;
pub mod ltree;
mod ltree_functions;
mod numeric;
mod plan_rewrite;
mod planner;
mod postgres_math;
mod tagged_text;
mod temporal_text;
pub mod uuid;
mod variance;

use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

pub use datetime_text::DatetimeTextRule;
pub use input_functions::InputFunctionRule;
pub use interval_arithmetic::{
    IntervalArithmeticPlanner, IntervalOutOfRange, IntervalScaleFunction,
};
pub use json_functions::{JsonFunction, JsonFunctionKind};
pub use json_planning::JsonOperatorPlanner;
pub use like_escape::{LikeEscapeFunction, LikeEscapeRule};
pub use ltree::{LtreeError, MemberPath};
pub use ltree_functions::{LtreeFunction, LtreeFunctionKind};
pub use numeric::{
    DEFAULT_DECIMAL, PostgresNumericRule, postgres_cast, unconstrained_numeric_field,
    unifies_its_arguments,
};
pub use plan_rewrite::rewrite_expressions;
pub use planner::LtreeOperatorPlanner;
pub use postgres_math::PostgresMathFunction;
pub use tagged_text::{POSTGRES_TYPE_KEY, postgres_type_of, tagged_text_field};
pub use temporal_text::{TemporalTextFunction, TemporalTextRule, write_value};
pub use variance::VarianceFunction;

/// Every aggregate function this crate provides (the JSON aggregates of [`json_agg`]), ready
/// for `SessionContext::register_udaf`.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    json_agg::JsonAggregate::udafs()
}

/// Every scalar function this crate provides, ready for `SessionContext::register_udf`.
///
/// ```
/// let ctx = datafusion::prelude::SessionContext::new();
/// for udf in quantatom_udfs::functions() {
///     ctx.register_udf(udf.as_ref().clone());
/// }
/// ```
pub fn functions() -> Vec<Arc<ScalarUDF>> {
    let mut functions: Vec<_> = LtreeFunctionKind::ALL
        .into_iter()
        .map(LtreeFunction::udf)
        .collect();
    functions.push(Arc::new(LikeEscapeFunction::udf()));
    functions.extend(JsonFunction::udfs());
    functions.extend(json_build::JsonBuildFunction::udfs());
    functions.extend(crate::uuid::UuidFunction::udfs());
    functions.extend(VarianceFunction::udfs().into_iter().map(Arc::new));
    functions.extend(IntervalScaleFunction::udfs().into_iter().map(Arc::new));
    functions.extend(PostgresMathFunction::udfs().into_iter().map(Arc::new));
    functions
}
