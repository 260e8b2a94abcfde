//! Plans PostgreSQL's `ltree` operators on text paths.
//!
//! DataFusion parses `a <@ b` and `a @> b` and hands them to every registered [`ExprPlanner`];
//! its own nested-types planner claims them only when both sides are lists
//! (`array_has_all`). This planner claims them when both sides are strings, which is how member
//! paths are typed, and turns them into `ltree_risparent` / `ltree_isparent` calls.
//!
//! `||` and `~` mean text concatenation and a regular expression match on text, so they are
//! claimed only when a side is tagged as a path (an `ltree`: `dim.*.path`, a `::ltree` cast, a
//! function returning a path) or, for `~`, as an `lquery`: then `a || b` is `ltree_concat` and
//! `path ~ pattern` is `lquery_match`, as in PostgreSQL.

use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::sqlparser::ast::BinaryOperator;
use datafusion::logical_expr::{Expr, ExprSchemable};

use crate::ltree::{LQUERY, LTREE};
use crate::ltree_functions::{LtreeFunction, LtreeFunctionKind};
use crate::tagged_text::postgres_type_of;

/// The [`ExprPlanner`] that maps `<@` and `@>` on text to the `ltree` functions.
///
/// ```
/// use std::sync::Arc;
/// use datafusion::execution::FunctionRegistry;
/// let mut ctx = datafusion::prelude::SessionContext::new();
/// ctx.register_expr_planner(Arc::new(quantatom_udfs::LtreeOperatorPlanner)).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct LtreeOperatorPlanner;

impl ExprPlanner for LtreeOperatorPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let kind = match expr.op {
            BinaryOperator::ArrowAt => LtreeFunctionKind::IsDescendant,
            BinaryOperator::AtArrow => LtreeFunctionKind::IsAncestor,
            BinaryOperator::StringConcat | BinaryOperator::PGRegexMatch => {
                return plan_tagged(expr, schema);
            }
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let texts = is_text(&expr.left.get_type(schema)?) && is_text(&expr.right.get_type(schema)?);
        if !texts {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(LtreeFunction::udf(kind), vec![expr.left, expr.right]),
        )))
    }
}

/// `||` or `~` with a side tagged as a path or pattern (see the module documentation).
fn plan_tagged(expr: RawBinaryExpr, schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
    let tag = |e: &Expr| -> Result<Option<String>> {
        let (_, field) = e.to_field(schema)?;
        Ok(postgres_type_of(&field).map(str::to_owned))
    };
    let (left, right) = (tag(&expr.left)?, tag(&expr.right)?);
    let is = |tag: &Option<String>, name: &str| tag.as_deref() == Some(name);
    let (kind, args) = match expr.op {
        BinaryOperator::StringConcat if is(&left, LTREE) || is(&right, LTREE) => {
            (LtreeFunctionKind::Concat, vec![expr.left, expr.right])
        }
        BinaryOperator::PGRegexMatch if is(&left, LTREE) || is(&right, LQUERY) => {
            (LtreeFunctionKind::LqueryMatch, vec![expr.left, expr.right])
        }
        BinaryOperator::PGRegexMatch if is(&left, LQUERY) || is(&right, LTREE) => {
            (LtreeFunctionKind::LqueryMatch, vec![expr.right, expr.left])
        }
        _ => return Ok(PlannerResult::Original(expr)),
    };
    Ok(PlannerResult::Planned(Expr::ScalarFunction(
        ScalarFunction::new_udf(LtreeFunction::udf(kind), args),
    )))
}

/// Whether a value of `data_type` is text, or an untyped NULL that may be text.
pub(crate) fn is_text(data_type: &datafusion::arrow::datatypes::DataType) -> bool {
    use datafusion::arrow::datatypes::DataType::{LargeUtf8, Utf8, Utf8View};
    data_type.is_null() || matches!(data_type, Utf8 | Utf8View | LargeUtf8)
}
