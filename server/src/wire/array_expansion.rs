//! PostgreSQL's array-expanding set-returning functions and composite field selection, as
//! catalog queries use them, rewritten into what DataFusion plans:
//!
//! - `generate_subscripts(a, d)` → `unnest(generate_series(1, array_length(a, d)))`
//!   (SQLAlchemy's key and index reflection, next to `unnest(indkey)`);
//! - `_pg_expandarray(a)`, `information_schema`'s `(x, n)` rows of an array, →
//!   `unnest(_pg_expandarray(a))` over the list-of-records function the engine registers
//!   (pgJDBC's `getPrimaryKeys` and `getIndexInfo`);
//! - `(composite).field` → `get_field(composite, 'field')`, which DataFusion does not parse
//!   from the parenthesised form.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr, FunctionArguments, Statement, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Rewrites every array expansion and composite field selection in `statement`.
pub(crate) fn rewrite_array_expansions(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Some(rewritten) = rewritten(expr) {
            *expr = rewritten;
        }
        ControlFlow::<()>::Continue(())
    });
}

fn rewritten(expr: &Expr) -> Option<Expr> {
    match expr {
        Expr::Function(function) => {
            let FunctionArguments::List(arguments) = &function.args else {
                return None;
            };
            let name = function
                .name
                .0
                .last()?
                .as_ident()?
                .value
                .to_ascii_lowercase();
            let arguments: Vec<String> = arguments.args.iter().map(ToString::to_string).collect();
            match (name.as_str(), arguments.as_slice()) {
                ("generate_subscripts", [array, dimension]) => parse(&format!(
                    "unnest(generate_series(1, array_length({array}, {dimension})))"
                )),
                ("_pg_expandarray", [array]) => parse(&format!("unnest(_pg_expandarray({array}))")),
                _ => None,
            }
        }
        Expr::CompoundFieldAccess { root, access_chain } => {
            let Expr::Nested(composite) = root.as_ref() else {
                return None;
            };
            let [AccessExpr::Dot(Expr::Identifier(field))] = access_chain.as_slice() else {
                return None;
            };
            parse(&format!(
                "get_field({composite}, '{}')",
                field.value.replace('\'', "''")
            ))
        }
        _ => None,
    }
}

fn parse(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_expr())
        .ok()
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::rewrite_array_expansions;

    fn rewritten(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        rewrite_array_expansions(&mut statement);
        statement.to_string()
    }

    #[test]
    fn expansions_become_unnest_and_field_selection_get_field() {
        assert_eq!(
            rewritten(
                "SELECT unnest(i.indkey), generate_subscripts(i.indkey, 1) AS ord FROM pg_index i"
            ),
            "SELECT unnest(i.indkey), unnest(generate_series(1, array_length(i.indkey, 1))) AS ord FROM pg_index i"
        );
        assert_eq!(
            rewritten(
                "SELECT (_pg_expandarray(i.indkey)).n AS key_seq FROM pg_index i WHERE a.attnum = (r.keys).x"
            ),
            "SELECT get_field(unnest(_pg_expandarray(i.indkey)), 'n') AS key_seq FROM pg_index i WHERE a.attnum = get_field(r.keys, 'x')"
        );
        assert_eq!(
            rewritten("SELECT a.b, a['c'] FROM a"),
            "SELECT a.b, a['c'] FROM a"
        );
    }
}
