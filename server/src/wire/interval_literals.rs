//! `INTERVAL '...'` literals in PostgreSQL's forms (`INTERVAL '1 day 04:05:06'`,
//! `INTERVAL '-1 days +02:00:00'`, what the server itself sends): DataFusion's planner reads the
//! text with Arrow's parser, which knows units only, so each such literal is given the text
//! of the same interval in units before planning. (A text cast to an interval, `'02:30'::interval`,
//! is read by `quantatom_udfs::DatetimeTextRule`.)

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Statement, Value, visit_expressions_mut};
use quantatom_udfs::interval_text::postgres_interval;

/// Rewrites every `INTERVAL 'text'` of `statement` without fields (`INTERVAL '1' DAY` has
/// one) whose text PostgreSQL's interval input reads to the same interval in Arrow's units.
pub(crate) fn rewrite_interval_literals(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Interval(interval) = expr
            && interval.leading_field.is_none()
            && interval.last_field.is_none()
            && let Expr::Value(value) = interval.value.as_mut()
            && let Value::SingleQuotedString(text) = &mut value.value
            && let Some(read) = postgres_interval(text)
        {
            *text = format!(
                "{} months {} days {} microseconds",
                read.months,
                read.days,
                read.nanoseconds / 1_000
            );
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::rewrite_interval_literals;

    #[test]
    fn postgresql_interval_literals_are_written_in_units() {
        let sql =
            "SELECT INTERVAL '1 day 04:05:06', INTERVAL '1' DAY, INTERVAL 'P1D', '1:00'::interval";
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        rewrite_interval_literals(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT INTERVAL '0 months 1 days 14706000000 microseconds', INTERVAL '1' DAY, INTERVAL 'P1D', '1:00'::INTERVAL"
        );
    }
}
