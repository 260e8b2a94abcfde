//! `'name'::regproc` and `'name'::regclass` literals as the emulated catalogs read them.
//!
//! PostgreSQL compares a `regproc` column with a function name cast to `regproc` by OID
//! (pgJDBC's type cache asks `typinput = 'pg_catalog.array_in'::regproc`). The `pg_catalog`
//! emulation keeps `regproc` columns (`pg_type.typinput`, ...) as function names, while its
//! parser turns the cast into an OID lookup, so the comparison fails on types. The literal is
//! therefore written as the function's name, without a schema, before that parser sees it.
//!
//! That parser looks a `regclass` name without a schema up in the current schema only, where
//! PostgreSQL searches `pg_catalog` first: `'pg_class'::regclass` (tools match
//! `pg_description.classoid` with it) found nothing and failed. A name of a `pg_catalog`
//! table is therefore given its schema.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{DataType, Expr, Value, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_pg_catalog::pg_catalog::PG_CATALOG_TABLES;

/// `sql` with every `'name'::regproc` literal replaced by `'name'`, and every
/// `'pg_table'::regclass` naming a `pg_catalog` table by `'pg_catalog.pg_table'::regclass`;
/// `None` when it has neither.
pub(crate) fn with_reg_literals_resolvable(sql: &str) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("regproc") && !lower.contains("regclass") {
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
            && let Expr::Value(value) = literal.as_mut()
            && let Value::SingleQuotedString(name) = &mut value.value
        {
            match reg_type(data_type).as_str() {
                "regproc" => {
                    let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
                    *expr = Expr::value(Value::SingleQuotedString(name.to_owned()));
                    changed = true;
                }
                "regclass" if PG_CATALOG_TABLES.contains(&name.as_str()) => {
                    *name = format!("pg_catalog.{name}");
                    changed = true;
                }
                _ => {}
            }
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

/// A cast's type as its lower-case name without `pg_catalog.` (`regclass`).
fn reg_type(data_type: &DataType) -> String {
    let name = data_type.to_string().to_ascii_lowercase();
    match name.strip_prefix("pg_catalog.") {
        Some(bare) => bare.to_owned(),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::with_reg_literals_resolvable;

    #[test]
    fn regproc_literals_become_function_names() {
        assert_eq!(
            with_reg_literals_resolvable(
                "SELECT typinput = 'pg_catalog.array_in'::regproc AS is_array FROM pg_type"
            )
            .as_deref(),
            Some("SELECT typinput = 'array_in' AS is_array FROM pg_type")
        );
        assert_eq!(with_reg_literals_resolvable("SELECT 1"), None);
        assert_eq!(
            with_reg_literals_resolvable("SELECT proname FROM pg_proc WHERE proname = 'regprocin'"),
            None
        );
    }

    #[test]
    fn catalog_tables_cast_to_regclass_are_given_their_schema() {
        assert_eq!(
            with_reg_literals_resolvable(
                "SELECT d.description FROM pg_description d WHERE d.classoid = 'pg_class'::regclass \
                 AND 'pg_type'::pg_catalog.regclass > 0 AND 'entity'::regclass > 0"
            )
            .as_deref(),
            Some(
                "SELECT d.description FROM pg_description d WHERE d.classoid = 'pg_catalog.pg_class'::REGCLASS \
                 AND 'pg_catalog.pg_type'::pg_catalog.regclass > 0 AND 'entity'::REGCLASS > 0"
            )
        );
        assert_eq!(
            with_reg_literals_resolvable("SELECT 'pg_catalog.pg_class'::regclass"),
            None
        );
    }
}
