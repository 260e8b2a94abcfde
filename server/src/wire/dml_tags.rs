//! `UPDATE` and `DELETE` answer with their command tag and row count (`UPDATE 3`), as
//! PostgreSQL does. datafusion-postgres answers them like a query returning one `count` row
//! (it tags only `INSERT`), which drivers would report as a result set instead of a row count.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};

use super::errors::api_error;

/// The command tag of `statement` when it is one datafusion-postgres answers as a query.
pub(crate) fn dml_tag(statement: &Statement) -> Option<&'static str> {
    match statement {
        Statement::Update { .. } => Some("UPDATE"),
        Statement::Delete(_) => Some("DELETE"),
        _ => None,
    }
}

/// The command tag a data change `statement` answers with, whoever runs it: `dml_tag`'s, or
/// `INSERT` (an `EXECUTE` of a prepared one runs it here, where a cube's writes are planned as
/// inserts into a sink whatever the statement was); `None` for a query.
pub(crate) fn change_tag(statement: &Statement) -> Option<&'static str> {
    match statement {
        Statement::Insert(_) => Some("INSERT"),
        other => dml_tag(other),
    }
}

/// Runs a data change planned as `plan` and answers with `tag` and the rows it changed
/// (`INSERT 0 3`, with the object id PostgreSQL still writes for an insert).
pub(crate) async fn run_tagged(
    session: &SessionContext,
    plan: LogicalPlan,
    tag: &str,
) -> PgWireResult<Response> {
    let frame = session
        .execute_logical_plan(plan)
        .await
        .map_err(api_error)?;
    let batches = frame.collect().await.map_err(api_error)?;
    let changed: u64 = batches
        .iter()
        .filter_map(|batch| batch.column_by_name("count"))
        .filter_map(|count| count.as_primitive_opt::<UInt64Type>())
        .flat_map(|count| count.iter().flatten())
        .sum();
    let tagged = match tag {
        "INSERT" => Tag::new(tag).with_oid(0),
        _ => Tag::new(tag),
    };
    Ok(Response::Execution(tagged.with_rows(changed as usize)))
}

/// `query`, datafusion-postgres's answer to a statement tagged `tag` in the simple protocol
/// (rows in text), as that tag and the count it holds.
pub(crate) async fn retagged(tag: &str, mut query: QueryResponse) -> PgWireResult<Response> {
    let mut changed = 0usize;
    while let Some(row) = query.data_rows.next().await {
        let row = row?;
        // One field: a 4-byte length, then the count's digits.
        let digits = row.data.get(4..).unwrap_or_default();
        changed += std::str::from_utf8(digits)
            .ok()
            .and_then(|digits| digits.parse::<usize>().ok())
            .ok_or_else(|| {
                PgWireError::ApiError(format!("{tag} did not answer with a row count").into())
            })?;
    }
    Ok(Response::Execution(Tag::new(tag).with_rows(changed)))
}
