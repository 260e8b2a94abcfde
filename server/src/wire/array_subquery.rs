//! PostgreSQL's array subquery, `ARRAY(SELECT e FROM ... [ORDER BY o])`, which DataFusion
//! does not plan, rewritten into the scalar subquery it means:
//! `coalesce((SELECT array_agg(e [ORDER BY o]) FROM ...), make_array())`: over no rows the
//! aggregate is NULL, and PostgreSQL gives the empty array `{}`. psql's `\du` and DBeaver's
//! role queries use it.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArguments, OrderBy, OrderByKind, Query, SelectItem, SetExpr, Statement,
    visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Rewrites every array subquery in `statement`; true when there was one.
pub(crate) fn rewrite_array_subqueries(statement: &mut Statement) -> bool {
    let mut rewritten = false;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Some(subquery) = as_scalar_subquery(expr) {
            *expr = subquery;
            rewritten = true;
        }
        ControlFlow::<()>::Continue(())
    });
    rewritten
}

/// The scalar subquery an `ARRAY(SELECT one_expression ...)` call means, if `expr` is one.
fn as_scalar_subquery(expr: &Expr) -> Option<Expr> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let FunctionArguments::Subquery(query) = &function.args else {
        return None;
    };
    let name = function.name.0.last()?.as_ident()?;
    if !name.value.eq_ignore_ascii_case("array") || function.name.0.len() != 1 {
        return None;
    }
    let mut query: Query = query.as_ref().clone();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let [item] = select.projection.as_mut_slice() else {
        return None;
    };
    let element = match item {
        SelectItem::UnnamedExpr(element) | SelectItem::ExprWithAlias { expr: element, .. } => {
            element
        }
        _ => return None,
    };
    let mut order = query.order_by.take();
    if let Some(OrderBy {
        kind: OrderByKind::Expressions(keys),
        ..
    }) = &mut order
    {
        // `ORDER BY 1` names the subquery's one column.
        for key in keys.iter_mut().filter(|key| key.expr.to_string() == "1") {
            key.expr = element.clone();
        }
    }
    let order = order.map(|order| format!(" {order}")).unwrap_or_default();
    let aggregate = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("array_agg({element}{order})"))
        .and_then(|mut parser| parser.parse_expr())
        .ok()?;
    *item = SelectItem::UnnamedExpr(aggregate);
    let subquery = Expr::Subquery(Box::new(query));
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("coalesce({subquery}, make_array())"))
        .and_then(|mut parser| parser.parse_expr())
        .ok()
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::rewrite_array_subqueries;

    fn rewritten(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        rewrite_array_subqueries(&mut statement);
        statement.to_string()
    }

    #[test]
    fn array_subqueries_become_aggregate_subqueries() {
        assert_eq!(
            rewritten(
                "SELECT r.rolname, ARRAY(SELECT b.rolname FROM b WHERE b.m = r.oid ORDER BY 1) AS memberof FROM r"
            ),
            "SELECT r.rolname, coalesce((SELECT array_agg(b.rolname ORDER BY b.rolname) FROM b WHERE b.m = r.oid), make_array()) AS memberof FROM r"
        );
        assert_eq!(
            rewritten("SELECT array_length(ARRAY[1, 2], 1)"),
            "SELECT array_length(ARRAY[1, 2], 1)"
        );
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT a, b FROM t)"),
            "SELECT ARRAY(SELECT a, b FROM t)"
        );
    }
}
