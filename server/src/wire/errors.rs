//! Errors on the wire: every engine error leaves with the SQLSTATE PostgreSQL would give.
//!
//! datafusion-postgres sends every engine error as `XX000`; clients and tools branch on the
//! code (retry on 40001, "no such table" on 42P01), so [`SqlStateErrors`] rewrites each error
//! just before pgwire sends it.

use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, SchemaError};
use datafusion::sql::sqlparser::parser::ParserError;
use pgwire::api::{ClientInfo, ErrorHandler};
use pgwire::error::{ErrorInfo, PgWireError};

/// An engine error as pgwire carries it until [`SqlStateErrors`] gives it its SQLSTATE.
pub(crate) fn api_error(error: impl std::error::Error + Send + Sync + 'static) -> PgWireError {
    PgWireError::ApiError(Box::new(error))
}

/// An `ERROR` with SQLSTATE `code`, as the client gets it.
pub(crate) fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// The SQLSTATE for an error raised anywhere below the wire.
pub fn sqlstate(error: &(dyn std::error::Error + 'static)) -> &'static str {
    if error.is::<ParserError>() {
        return "42601";
    }
    let Some(df) = error.downcast_ref::<DataFusionError>() else {
        return "XX000";
    };
    if let Some(code) = quantatom_engine::sqlstate(df) {
        return code;
    }
    match Some(df.find_root()) {
        Some(DataFusionError::SQL(..)) => "42601",
        Some(DataFusionError::Plan(message)) => plan_sqlstate(message),
        Some(DataFusionError::SchemaError(schema_error, _)) => match schema_error.as_ref() {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            _ => "42P16",
        },
        Some(DataFusionError::NotImplemented(_)) => "0A000",
        Some(DataFusionError::ResourcesExhausted(_)) => "53200",
        // A NULL where the target's column (a cube's coordinate) cannot hold one.
        Some(DataFusionError::Execution(message))
            if message.contains("has null but schema specifies non-nullable") =>
        {
            "23502"
        }
        Some(DataFusionError::ArrowError(arrow, _)) => match arrow.as_ref() {
            ArrowError::InvalidArgumentError(message)
                if message.contains("non-nullable but contains null values") =>
            {
                "23502"
            }
            // A value beyond a decimal's precision (PostgreSQL: numeric field overflow).
            ArrowError::InvalidArgumentError(message)
                if message.contains("is too large to store in a Decimal") =>
            {
                "22003"
            }
            ArrowError::DivideByZero => "22012",
            ArrowError::ArithmeticOverflow(_) => "22003",
            ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
            _ => "XX000",
        },
        _ => "XX000",
    }
}

/// The SQLSTATE a client gets for `error`, before or after [`SqlStateErrors`] rewrote it.
pub(crate) fn wire_sqlstate(error: &PgWireError) -> &str {
    match error {
        PgWireError::UserError(info) => info.code.as_str(),
        PgWireError::ApiError(inner) => sqlstate(inner.as_ref()),
        _ => "XX000",
    }
}

/// Plan errors carry no kind, only text; these are the ones clients branch on.
fn plan_sqlstate(message: &str) -> &'static str {
    if message.contains("not found") && message.starts_with("table") {
        "42P01"
    } else if message.contains("Invalid function") || message.contains("No function matches") {
        "42883"
    } else if message.contains("Cannot infer common") || message.contains("Cannot coerce") {
        "42804"
    } else {
        "42000"
    }
}

/// PostgreSQL's words for DataFusion's `table 'quantatom.public.t' not found`: `relation "t"
/// does not exist`, the table named as a query in the default schema names it.
fn undefined_table(message: &str) -> Option<String> {
    let (_, quoted) = message.split_once('\'')?;
    let (name, _) = quoted.rsplit_once('\'')?;
    let name = name
        .strip_prefix(quantatom_engine::CATALOG)
        .and_then(|name| name.strip_prefix('.'))
        .unwrap_or(name);
    let name = name.strip_prefix("public.").unwrap_or(name);
    Some(format!("relation \"{name}\" does not exist"))
}

/// The [`ErrorHandler`] that gives engine errors their SQLSTATE.
#[derive(Debug, Default)]
pub(crate) struct SqlStateErrors;

impl ErrorHandler for SqlStateErrors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        if let PgWireError::ApiError(inner) = error {
            let code = sqlstate(inner.as_ref());
            let message = match inner.downcast_ref::<DataFusionError>() {
                // Quantatom's own errors are worded for the user already.
                Some(df) => match df.find_root() {
                    DataFusionError::External(own) => own.to_string(),
                    DataFusionError::Plan(message) if code == "42P01" => {
                        undefined_table(message).unwrap_or_else(|| df.strip_backtrace())
                    }
                    _ => df.strip_backtrace(),
                },
                None => inner.to_string(),
            };
            tracing::debug!(code, %message, "query failed");
            *error = PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                code.into(),
                message,
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undefined_table_is_named_as_postgresql_names_it() {
        for (message, expected) in [
            (
                "table 'quantatom.public.nosuch' not found",
                "relation \"nosuch\" does not exist",
            ),
            (
                "table 'quantatom.dim.nosuch' not found",
                "relation \"dim.nosuch\" does not exist",
            ),
            (
                "table 'other.s.it's' not found",
                "relation \"other.s.it's\" does not exist",
            ),
        ] {
            assert_eq!(undefined_table(message).as_deref(), Some(expected));
        }
        assert_eq!(undefined_table("table nosuch not found"), None);
    }

    #[test]
    fn engine_errors_have_postgresql_sqlstates() {
        let execution = |message: &str| DataFusionError::Execution(message.to_owned());
        let arrow = |error| DataFusionError::ArrowError(Box::new(error), None);
        for (error, code) in [
            (
                arrow(ArrowError::InvalidArgumentError(
                    "12345.7 is too large to store in a Decimal128 of precision 2. Max is 9.9"
                        .to_owned(),
                )),
                "22003",
            ),
            (execution("something else"), "XX000"),
        ] {
            assert_eq!(sqlstate(&error), code, "{error}");
        }
    }
}
