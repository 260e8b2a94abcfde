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
use pgwire::error::{PgWireError, PgWireResult};
use quantatom_udfs::postgres_cast;

use super::errors::{api_error, user_error};

/// What a query text asks of a connection's prepared statements.
#[derive(Debug, PartialEq)]
pub(crate) enum PreparedStatements {
    /// `DEALLOCATE ALL` (or `DEALLOCATE PREPARE ALL`): forget every one.
    DeallocateAll,
    /// `DISCARD ALL`: forget every one, then reset the session as the settings hook does.
    DiscardAll,
    /// SQL `PREPARE name [(data_types)] AS statement`: one more, by the name as written.
    Prepare {
        name: Ident,
        data_types: Vec<DataType>,
        statement: Box<Statement>,
    },
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
            } => Some(Self::Prepare {
                name: name.clone(),
                data_types: data_types.clone(),
                statement: statement.clone(),
            }),
            Statement::Deallocate { name, .. } => Some(Self::Deallocate(name.clone())),
            Statement::Execute { .. } => Some(Self::Execute(Box::new(statement.clone()))),
            _ => None,
        }
    }
}

/// The statements a connection prepared: the names of those stored by a Parse, and the plans
/// of those prepared with SQL `PREPARE`, which are kept apart.
#[derive(Debug, Default)]
pub(crate) struct PreparedNames {
    protocol: Mutex<BTreeSet<String>>,
    sql: Mutex<HashMap<String, Arc<SqlPrepared>>>,
}

/// A statement prepared with SQL `PREPARE`: its analysed plan, and the tag it answers with
/// when it is a data change.
#[derive(Debug)]
pub(crate) struct SqlPrepared {
    pub(crate) prepare: Prepare,
    pub(crate) tag: Option<&'static str>,
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

    /// The plan `execute` (an `EXECUTE name [(parameters)]` plan) runs: the statement SQL
    /// `PREPARE` stored under its name, its parameters bound ([`bind_execute`]); with the tag
    /// it answers with when it is a data change.
    pub(crate) fn bound(
        &self,
        state: &SessionState,
        execute: &LogicalPlan,
    ) -> PgWireResult<(LogicalPlan, Option<&'static str>)> {
        let LogicalPlan::Statement(PlanStatement::Execute(Execute {
            name, parameters, ..
        })) = execute
        else {
            return Err(user_error("XX000", "EXECUTE expected"));
        };
        let prepared = self.sql_prepared(name)?;
        let plan = bind_execute(state, &prepared.prepare, parameters.clone())?;
        Ok((plan, prepared.tag))
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
        let Some(PreparedStatements::Prepare {
            name, data_types, ..
        }) = PreparedStatements::parse("PREPARE \"Q\" (int) AS SELECT $1")
        else {
            panic!("PREPARE not recognised");
        };
        assert_eq!(
            (name, data_types),
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
