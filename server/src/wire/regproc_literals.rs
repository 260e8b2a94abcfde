//! `'name'::regproc` literals as the emulated catalogs compare them.
//!
//! PostgreSQL compares a `regproc` column with a function name cast to `regproc` by OID
//! (pgJDBC's type cache asks `typinput = 'pg_catalog.array_in'::regproc`). The `pg_catalog`
//! emulation keeps `regproc` columns (`pg_type.typinput`, ...) as function names, while its
//! parser turns the cast into an OID lookup, so the comparison fails on types. The literal is
//! therefore written as the function's name, without a schema, before that parser sees it.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Value, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// `sql` with every `'name'::regproc` literal replaced by `'name'`; `None` when it has none.
pub(crate) fn with_regproc_literals_as_names(sql: &str) -> Option<String> {
    if !sql.to_ascii_lowercase().contains("regproc") {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut changed = false;
    let _ = visit_expressions_mut(&mut statements, |expr| {
        if let Expr::Cast {
            expr: literal,
            data_type,
            ..
        } = expr
            && data_type.to_string().eq_ignore_ascii_case("regproc")
            && let Expr::Value(value) = literal.as_ref()
            && let Value::SingleQuotedString(name) = &value.value
        {
            let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
            *expr = Expr::value(Value::SingleQuotedString(name.to_owned()));
            changed = true;
        }
        ControlFlow::<()>::Continue(())
    });
    changed.then(|| {
        statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::with_regproc_literals_as_names;

    #[test]
    fn regproc_literals_become_function_names() {
        assert_eq!(
            with_regproc_literals_as_names(
                "SELECT typinput = 'pg_catalog.array_in'::regproc AS is_array FROM pg_type"
            )
            .as_deref(),
            Some("SELECT typinput = 'array_in' AS is_array FROM pg_type")
        );
        assert_eq!(with_regproc_literals_as_names("SELECT 1"), None);
        assert_eq!(
            with_regproc_literals_as_names(
                "SELECT proname FROM pg_proc WHERE proname = 'regprocin'"
            ),
            None
        );
    }
}
