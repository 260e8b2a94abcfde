//! `LIKE ... ESCAPE 'c'` with any escape character, as PostgreSQL allows.
//!
//! DataFusion's LIKE knows only the backslash as escape character; SQLAlchemy (and so Superset)
//! writes `nspname NOT LIKE 'pg/_%' ESCAPE '/'`. [`LikeEscapeRule`] rewrites such a pattern to
//! backslash escaping with PostgreSQL's own `like_escape(pattern, escape)` function
//! ([`LikeEscapeFunction`]), so the match is exactly PostgreSQL's.

use std::sync::Arc;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::Like;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::plan_rewrite::rewrite_expressions;

/// Rewrites `pattern` written with `escape` as its escape character to backslash escaping.
/// `None` when the pattern ends in a lone escape character (PostgreSQL: `22025`).
pub fn to_backslash_escapes(pattern: &str, escape: char) -> Option<String> {
    let mut rewritten = String::with_capacity(pattern.len() + 2);
    let mut characters = pattern.chars();
    while let Some(character) = characters.next() {
        if character == escape {
            rewritten.push('\\');
            rewritten.push(characters.next()?);
        } else if character == '\\' {
            rewritten.push_str("\\\\");
        } else {
            rewritten.push(character);
        }
    }
    Some(rewritten)
}

/// `like_escape(pattern, escape)`: the pattern rewritten to backslash escaping.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LikeEscapeFunction {
    signature: Signature,
}

impl LikeEscapeFunction {
    /// The function, ready to register.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
        })
    }
}

fn rewrite_one(pattern: &str, escape: &str) -> Result<String> {
    let mut chars = escape.chars();
    match (chars.next(), chars.next()) {
        (Some(escape), None) => to_backslash_escapes(pattern, escape).ok_or_else(|| {
            DataFusionError::Execution("LIKE pattern must not end with escape character".into())
        }),
        _ => exec_err!("invalid escape string: must be empty or one character"),
    }
}

impl ScalarUDFImpl for LikeEscapeFunction {
    fn name(&self) -> &str {
        "like_escape"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [pattern, escape] = args.args.as_slice() else {
            return exec_err!("like_escape takes a pattern and an escape character");
        };
        if let (ColumnarValue::Scalar(pattern), ColumnarValue::Scalar(escape)) = (pattern, escape) {
            let rewritten = match (
                pattern.try_as_str().flatten(),
                escape.try_as_str().flatten(),
            ) {
                (Some(pattern), Some(escape)) => Some(rewrite_one(pattern, escape)?),
                _ => None,
            };
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(rewritten)));
        }
        let patterns = pattern.to_array(rows)?;
        let escapes = escape.to_array(rows)?;
        let (patterns, escapes) = (as_utf8(&patterns)?, as_utf8(&escapes)?);
        let rewritten = (0..rows)
            .map(|i| match patterns.is_null(i) || escapes.is_null(i) {
                true => Ok(None),
                false => rewrite_one(patterns.value(i), escapes.value(i)).map(Some),
            })
            .collect::<Result<StringArray>>()?;
        Ok(ColumnarValue::Array(Arc::new(rewritten)))
    }
}

fn as_utf8(array: &Arc<dyn Array>) -> Result<&StringArray> {
    array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("like_escape: arguments are not Utf8".into()))
}

/// Rewrites `LIKE`/`ILIKE` with an escape character other than backslash (see the module).
#[derive(Debug, Default)]
pub struct LikeEscapeRule;

impl AnalyzerRule for LikeEscapeRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        rewrite_expressions(plan, |expr| match expr {
            Expr::Like(like) if like.escape_char.is_some_and(|escape| escape != '\\') => {
                Ok(Transformed::yes(Expr::Like(backslash_escaped(like))))
            }
            other => Ok(Transformed::no(other)),
        })
    }

    fn name(&self) -> &str {
        "like_escape"
    }
}

fn backslash_escaped(like: Like) -> Like {
    let escape = like.escape_char.map(String::from);
    let to_utf8 = |expr: Expr| {
        Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(expr),
            DataType::Utf8,
        ))
    };
    let pattern = LikeEscapeFunction::udf().call(vec![
        to_utf8(*like.pattern),
        Expr::Literal(ScalarValue::Utf8(escape), None),
    ]);
    Like {
        expr: Box::new(to_utf8(*like.expr)),
        pattern: Box::new(pattern),
        escape_char: None,
        ..like
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_become_backslashes_and_backslashes_become_literal() {
        assert_eq!(
            to_backslash_escapes("pg/_%", '/').as_deref(),
            Some("pg\\_%")
        );
        assert_eq!(to_backslash_escapes("a//b", '/').as_deref(), Some("a\\/b"));
        assert_eq!(
            to_backslash_escapes("c:\\dir", '/').as_deref(),
            Some("c:\\\\dir")
        );
        assert_eq!(to_backslash_escapes("bad/", '/'), None);
    }
}
