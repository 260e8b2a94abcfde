//! Integer literals in a query's output typed as PostgreSQL types them.
//!
//! PostgreSQL gives an integer literal that fits in 32 bits the type `integer` (int4);
//! DataFusion gives every integer literal Int64. Clients see the difference in a result
//! column's type: node-postgres returns int8 as a string, so `SELECT 1` would answer `'1'`.
//! [`type_output_literals`] makes the output columns that are bare integer literals int4.
//! Literals inside expressions keep DataFusion's type, so `2147483647 + 1` is still computed
//! in 64 bits rather than overflowing.

use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::expr::Alias;
use datafusion::logical_expr::{Expr, LogicalPlan};

use crate::output_projection::rewrite_output_projection;

/// `plan` with its output's bare integer literals typed int4 where they fit; the output
/// projection is found below any `ORDER BY` and `LIMIT`.
pub fn type_output_literals(plan: LogicalPlan) -> Result<LogicalPlan> {
    let typed = rewrite_output_projection(&plan, &|exprs| {
        exprs.iter().any(|expr| narrowed(expr).is_some()).then(|| {
            exprs
                .iter()
                .map(|expr| narrowed(expr).unwrap_or_else(|| expr.clone()))
                .collect()
        })
    })?;
    Ok(typed.unwrap_or(plan))
}

/// The int4 form of `expr`, keeping its output name, when it is a bare integer literal that
/// fits in 32 bits.
fn narrowed(expr: &Expr) -> Option<Expr> {
    let (literal, name) = match expr {
        Expr::Alias(Alias { expr, name, .. }) => (expr.as_ref(), name.clone()),
        literal => (literal, literal.schema_name().to_string()),
    };
    let Expr::Literal(ScalarValue::Int64(Some(value)), metadata) = literal else {
        return None;
    };
    let value = i32::try_from(*value).ok()?;
    Some(Expr::Literal(ScalarValue::Int32(Some(value)), metadata.clone()).alias(name))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::prelude::SessionContext;

    use super::type_output_literals;

    async fn output_types(sql: &str) -> Vec<DataType> {
        let plan = SessionContext::new()
            .state()
            .create_logical_plan(sql)
            .await
            .unwrap();
        let typed = type_output_literals(plan).unwrap();
        typed
            .schema()
            .fields()
            .iter()
            .map(|field| field.data_type().clone())
            .collect()
    }

    #[tokio::test]
    async fn bare_int4_literals_in_the_output_become_int4() {
        assert_eq!(output_types("SELECT 1").await, [DataType::Int32]);
        assert_eq!(
            output_types("SELECT 1 AS one, 3000000000 AS big, 1 + 1 AS sum").await,
            [DataType::Int32, DataType::Int64, DataType::Int64]
        );
        assert_eq!(
            output_types("SELECT 7 AS n ORDER BY n LIMIT 1").await,
            [DataType::Int32]
        );
    }
}
