//! Plans PostgreSQL's JSON operators and casts on tagged text (see [`crate::tagged_text_field`])
//! into the functions of [`crate::json_functions`].
//!
//! (A cast to `json` or `jsonb` becomes `json_in` / `jsonb_in`: see
//! [`crate::InputFunctionRule`].)
//!
//! `->`, `->>`, `#>` and `#>>` are claimed when their left side is `json` or `jsonb`, or any
//! other text, which is read as `json` (so `attributes ->> 'region'` works on a member's
//! attributes, a JSON object held as text). `@>` and `<@` are claimed when a side is `jsonb`
//! (on other text they stay the `ltree` operators), `?`, `?|` and `?&` when the left side is.
//! `||` (concatenation) is claimed when a side is `jsonb`, `-` (deletion) when the left side is.

use datafusion::arrow::datatypes::Field;
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::sqlparser::ast::BinaryOperator;
use datafusion::logical_expr::{Expr, ExprSchemable};

use crate::json::JsonType;
use crate::json_functions::{JsonFunction, JsonFunctionKind};
use crate::planner::is_text;
use crate::tagged_text::postgres_type_of;

/// The [`ExprPlanner`] of the JSON operators; registered before [`crate::LtreeOperatorPlanner`],
/// which would otherwise take `@>` and `<@` on `jsonb` for paths.
///
/// ```
/// use std::sync::Arc;
/// use datafusion::execution::FunctionRegistry;
/// let mut ctx = datafusion::prelude::SessionContext::new();
/// ctx.register_expr_planner(Arc::new(quantatom_udfs::JsonOperatorPlanner)).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct JsonOperatorPlanner;

impl ExprPlanner for JsonOperatorPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        use BinaryOperator as B;
        use JsonFunctionKind as K;
        let kind = match expr.op {
            B::Arrow | B::LongArrow => {
                let index = expr.right.get_type(schema)?.is_integer();
                match (index, expr.op == B::LongArrow) {
                    (false, false) => K::ObjectField,
                    (false, true) => K::ObjectFieldText,
                    (true, false) => K::ArrayElement,
                    (true, true) => K::ArrayElementText,
                }
            }
            B::HashArrow => K::ExtractPathOperator,
            B::HashLongArrow => K::ExtractPathTextOperator,
            B::AtArrow => K::Contains,
            B::ArrowAt => K::Contained,
            B::Question => K::Exists,
            B::QuestionPipe => K::ExistsAny,
            B::QuestionAnd => K::ExistsAll,
            B::StringConcat => K::Concat,
            B::Minus => K::Delete,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let left = document_type(&expr.left, schema)?;
        let of = match kind {
            K::Contains | K::Contained
                if left == Some(JsonType::Jsonb)
                    || document_type(&expr.right, schema)? == Some(JsonType::Jsonb) =>
            {
                JsonType::Jsonb
            }
            K::Concat
                if left == Some(JsonType::Jsonb)
                    || document_type(&expr.right, schema)? == Some(JsonType::Jsonb) =>
            {
                JsonType::Jsonb
            }
            K::Exists | K::ExistsAny | K::ExistsAll | K::Delete
                if left == Some(JsonType::Jsonb) =>
            {
                JsonType::Jsonb
            }
            K::Contains
            | K::Contained
            | K::Exists
            | K::ExistsAny
            | K::ExistsAll
            | K::Concat
            | K::Delete => {
                return Ok(PlannerResult::Original(expr));
            }
            _ => match left {
                Some(of) => of,
                None if is_text(&expr.left.get_type(schema)?) => JsonType::Json,
                None => return Ok(PlannerResult::Original(expr)),
            },
        };
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(JsonFunction::udf(kind, of), vec![expr.left, expr.right]),
        )))
    }
}

/// The JSON type `expr` is tagged as, if any.
fn document_type(expr: &Expr, schema: &DFSchema) -> Result<Option<JsonType>> {
    let (_, field) = expr.to_field(schema)?;
    Ok(json_type_of(&field))
}

/// The JSON type a field is tagged as, if any.
fn json_type_of(field: &Field) -> Option<JsonType> {
    postgres_type_of(field).and_then(JsonType::of_tag)
}
