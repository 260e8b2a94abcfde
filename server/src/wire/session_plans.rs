//! The connection's plan cache on the wire: plain queries, simple or prepared, are planned once
//! per query text and run from the kept plan (see [`quantatom_engine::plan_reuse`]); every
//! other statement goes through datafusion-postgres's handlers, and those that may change what
//! a query means advance the engine's plan epoch.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, OnceLock};

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, Schema, TimeUnit};
use datafusion::common::{DataFusionError, ParamValues, Result as DfResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{LogicalPlan, Prepare, Statement as PlanStatement};
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use futures::{StreamExt, stream};
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{QueryResponse, Response};
use pgwire::error::PgWireResult;
use pgwire::types::format::FormatOptions;
use quantatom_engine::metadata::SessionAccess;
use quantatom_engine::plan_reuse::{PlanCache, PlanEpoch, ReusablePlan, by_position};
use quantatom_engine::postgres_column_names::{
    OutputNames, distinguish_repeated_items, name_nested_columns, resolve_order_by_keys,
};
use quantatom_engine::postgres_literals::{
    type_cast_parameters, type_numeric_parameters, type_output_literals, type_untyped_parameters,
};
use quantatom_udfs::DEFAULT_DECIMAL;
use tracing::Instrument;

use super::answers::KeptAnswers;
use super::array_expansion::rewrite_array_expansions;
use super::array_subquery::rewrite_array_subqueries;
use super::data_rows::data_rows;
use super::direct_planning::needs_direct_planning;
use super::dml_tags::{change_tag, dml_tag};
use super::errors::{api_error, user_error};
use super::interval_literals::rewrite_interval_literals;
use super::prepared_names::{SqlPrepared, WrittenPrepare};
use super::reg_literals::with_reg_literals_resolvable;
use super::text_types::{for_the_wire, result_fields, with_text_parameters};
use super::values_types::type_values_columns;

/// datafusion-postgres's parser with its catalog-compatibility rewrites; building one parses a
/// list of SQL snippets, so there is one per process.
static COMPATIBILITY_PARSER: LazyLock<PostgresCompatibilityParser> =
    LazyLock::new(PostgresCompatibilityParser::new);

/// What to do with a simple-protocol query string.
pub(crate) enum SimpleQueryPlan {
    /// One plain query with a plan worth keeping.
    Reusable(Arc<KeptQuery>),
    /// One plain query that must be planned afresh for every run (it calls `now()`, ...).
    Once(LogicalPlan),
    /// Anything else: datafusion-postgres's handler runs it. `changes_plans` when a statement
    /// may change what queries mean (DDL, `SET`, ...); `tags` holds, per statement, the
    /// command tag its answer must be given (see [`super::dml_tags`]).
    Delegate {
        changes_plans: bool,
        tags: Vec<Option<&'static str>>,
    },
    /// Several statements (their texts): each runs to completion before the next starts, as
    /// in PostgreSQL (a block's `COMMIT` must follow its writes).
    Several(Vec<String>),
}

/// A plain query's kept plan and, once it ran as a prepared statement, the parameter types the
/// client was told (working them out walks the plan several times, on every Bind otherwise).
pub(crate) struct KeptQuery {
    plan: ReusablePlan<KeptAnswers>,
    wire_parameter_types: OnceLock<Vec<Type>>,
}

impl KeptQuery {
    /// The types the client encodes the parameters in: `describe`'s answer, worked out at the
    /// first run and kept with the plan.
    pub(crate) fn wire_parameter_types(
        &self,
        describe: impl FnOnce() -> PgWireResult<Vec<Type>>,
    ) -> PgWireResult<&[Type]> {
        if let Some(types) = self.wire_parameter_types.get() {
            return Ok(types);
        }
        let types = describe()?;
        Ok(self.wire_parameter_types.get_or_init(|| types))
    }

    /// The types DataFusion inferred for `$1`, `$2`, ...
    pub(crate) fn parameter_types(&self) -> &[Option<DataType>] {
        self.plan.parameter_types()
    }

    fn kept(plan: ReusablePlan<KeptAnswers>) -> Arc<Self> {
        Arc::new(Self {
            plan,
            wire_parameter_types: OnceLock::new(),
        })
    }
}

/// One connection's plans and how it runs them.
pub(crate) struct SessionPlans {
    cache: PlanCache<KeptQuery>,
    session: Arc<SessionContext>,
}

impl SessionPlans {
    /// Plans of queries run in `session`, kept while `epoch` stands still.
    pub(crate) fn new(session: Arc<SessionContext>, epoch: Arc<PlanEpoch>) -> Self {
        Self {
            cache: PlanCache::new(epoch),
            session,
        }
    }

    /// The plan epoch now: it moves when anything a plan reads may have changed.
    pub(crate) fn epoch(&self) -> u64 {
        self.cache.plans().epoch().current()
    }

    /// Records that a statement which may change what queries mean has run.
    pub(crate) fn statement_changed_plans(&self) {
        self.cache.plans().epoch().advance();
    }

    /// Decides how to run the simple-protocol string `query`, planning it when it is one plain
    /// query not seen before.
    pub(crate) async fn plan_simple_query(&self, query: &str) -> PgWireResult<SimpleQueryPlan> {
        if let Some(plan) = self.cache.plans().get(query) {
            return Ok(SimpleQueryPlan::Reusable(plan));
        }
        // Boxed, as every rare and large step of a query is: planning's state (KiBs) would
        // otherwise be part of every query's future, which is moved whole into its box.
        Box::pin(self.plan_new_simple_query(query))
            .instrument(tracing::info_span!("planning"))
            .await
    }

    /// Plans a query the session has no kept plan for ([`Self::plan_simple_query`]).
    async fn plan_new_simple_query(&self, query: &str) -> PgWireResult<SimpleQueryPlan> {
        let plain = match parse_text(query) {
            ParsedText::Query(plain) => plain,
            ParsedText::Other {
                changes_plans,
                tags,
                statements,
            } => {
                if statements.len() > 1 {
                    return Ok(SimpleQueryPlan::Several(statements));
                }
                return Ok(SimpleQueryPlan::Delegate {
                    changes_plans,
                    tags,
                });
            }
        };
        let epoch = self.cache.plans().epoch().current();
        let state = self.session.state();
        let plan = plan_query(&state, plain, &[]).await?;
        match ReusablePlan::try_new(&state, &plan).map_err(api_error)? {
            Some(reusable) => {
                let reusable = KeptQuery::kept(reusable);
                self.cache
                    .plans()
                    .insert(query, Arc::clone(&reusable), epoch);
                Ok(SimpleQueryPlan::Reusable(reusable))
            }
            None => Ok(SimpleQueryPlan::Once(plan)),
        }
    }

    /// How to run a prepared statement (`sql` as datafusion-postgres's parser rewrote it, with
    /// the parameter types the client `declared`, `plan` as it was planned): plain queries
    /// here, reused when they can be, everything else by datafusion-postgres's handler.
    pub(crate) fn plan_prepared_query(
        &self,
        sql: &str,
        declared: &[Option<Type>],
        statement: &Statement,
        plan: &LogicalPlan,
    ) -> PgWireResult<PreparedQueryPlan> {
        if !matches!(statement, Statement::Query(_)) {
            return Ok(PreparedQueryPlan::Delegate);
        }
        let sql = &*plan_key(sql, declared);
        if let Some(reusable) = self.cache.plans().get(sql) {
            return Ok(PreparedQueryPlan::Reusable(reusable));
        }
        let epoch = self.cache.plans().epoch().current();
        let reusable = tracing::info_span!("planning")
            .in_scope(|| ReusablePlan::try_new(&self.session.state(), plan))
            .map_err(api_error)?;
        let Some(reusable) = reusable else {
            return Ok(PreparedQueryPlan::Once);
        };
        let reusable = KeptQuery::kept(reusable);
        self.cache.plans().insert(sql, Arc::clone(&reusable), epoch);
        Ok(PreparedQueryPlan::Reusable(reusable))
    }

    /// Runs a plan planned for one run only, encoding its rows in `format`.
    pub(crate) async fn run_once(
        &self,
        plan: LogicalPlan,
        format: &Format,
        options: Arc<FormatOptions>,
    ) -> PgWireResult<Response> {
        run_planned(&self.session, plan, format, options)
            .await
            .map(Response::Query)
    }

    /// Runs `plan` with `parameters` bound, encoding its rows in `format`: replays the answer
    /// kept beside its physical plan when there is one (see [`super::answers`]).
    pub(crate) async fn run(
        &self,
        query: &KeptQuery,
        parameters: ParamValues,
        format: &Format,
        options: Arc<FormatOptions>,
    ) -> PgWireResult<Response> {
        let snapshot = self.cache.snapshot(&self.session);
        let runnable = query
            .plan
            .physical_plan(&snapshot.state, parameters)
            .await
            .map_err(api_error)?;
        if let Some(answers) = &runnable.beside
            && let Some(answer) = answers.replay(format, &options)
        {
            return Ok(Response::Query(answer));
        }
        let beside = runnable.beside.clone();
        let plan = runnable.into_plan().map_err(api_error)?;
        let batches = execute_stream(plan, Arc::clone(&snapshot.task)).map_err(api_error)?;
        let schema = query.plan.schema().as_arrow();
        let mut response = respond(schema, batches, format, Arc::clone(&options))?;
        if let Some(answers) = beside {
            let rows = std::mem::replace(&mut response.data_rows, Box::pin(stream::empty()));
            response.data_rows = answers.record(format, options, &response.row_schema, rows);
        }
        Ok(Response::Query(response))
    }
}

/// Runs `plan` in `session`, its rows encoded in `format` as they come.
pub(crate) async fn run_planned(
    session: &SessionContext,
    plan: LogicalPlan,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<QueryResponse> {
    // Boxed, as every rare and large step of a query is (see `plan_simple_query`).
    let frame = Box::pin(session.execute_logical_plan(plan))
        .await
        .map_err(api_error)?;
    let schema = Arc::clone(frame.schema().inner());
    let batches = frame.execute_stream().await.map_err(api_error)?;
    respond(&schema, batches, format, options)
}

/// The response streaming `batches` (rows of `schema`) in `format`.
fn respond(
    schema: &Schema,
    batches: SendableRecordBatchStream,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(result_fields(schema, format, Some(options))?);
    let row_fields = Arc::clone(&fields);
    let rows = batches
        .map(
            move |batch| -> Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> {
                match batch
                    .map_err(api_error)
                    .and_then(|batch| for_the_wire(batch, &row_fields))
                {
                    Ok(batch) => Box::new(data_rows(Arc::clone(&row_fields), batch)),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                }
            },
        )
        .flat_map(stream::iter);
    Ok(QueryResponse::new(fields, rows))
}

/// How the extended protocol runs a prepared statement.
pub(crate) enum PreparedQueryPlan {
    /// A plain query whose plan is kept for the next run.
    Reusable(Arc<KeptQuery>),
    /// A plain query planned afresh for every run (see [`ReusablePlan::try_new`]).
    Once,
    /// Not a plain query: datafusion-postgres's handler (and the hooks) run it.
    Delegate,
}

/// One plain query, ready for DataFusion.
pub(crate) struct PlainQuery {
    /// As written when it must bypass datafusion-pg-catalog's rewrites (see
    /// [`super::direct_planning`]), else after those rewrites and ours
    /// ([`super::reg_literals`], [`super::array_subquery`]).
    pub(crate) statement: Statement,
    /// Its output columns' PostgreSQL names, from the query as the client wrote it (the
    /// rewrites alias and replace SELECT items, and repeated ones are given aliases of their
    /// own: see [`distinguish_repeated_items`]).
    names: OutputNames,
}

impl PlainQuery {
    /// `statement`, whose columns PostgreSQL names `names`, made ready for DataFusion: columns
    /// named as PostgreSQL names them, `ORDER BY` keys resolved, repeated items told apart,
    /// `VALUES` columns typed, interval literals read as PostgreSQL reads them.
    fn new(mut statement: Statement, names: OutputNames) -> Self {
        rewrite_interval_literals(&mut statement);
        name_nested_columns(&mut statement);
        resolve_order_by_keys(&mut statement);
        distinguish_repeated_items(&mut statement);
        type_values_columns(&mut statement);
        Self { statement, names }
    }
}

/// What a query string holds, as the server plans it.
pub(crate) enum ParsedText {
    /// One plain query.
    Query(PlainQuery),
    /// Anything else (several statements, DDL, `SET`, ..., or text that does not parse, whose
    /// error datafusion-postgres reports): datafusion-postgres handles it. `changes_plans` when
    /// a statement may change what queries mean; `tags`, per statement, the command tag of a
    /// data change datafusion-postgres answers as a query; `statements`, when there are
    /// several, the text of each, to run one after another.
    Other {
        changes_plans: bool,
        tags: Vec<Option<&'static str>>,
        statements: Vec<String>,
    },
}

/// Parses `sql` the way both protocols plan plain queries.
pub(crate) fn parse_text(sql: &str) -> ParsedText {
    if let Some(statement) = needs_direct_planning(sql) {
        let names = OutputNames::of(&statement);
        return ParsedText::Query(PlainQuery::new(statement, names));
    }
    let reg_literals_resolvable = with_reg_literals_resolvable(sql);
    let Ok(mut statements) =
        COMPATIBILITY_PARSER.parse(reg_literals_resolvable.as_deref().unwrap_or(sql))
    else {
        return ParsedText::Other {
            changes_plans: false,
            tags: Vec::new(),
            statements: Vec::new(),
        };
    };
    if statements.len() != 1 || !matches!(statements[0], Statement::Query(_)) {
        let several = statements.len() > 1;
        return ParsedText::Other {
            changes_plans: statements.iter().any(may_change_plans),
            tags: statements.iter().map(dml_tag).collect(),
            statements: match several {
                true => statements.iter().map(Statement::to_string).collect(),
                false => Vec::new(),
            },
        };
    }
    let mut statement = statements.remove(0);
    rewrite_array_subqueries(&mut statement);
    rewrite_array_expansions(&mut statement);
    let names = match Parser::parse_sql(&PostgreSqlDialect {}, sql).as_deref() {
        Ok([written]) => OutputNames::of(written),
        _ => OutputNames::of(&statement),
    };
    ParsedText::Query(PlainQuery::new(statement, names))
}

/// The logical plan of a plain query, its parameters DataFusion leaves untyped given the types
/// the client `declared` (Arrow types, position by position; none in the simple protocol), its
/// output literals typed and its output columns named as PostgreSQL types and names them.
pub(crate) async fn plan_query(
    state: &SessionState,
    query: PlainQuery,
    declared: &[Option<DataType>],
) -> PgWireResult<LogicalPlan> {
    let plan = state
        .statement_to_plan(DfStatement::Statement(Box::new(query.statement)))
        .await
        .map_err(api_error)?;
    // `SELECT ... INTO` plans as DDL, which DataFusion runs without the analyzer that
    // enforces grants.
    if let (LogicalPlan::Ddl(_), Some(access)) = (&plan, SessionAccess::of(state.config_options()))
    {
        access
            .require_admin("create tables")
            .map_err(|e| api_error(DataFusionError::from(e)))?;
    }
    let plan = match declared.iter().any(Option::is_some) {
        true => type_untyped_parameters(plan, declared).map_err(api_error)?,
        false => plan,
    };
    type_numeric_parameters(plan)
        .and_then(|plan| typed_and_named(plan, &query.names))
        .map_err(api_error)
}

/// `plan` with its output literals typed and its output columns named as PostgreSQL types and
/// names them (`names`).
fn typed_and_named(plan: LogicalPlan, names: &OutputNames) -> DfResult<LogicalPlan> {
    type_output_literals(plan).and_then(|plan| names.apply(plan))
}

/// SQL `PREPARE name [(types)] AS statement`, a query or a data change, planned and analysed
/// as any plan is before it runs. A query is planned as [`plan_query`] plans one, so that
/// `EXECUTE` answers with PostgreSQL's column names and types (DataFusion alone names a column
/// `Int64(1) + Int64(2)`); without declared types, a parameter meeting a written number is
/// numeric. A parameter takes its declared type, else the type the plan gives it (a cast of
/// it, `$1::int`, gives its target), else text, as PostgreSQL infers one; more types may be
/// declared than the statement uses. Any other statement is refused, as PostgreSQL refuses it
/// (`42601`). `epoch` is the plan epoch as planning starts.
pub(crate) async fn plan_prepare(
    state: &SessionState,
    written: WrittenPrepare,
    epoch: u64,
) -> PgWireResult<SqlPrepared> {
    let tag = change_tag(&written.statement);
    let (statement, names) = match parse_text(&written.statement.to_string()) {
        ParsedText::Query(query) => (query.statement, Some(query.names)),
        ParsedText::Other { .. } => (written.statement.as_ref().clone(), None),
    };
    let declared = !written.data_types.is_empty();
    let prepare = Statement::Prepare {
        name: written.name.clone(),
        data_types: written.data_types.clone(),
        statement: Box::new(statement),
    };
    let plan = state
        .statement_to_plan(DfStatement::Statement(Box::new(prepare)))
        .await
        .map_err(api_error)?;
    let LogicalPlan::Statement(PlanStatement::Prepare(Prepare {
        name,
        fields: declared_fields,
        input,
    })) = plan
    else {
        return Err(user_error("42601", "PREPARE could not be planned"));
    };
    let input = Arc::unwrap_or_clone(input);
    let input = match names {
        None if tag.is_some() => Ok(input),
        None => {
            return Err(user_error(
                "42601",
                "PREPARE takes a SELECT, VALUES, INSERT, UPDATE or DELETE statement",
            ));
        }
        Some(names) if declared => typed_and_named(input, &names),
        Some(names) => {
            type_numeric_parameters(input).and_then(|plan| typed_and_named(plan, &names))
        }
    }
    .and_then(type_cast_parameters)
    .map_err(api_error)?;
    let typed = by_position(input.get_parameter_fields().map_err(api_error)?);
    let fields = (0..typed.len().max(declared_fields.len()))
        .map(|position| {
            let typed = typed.get(position).cloned().flatten().flatten();
            typed
                .or_else(|| declared_fields.get(position).cloned())
                .unwrap_or_else(|| Arc::new(Field::new("", DataType::Utf8, true)))
        })
        .collect();
    let input = state
        .analyzer()
        .execute_and_check(input, state.config_options(), |_, _| {})
        .map_err(api_error)?;
    Ok(SqlPrepared {
        prepare: Prepare {
            name,
            fields,
            input: Arc::new(input),
        },
        tag,
        written,
        planned_at: epoch,
    })
}

/// The Arrow type a parameter the client declared as `declared` is decoded into (by arrow-pg,
/// which reads a parameter as the client's type), for the types a query may use as they are;
/// `None` for other types (`unknown`, `uuid`, `json`, arrays), read as text.
fn declared_arrow_type(declared: &Type) -> Option<DataType> {
    Some(match *declared {
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => DEFAULT_DECIMAL,
        Type::BOOL => DataType::Boolean,
        Type::TEXT | Type::VARCHAR => DataType::Utf8,
        Type::DATE => DataType::Date32,
        Type::TIME => DataType::Time64(TimeUnit::Microsecond),
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        Type::INTERVAL => DataType::Interval(IntervalUnit::MonthDayNano),
        Type::BYTEA => DataType::Binary,
        _ => return None,
    })
}

/// The Arrow types of the parameters the client declared (Parse), position by position.
pub(crate) fn declared_parameter_types(declared: &[Option<Type>]) -> Vec<Option<DataType>> {
    declared
        .iter()
        .map(|declared| declared.as_ref().and_then(declared_arrow_type))
        .collect()
}

/// The key a parse result or a kept plan of `sql` is found by: its text, and the parameter
/// types the client declared when one types a parameter ([`declared_parameter_types`]), since
/// those type the parameters DataFusion leaves untyped (`SELECT $1`).
pub(crate) fn plan_key<'a>(sql: &'a str, declared: &[Option<Type>]) -> Cow<'a, str> {
    if declared
        .iter()
        .all(|declared| declared.as_ref().and_then(declared_arrow_type).is_none())
    {
        return Cow::Borrowed(sql);
    }
    let oids: Vec<_> = declared.iter().map(|t| t.as_ref().map(Type::oid)).collect();
    Cow::Owned(format!("{sql}\0{oids:?}"))
}

/// Decodes a portal's parameters, which DataFusion inferred as `inferred` and
/// datafusion-postgres's parser reported to the client as `wire_types`.
pub(crate) fn bind_parameters<S: Clone + Default>(
    portal: &Portal<S>,
    inferred: &[Option<DataType>],
    wire_types: &[Type],
) -> PgWireResult<ParamValues> {
    // arrow-pg cannot turn a number the client sent as an integer or a float into the decimal
    // DataFusion inferred (`amount > $1` with a float8 `$1`): such a value is decoded as sent,
    // then cast to the decimal here, so every way of running the plan binds the inferred type.
    let to_cast: Vec<Option<&DataType>> = inferred
        .iter()
        .enumerate()
        .map(|(index, inferred)| {
            let sent_as_number = matches!(
                portal.statement.parameter_types.get(index),
                Some(Some(
                    Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8
                ))
            );
            inferred
                .as_ref()
                .filter(|inferred| sent_as_number && inferred.is_decimal())
        })
        .collect();
    let decoded_as: Vec<Option<&DataType>> = inferred
        .iter()
        .zip(&to_cast)
        .map(|(inferred, cast)| inferred.as_ref().filter(|_| cast.is_none()))
        .collect();
    let wire: Vec<Option<&Type>> = wire_types.iter().map(Some).collect();
    let decoded = match with_text_parameters(portal, wire_types)? {
        Some(text_portal) => {
            deserialize_parameters_with_server_types(&text_portal, &decoded_as, &wire)
        }
        None => deserialize_parameters_with_server_types(portal, &decoded_as, &wire),
    }?;
    let ParamValues::List(mut values) = decoded else {
        return Ok(decoded);
    };
    for (value, decimal) in values.iter_mut().zip(&to_cast) {
        if let Some(decimal) = decimal {
            value.value = value.value.cast_to(decimal).map_err(|_| {
                user_error(
                    "22003",
                    format!("parameter {} is out of range for {decimal}", value.value),
                )
            })?;
        }
    }
    Ok(ParamValues::List(values))
}

/// Whether running `statement` may change what a query text means: anything but queries,
/// data changes (cubes are versioned), transaction control, cursors and `SHOW`.
pub(crate) fn may_change_plans(statement: &Statement) -> bool {
    !matches!(
        statement,
        Statement::Query(_)
            | Statement::Insert(_)
            | Statement::Update { .. }
            | Statement::Delete(_)
            | Statement::Explain { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::ShowVariable { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
    )
}
