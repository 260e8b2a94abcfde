//! A `VALUES` list's column takes the type one of its rows casts to, as PostgreSQL resolves a
//! column's type across the rows: `VALUES ('{"a": 1}'::jsonb), (NULL), ('[]')` is a `jsonb`
//! column. The types Quantatom holds as tagged text (`uuid`, `json`, `jsonb`, `ltree`,
//! `lquery`: see [`super::text_types`]) differ from text only in field metadata, and
//! DataFusion refuses a list whose rows' metadata differ; so a bare `NULL` or string literal
//! in such a column is given the same cast as the row that has one.

use std::ops::ControlFlow;

use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast::{
    Expr, Query, SetExpr, Statement, Value, VisitMut, VisitorMut,
};
use quantatom_udfs::postgres_type_of;

use super::text_types::PostgresTypePlanner;

/// Casts the untyped literals of every `VALUES` column in `statement` that another row casts
/// to a tagged-text type.
pub(crate) fn type_values_columns(statement: &mut Statement) {
    let _ = statement.visit(&mut ValuesTyper);
}

struct ValuesTyper;

impl VisitorMut for ValuesTyper {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Values(values) = query.body.as_mut() {
            let columns = values.rows.first().map_or(0, |row| row.content.len());
            for column in 0..columns {
                let cast = values
                    .rows
                    .iter()
                    .filter_map(|row| row.content.get(column))
                    .find(|value| is_tagged_text_cast(value))
                    .cloned();
                let Some(Expr::Cast {
                    kind,
                    data_type,
                    array,
                    format,
                    ..
                }) = cast
                else {
                    continue;
                };
                for row in &mut values.rows {
                    if let Some(value) = row.content.get_mut(column)
                        && is_untyped_literal(value)
                    {
                        *value = Expr::Cast {
                            kind: kind.clone(),
                            expr: Box::new(value.clone()),
                            data_type: data_type.clone(),
                            array,
                            format: format.clone(),
                        };
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Whether `expr` is a cast to a type held as tagged text.
fn is_tagged_text_cast(expr: &Expr) -> bool {
    let Expr::Cast { data_type, .. } = expr else {
        return false;
    };
    PostgresTypePlanner
        .plan_type_field(data_type)
        .ok()
        .flatten()
        .is_some_and(|field| postgres_type_of(&field).is_some())
}

/// Whether `expr` is `NULL` or a string literal, whose type PostgreSQL takes from context.
fn is_untyped_literal(expr: &Expr) -> bool {
    let Expr::Value(value) = expr else {
        return false;
    };
    matches!(
        value.value,
        Value::Null
            | Value::SingleQuotedString(_)
            | Value::EscapedStringLiteral(_)
            | Value::DollarQuotedString(_)
    )
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::type_values_columns;

    fn typed(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        type_values_columns(&mut statement);
        statement.to_string()
    }

    #[test]
    fn untyped_literals_take_the_cast_of_their_column() {
        assert_eq!(
            typed("SELECT * FROM (VALUES (1, NULL), (2, '{}'::jsonb), (3, '[]')) AS t (n, doc)"),
            "SELECT * FROM (VALUES (1, NULL::JSONB), (2, '{}'::JSONB), (3, '[]'::JSONB)) AS t (n, doc)"
        );
        // Text columns, and columns whose other rows are not literals, stay as written.
        assert_eq!(
            typed("VALUES ('a'::text, x::uuid), (NULL, y)"),
            "VALUES ('a'::TEXT, x::UUID), (NULL, y)"
        );
    }
}
