//! Arguments of the `mdf_*` table functions: constants, the first naming a cube.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::TableFunctionArgs;
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;

use super::{CubeSchemaProvider, MdfError, MdfTable};

/// The arguments of a call of `function`, each folded to a constant.
pub(crate) fn constant_arguments(
    function: &str,
    args: &TableFunctionArgs,
) -> Result<Vec<ScalarValue>> {
    let context = SimplifyContext::builder()
        .with_config_options(Arc::new(args.session().config_options().clone()))
        .with_current_time()
        .build();
    let simplifier = ExprSimplifier::new(context);
    args.exprs()
        .iter()
        .map(|expr| match simplifier.simplify(expr.clone())? {
            Expr::Literal(value, _) => Ok(value),
            other => plan_err!("{function}: arguments must be constants, not {other}"),
        })
        .collect()
}

/// The cube an argument names: `'cube.finance'` or `'finance'`.
pub(crate) fn named_cube(
    cubes: &CubeSchemaProvider,
    function: &str,
    name: &ScalarValue,
) -> Result<Arc<MdfTable>> {
    let (ScalarValue::Utf8(Some(name))
    | ScalarValue::LargeUtf8(Some(name))
    | ScalarValue::Utf8View(Some(name))) = name
    else {
        return plan_err!("{function}: the cube is named by a string such as 'cube.finance'");
    };
    let bare = name.strip_prefix("cube.").unwrap_or(name);
    match cubes.cube(bare) {
        Some(cube) => Ok(cube),
        None => Err(MdfError::NotFound(name.clone()).into()),
    }
}

/// An argument of `function` that is a JSON object of dimension names to member codes
/// (`'{"version":"Budget","entity":"EMEA"}'`); `what` names it in errors.
pub(crate) fn members_by_dimension(
    function: &str,
    what: &str,
    value: &ScalarValue,
) -> Result<BTreeMap<String, String>> {
    let (ScalarValue::Utf8(Some(text))
    | ScalarValue::Utf8View(Some(text))
    | ScalarValue::LargeUtf8(Some(text))) = value
    else {
        return plan_err!("{function}: the {what} is a JSON object (text), not {value}");
    };
    serde_json::from_str(text).map_err(|e| {
        DataFusionError::Plan(format!(
            "{function}: the {what} must be a JSON object of dimension names to member codes: {e}"
        ))
    })
}
