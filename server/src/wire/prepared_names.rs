//! Prepared statements named by SQL: `PREPARE`, `EXECUTE`, `DEALLOCATE [ALL]`, and the
//! deallocation `DISCARD ALL` does, as PostgreSQL has them. psycopg sends `DEALLOCATE ALL`
//! after a failed transaction when it has prepared statements, and `DEALLOCATE name` for a
//! statement it prepared through the protocol; DataFusion would look for a statement named
//! `all`, and knows only its own.
//!
//! pgwire's statement store can forget a statement by name but cannot list them, so a
//! connection remembers the names it parsed, in [`PreparedNames`]. The statements of SQL
//! `PREPARE` are kept there too, analysed as any query is before it runs: DataFusion's own
//! store optimises a statement without analysing it first, which types numbers unlike
//! PostgreSQL and panics on some plans (`DISTINCT ON`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use datafusion::common::metadata::ScalarAndMetadata;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Execute, Expr, LogicalPlan, Prepare, Statement as PlanStatement};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;

use datafusion::sql::sqlparser::ast::{DataType, DiscardObject, Ident, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::error::{PgWireError, PgWireResult};
use quantatom_udfs::postgres_cast;

use super::errors::{api_error, user_error};
use super::text_types::result_fields;

/// What a query text asks of a connection's prepared statements.
#[derive(Debug, PartialEq)]
pub(crate) enum PreparedStatements {
    /// `DEALLOCATE ALL` (or `DEALLOCATE PREPARE ALL`): forget every one.
    DeallocateAll,
    /// `DISCARD ALL`: forget every one, then reset the session as the settings hook does.
    DiscardAll,
    /// SQL `PREPARE name [(data_types)] AS statement`: one more, by the name as written.
    Prepare(WrittenPrepare),
    /// `DEALLOCATE name`: forget one, which may have been prepared through the protocol
    /// (psycopg deallocates its statements so when it has prepared too many).
    Deallocate(Ident),
    /// `EXECUTE name [(parameters)]`: run one prepared with SQL `PREPARE`.
    Execute(Box<Statement>),
}

impl PreparedStatements {
    /// What `query` asks, when it is one of these statements; `None` for anything else. Only
    /// texts that start with one of their keywords are parsed.
    pub(crate) fn parse(query: &str) -> Option<Self> {
        let start = query.trim_start();
        let keyword = start.get(..7)?;
        if !["dealloc", "discard", "prepare", "execute"]
            .iter()
            .any(|word| keyword.eq_ignore_ascii_case(word))
        {
            return None;
        }
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, start).ok()?;
        let [statement] = statements.as_slice() else {
            return None;
        };
        match statement {
            Statement::Deallocate { name, .. }
                if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") =>
            {
                Some(Self::DeallocateAll)
            }
            Statement::Discard {
                object_type: DiscardObject::ALL,
            } => Some(Self::DiscardAll),
            Statement::Prepare {
                name,
                data_types,
                statement,
            } => Some(Self::Prepare(WrittenPrepare {
                name: name.clone(),
                data_types: data_types.clone(),
                statement: statement.clone(),
            })),
            Statement::Deallocate { name, .. } => Some(Self::Deallocate(name.clone())),
            Statement::Execute { .. } => Some(Self::Execute(Box::new(statement.clone()))),
            _ => None,
        }
    }
}

/// SQL `PREPARE name [(data_types)] AS statement` as written: planned when it runs, and again
/// whenever what its statement reads may have changed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WrittenPrepare {
    pub(crate) name: Ident,
    pub(crate) data_types: Vec<DataType>,
    pub(crate) statement: Box<Statement>,
}

/// The statements a connection prepared: the names of those stored by a Parse, and the plans
/// of those prepared with SQL `PREPARE`, which are kept apart.
#[derive(Debug, Default)]
pub(crate) struct PreparedNames {
    protocol: Mutex<BTreeSet<String>>,
    sql: Mutex<HashMap<String, Arc<SqlPrepared>>>,
}

/// A statement prepared with SQL `PREPARE`: its analysed plan, the tag it answers with when it
/// is a data change, and what it was planned from, when (the plan epoch then).
#[derive(Debug)]
pub(crate) struct SqlPrepared {
    pub(crate) prepare: Prepare,
    pub(crate) tag: Option<&'static str>,
    pub(crate) written: WrittenPrepare,
    pub(crate) planned_at: u64,
}

impl SqlPrepared {
    /// The plan `EXECUTE` runs with `parameters` ([`bind_execute`]).
    pub(crate) fn bound(
        &self,
        state: &SessionState,
        parameters: &[Expr],
    ) -> PgWireResult<LogicalPlan> {
        bind_execute(state, &self.prepare, parameters.to_vec())
    }

    /// Whether `replanned` answers as this plan does: the same tag, or columns of the same
    /// names and PostgreSQL types (a `timestamptz` is one whatever the session's time zone).
    /// PostgreSQL refuses to run a statement planned again otherwise (`0A000` `cached plan
    /// must not change result type`), since its client was told the columns.
    pub(crate) fn answers_as(&self, replanned: &SqlPrepared) -> PgWireResult<bool> {
        let columns = |prepared: &SqlPrepared| -> PgWireResult<Vec<(String, Type)>> {
            let schema = Arc::clone(prepared.prepare.input.schema());
            Ok(
                result_fields(schema.as_arrow(), &Format::UnifiedText, None)?
                    .into_iter()
                    .map(|field| (field.name().to_owned(), field.datatype().clone()))
                    .collect(),
            )
        };
        Ok(self.tag == replanned.tag
            && (self.tag.is_some() || columns(self)? == columns(replanned)?))
    }
}

/// The name and the parameters of `execute`, an `EXECUTE name [(parameters)]` plan.
pub(crate) fn executed_statement(execute: &LogicalPlan) -> PgWireResult<(&str, &[Expr])> {
    match execute {
        LogicalPlan::Statement(PlanStatement::Execute(Execute {
            name, parameters, ..
        })) => Ok((name, parameters)),
        _ => Err(user_error("XX000", "EXECUTE expected")),
    }
}

/// `name` as PostgreSQL (and DataFusion's planner) folds it: its ASCII letters in lower case
/// unless quoted.
pub(crate) fn folded(name: &Ident) -> String {
    match name.quote_style {
        Some(_) => name.value.clone(),
        None => name.value.to_ascii_lowercase(),
    }
}

/// The error for a statement `name` that is not prepared (SQLSTATE 26000).
pub(crate) fn not_prepared(name: &str) -> PgWireError {
    user_error(
        "26000",
        format!("prepared statement \"{name}\" does not exist"),
    )
}

impl PreparedNames {
    /// A statement stored under `name` by a Parse (the unnamed one is not kept).
    pub(crate) fn parsed(&self, name: &str) {
        if !name.is_empty() {
            self.protocol
                .lock()
                .expect("prepared names poisoned")
                .insert(name.to_owned());
        }
    }

    /// The statement a Parse stored under `name` was closed (a Close message).
    pub(crate) fn closed(&self, name: &str) {
        self.protocol
            .lock()
            .expect("prepared names poisoned")
            .remove(name);
    }

    /// Forgets the statement a Parse stored under the name `DEALLOCATE` wrote as `name`: that
    /// stored name, when there was one.
    pub(crate) fn forget_parsed(&self, name: &Ident) -> Option<String> {
        let name = folded(name);
        let mut parsed = self.protocol.lock().expect("prepared names poisoned");
        parsed.remove(&name).then_some(name)
    }

    /// Keeps the statement SQL `PREPARE` planned as `prepared` (its name folded by the
    /// planner); `42P05` when one of that name is kept already.
    pub(crate) fn prepare(&self, prepared: SqlPrepared) -> PgWireResult<()> {
        let mut sql = self.sql.lock().expect("prepared names poisoned");
        let name = &prepared.prepare.name;
        if sql.contains_key(name) {
            return Err(user_error(
                "42P05",
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        sql.insert(name.clone(), Arc::new(prepared));
        Ok(())
    }

    /// The statement SQL `PREPARE` stored under `name` (as the planner folded it); `26000`
    /// when there is none.
    pub(crate) fn sql_prepared(&self, name: &str) -> PgWireResult<Arc<SqlPrepared>> {
        let sql = self.sql.lock().expect("prepared names poisoned");
        sql.get(name).cloned().ok_or_else(|| not_prepared(name))
    }

    /// Forgets the statement SQL `PREPARE` stored under the name `DEALLOCATE` wrote as
    /// `name`; whether there was one.
    pub(crate) fn forget_sql_prepared(&self, name: &Ident) -> bool {
        let mut sql = self.sql.lock().expect("prepared names poisoned");
        sql.remove(&folded(name)).is_some()
    }

    /// Keeps `replanned` in place of the statement of its name, when that is still kept; the
    /// statement to run either way.
    pub(crate) fn replanned(&self, replanned: SqlPrepared) -> Arc<SqlPrepared> {
        let replanned = Arc::new(replanned);
        let mut sql = self.sql.lock().expect("prepared names poisoned");
        if let Some(kept) = sql.get_mut(&replanned.prepare.name) {
            *kept = Arc::clone(&replanned);
        }
        replanned
    }

    /// Forgets every statement: the SQL ones, and the names stored by Parse, returned to be
    /// removed from the connection's statement store.
    pub(crate) fn take_all(&self) -> Vec<String> {
        self.sql.lock().expect("prepared names poisoned").clear();
        std::mem::take(&mut *self.protocol.lock().expect("prepared names poisoned"))
            .into_iter()
            .collect()
    }
}

/// The plan `EXECUTE` runs: `prepared`'s, its `parameters` bound. Each parameter must be a
/// constant; it is cast to the type the statement declares or inferred, as PostgreSQL casts
/// ([`postgres_cast`]). The wrong number of parameters is `42601`.
fn bind_execute(
    state: &SessionState,
    prepared: &Prepare,
    parameters: Vec<Expr>,
) -> PgWireResult<LogicalPlan> {
    // As in PostgreSQL, a statement without parameters ignores those given.
    if !prepared.fields.is_empty() && parameters.len() != prepared.fields.len() {
        return Err(user_error(
            "42601",
            format!(
                "wrong number of parameters for prepared statement \"{}\": {} expected, {} given",
                prepared.name,
                prepared.fields.len(),
                parameters.len()
            ),
        ));
    }
    let context = SimplifyContext::builder()
        .with_schema(Arc::clone(prepared.input.schema()))
        .with_config_options(Arc::clone(state.config_options()))
        .with_query_execution_start_time(state.execution_props().query_execution_start_time)
        .build();
    let simplifier = ExprSimplifier::new(context);
    let values = parameters
        .into_iter()
        .zip(&prepared.fields)
        .map(|(parameter, field)| {
            // Cast as PostgreSQL casts: to an integer, rounded (2.5 is 3).
            postgres_cast(parameter, Arc::clone(field), &DFSchema::empty())
        })
        .map(|parameter| match simplifier.simplify(parameter) {
            Ok(Expr::Literal(value, metadata)) => Ok(ScalarAndMetadata::new(value, metadata)),
            Ok(other) => Err(user_error(
                "0A000",
                format!("EXECUTE takes constant parameters, not {other}"),
            )),
            Err(error) => Err(api_error(error)),
        })
        .collect::<PgWireResult<Vec<_>>>()?;
    prepared
        .input
        .as_ref()
        .clone()
        .replace_params_with_values(&ParamValues::List(values))
        .map_err(api_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_about_prepared_statements_are_recognised() {
        for all in [
            "DEALLOCATE ALL",
            "  deallocate prepare all;",
            "DeAllocate All",
        ] {
            assert_eq!(
                PreparedStatements::parse(all),
                Some(PreparedStatements::DeallocateAll),
                "{all}"
            );
        }
        assert_eq!(
            PreparedStatements::parse("DISCARD ALL"),
            Some(PreparedStatements::DiscardAll)
        );
        let Some(PreparedStatements::Prepare(written)) =
            PreparedStatements::parse("PREPARE \"Q\" (int) AS SELECT $1")
        else {
            panic!("PREPARE not recognised");
        };
        assert_eq!(
            (written.name, written.data_types),
            (Ident::with_quote('"', "Q"), vec![DataType::Int(None)])
        );
        // A statement named "all", and other statements.
        for other in ["DISCARD PLANS", "SELECT 1", "", "DEALLOCATE ALL; SELECT 1"] {
            assert_eq!(PreparedStatements::parse(other), None, "{other}");
        }
    }

    #[test]
    fn deallocate_names_one_statement() {
        assert_eq!(
            PreparedStatements::parse("DEALLOCATE \"all\""),
            Some(PreparedStatements::Deallocate(Ident::with_quote(
                '"', "all"
            )))
        );
        assert_eq!(
            PreparedStatements::parse("deallocate prepare _pg3_0"),
            Some(PreparedStatements::Deallocate(Ident::new("_pg3_0")))
        );
        let names = PreparedNames::default();
        names.parsed("_pg3_0");
        names.parsed("S_1");
        assert_eq!(
            names.forget_parsed(&Ident::new("_PG3_0")).as_deref(),
            Some("_pg3_0")
        );
        assert_eq!(names.forget_parsed(&Ident::new("_pg3_0")), None);
        assert_eq!(names.forget_parsed(&Ident::new("S_1")), None);
        names.parsed("S_2");
        names.closed("S_2");
        assert_eq!(names.forget_parsed(&Ident::new("S_2")), None);
        assert_eq!(
            names
                .forget_parsed(&Ident::with_quote('"', "S_1"))
                .as_deref(),
            Some("S_1")
        );
    }

    #[test]
    fn names_are_taken_once() {
        let names = PreparedNames::default();
        names.parsed("_pg3_0");
        names.parsed("");
        let prepare = |name: &str| SqlPrepared {
            tag: None,
            written: WrittenPrepare {
                name: Ident::new(name),
                data_types: Vec::new(),
                statement: Box::new(
                    Parser::parse_sql(&PostgreSqlDialect {}, "SELECT 1").unwrap()[0].clone(),
                ),
            },
            planned_at: 0,
            prepare: Prepare {
                name: name.to_owned(),
                fields: Vec::new(),
                input: Arc::new(datafusion::logical_expr::LogicalPlan::EmptyRelation(
                    datafusion::logical_expr::EmptyRelation {
                        produce_one_row: true,
                        schema: Arc::new(datafusion::common::DFSchema::empty()),
                    },
                )),
            },
        };
        names.prepare(prepare("q")).unwrap();
        let again = names.prepare(prepare("q")).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        assert!(names.sql_prepared("q").is_ok());
        assert_eq!(names.take_all(), ["_pg3_0"]);
        assert_eq!(names.take_all(), Vec::<String>::new());
        assert!(names.sql_prepared("q").is_err());
        names.prepare(prepare("q")).unwrap();
        assert!(!names.forget_sql_prepared(&Ident::with_quote('"', "Q")));
        assert!(names.forget_sql_prepared(&Ident::new("Q")));
    }
}
