//! `SET`, `RESET`, `SHOW` and `DISCARD` on a connection, the way PostgreSQL answers them.
//!
//! PostgreSQL's parameters live in the session's [`PostgresSettings`]; `datafusion.*` names
//! reach DataFusion's own configuration. Both belong to this connection's session only. After a
//! change, the values pgwire formats results with (DateStyle, IntervalStyle, bytea_output,
//! extra_float_digits) are copied to the connection, `TimeZone` to DataFusion's session time
//! zone, and a ParameterStatus goes to the client for every reported parameter that changed,
//! as PostgreSQL does.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{DFSchema, DataFusionError, ToDFSchema};
use datafusion::config::ConfigOptions;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Expr, Ident, ObjectName, Reset, Set, Statement, Value};
use datafusion_postgres::hooks::HookClient;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::{ClientInfo, Type};
use pgwire::error::PgWireResult;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::startup::ParameterStatus;
use quantatom_engine::metadata::{MetadataError, SessionAccess};
use quantatom_engine::postgres_settings::{
    PostgresSettings, SettingError, find_parameter, is_engine_option,
};

use super::answered_plan;
use super::errors::api_error;
use super::session_hooks::SessionStatementHook;

/// Parameters pgwire reads from the connection's metadata when it formats values.
const FORMAT_PARAMETERS: [&str; 4] = [
    "DateStyle",
    "IntervalStyle",
    "bytea_output",
    "extra_float_digits",
];

/// A session statement, understood.
#[derive(Debug)]
enum SessionStatement {
    Show(Shown),
    Change(Change),
}

/// A statement that changes the session's settings.
#[derive(Debug)]
enum Change {
    Set { name: String, value: Option<String> },
    ResetAll,
    Discard(String),
}

/// What a `SHOW` asks for.
#[derive(Debug)]
enum Shown {
    All,
    One(String),
}

impl SessionStatement {
    fn parse(statement: &Statement) -> Option<Self> {
        match statement {
            Statement::ShowVariable { variable } => Some(Self::Show(shown(variable))),
            Statement::Set(Set::SingleAssignment {
                hivevar: false,
                variable,
                values,
                ..
            }) => Some(Self::Change(Change::Set {
                name: object_name(variable),
                value: setting_value(values),
            })),
            Statement::Set(Set::SetTimeZone { value, .. }) => Some(Self::Change(Change::Set {
                name: "TimeZone".into(),
                value: setting_value(std::slice::from_ref(value)),
            })),
            Statement::Reset(reset) => Some(Self::Change(match &reset.reset {
                Reset::ALL => Change::ResetAll,
                Reset::ConfigurationParameter(name) => Change::Set {
                    name: object_name(name),
                    value: None,
                },
            })),
            Statement::Discard { object_type } => {
                Some(Self::Change(Change::Discard(object_type.to_string())))
            }
            _ => None,
        }
    }
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| part.to_string().trim_matches('"').to_owned())
        .collect::<Vec<_>>()
        .join(".")
}

/// The text a `SET` assigns; `None` for `DEFAULT`. A list (`search_path = a, b`) is joined
/// the way `SHOW` gives it back.
fn setting_value(values: &[Expr]) -> Option<String> {
    let parts: Vec<String> = values
        .iter()
        .map(|value| match value {
            Expr::Value(value) => match &value.value {
                Value::SingleQuotedString(text) | Value::DoubleQuotedString(text) => text.clone(),
                other => other.to_string(),
            },
            Expr::Identifier(ident) => ident.value.clone(),
            other => other.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [only] if only.eq_ignore_ascii_case("default") => None,
        [] => None,
        _ => Some(parts.join(", ")),
    }
}

fn shown(variable: &[Ident]) -> Shown {
    let words: Vec<String> = variable
        .iter()
        .map(|part| part.value.to_ascii_lowercase())
        .collect();
    match words.join(" ").as_str() {
        "all" => Shown::All,
        "time zone" => Shown::One("TimeZone".into()),
        "transaction isolation level" => Shown::One("transaction_isolation".into()),
        "session authorization" => Shown::One("session_authorization".into()),
        _ => Shown::One(words.join(".")),
    }
}

/// Answers the session statements of one connection.
#[derive(Debug)]
pub(crate) struct SettingsHook {
    fresh_state: SessionState,
}

impl SettingsHook {
    /// A hook whose `DISCARD ALL` puts the session back to `fresh_state`.
    pub(crate) fn new(fresh_state: SessionState) -> Self {
        Self { fresh_state }
    }

    async fn answer(
        &self,
        statement: SessionStatement,
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        match statement {
            SessionStatement::Show(shown) => {
                show(&shown, session.state_ref().read().config_options())
            }
            SessionStatement::Change(change) => self.change(change, session, client).await,
        }
    }

    async fn change(
        &self,
        change: Change,
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        let before = PostgresSettings::of(session.state_ref().read().config_options());
        let tag = match change {
            Change::Set { name, value } => {
                let value = value.or_else(|| engine_default(&self.fresh_state, &name));
                update_options(session, |options| assign(options, &name, value.as_deref()))
                    .map_err(api_error)?;
                if value.is_some() { "SET" } else { "RESET" }.to_owned()
            }
            Change::ResetAll => {
                let fresh = self.fresh_state.config_options();
                update_options(session, |options| {
                    options.extensions.insert(PostgresSettings::of(fresh));
                    options.execution.time_zone = fresh.execution.time_zone.clone();
                });
                "RESET".to_owned()
            }
            Change::Discard(object_type) => {
                // Every setting goes back to what a new session has; who the session is (its
                // user, grants, functions such as current_user) stays, as in PostgreSQL.
                let fresh = self.fresh_state.config_options().as_ref().clone();
                update_options(session, |options| {
                    let access = SessionAccess::of(options).cloned();
                    *options = fresh;
                    if let Some(access) = access {
                        access.install(options);
                    }
                });
                format!("DISCARD {object_type}")
            }
        };
        let after = PostgresSettings::of(session.state_ref().read().config_options());
        report_changes(client, &before, &after).await?;
        Ok(Response::Execution(Tag::new(&tag)))
    }
}

/// The value a session starts with for the DataFusion setting `name` (`None` for other names).
fn engine_default(fresh_state: &SessionState, name: &str) -> Option<String> {
    let key = name.to_ascii_lowercase();
    is_engine_option(&key).then_some(())?;
    fresh_state
        .config_options()
        .entries()
        .into_iter()
        .find(|entry| entry.key == key)?
        .value
}

/// Sets (or with `None` resets) `name` in `options`.
fn assign(
    options: &mut ConfigOptions,
    name: &str,
    value: Option<&str>,
) -> Result<(), DataFusionError> {
    if is_engine_option(name) {
        let key = name.to_ascii_lowercase();
        // The catalog settings choose what catalogs exist and show (DataFusion's own
        // information_schema lists every table, past the filtering of `visible_catalog`).
        if key.starts_with("datafusion.catalog.") {
            match SessionAccess::of(options) {
                Some(access) => access.require_admin(&format!("change {key}"))?,
                None => {
                    return Err(MetadataError::PermissionDenied(format!(
                        "{key} can be changed only by an administrator, with SET after connecting"
                    ))
                    .into());
                }
            }
        }
        return options.set(&key, value.unwrap_or_default());
    }
    let mut settings = PostgresSettings::of(options);
    match value {
        Some(value) => settings.set(name, value)?,
        None => settings.reset(name)?,
    }
    if name.eq_ignore_ascii_case("TimeZone") {
        let zone = settings.get("TimeZone")?;
        options.execution.time_zone = Some(zone);
    }
    options.extensions.insert(settings);
    Ok(())
}

/// Applies the parameters a client sent in its startup packet (`DateStyle`, `TimeZone`,
/// `options=-c name=value`, …) to its session, as PostgreSQL does before the first query.
pub(crate) fn apply_startup_parameters(
    session: &SessionContext,
    parameters: &std::collections::BTreeMap<String, String>,
) -> Result<(), DataFusionError> {
    update_options(session, |options| {
        for (name, value) in parameters {
            match name.as_str() {
                "user" | "database" | "replication" => {}
                "options" => {
                    for (name, value) in command_line_options(value)? {
                        assign(options, &name, Some(&value))?;
                    }
                }
                name if name.starts_with("_pq_.") => {}
                name => assign(options, name, Some(value))?,
            }
        }
        Ok(())
    })
}

/// Runs `change` on the session's configuration.
fn update_options<R>(session: &SessionContext, change: impl FnOnce(&mut ConfigOptions) -> R) -> R {
    let state = session.state_ref();
    let mut state = state.write();
    change(state.config_mut().options_mut())
}

/// `-c name=value` and `--name=value` pairs of the startup `options` parameter.
fn command_line_options(options: &str) -> Result<Vec<(String, String)>, DataFusionError> {
    let mut pairs = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let pair = match word {
            "-c" => words.next().unwrap_or_default(),
            word if word.starts_with("--") => &word[2..],
            word if word.starts_with("-c") => &word[2..],
            word => {
                return Err(SettingError::InvalidValue {
                    name: "options".into(),
                    value: word.into(),
                }
                .into());
            }
        };
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| SettingError::InvalidValue {
                name: "options".into(),
                value: pair.into(),
            })?;
        pairs.push((name.replace('-', "_"), value.to_owned()));
    }
    Ok(pairs)
}

/// Copies the formatting parameters into the connection metadata pgwire formats values with,
/// and sends ParameterStatus for every reported parameter whose value changed.
async fn report_changes(
    client: &mut dyn HookClient,
    before: &PostgresSettings,
    after: &PostgresSettings,
) -> PgWireResult<()> {
    copy_format_parameters(client.metadata_mut(), after);
    for (parameter, value) in after.all() {
        if parameter.reported && before.get(parameter.name).ok().as_ref() != Some(&value) {
            let status = ParameterStatus::new(parameter.name.to_owned(), value);
            client
                .send_message(PgWireBackendMessage::ParameterStatus(status))
                .await?;
        }
    }
    Ok(())
}

/// Writes the formatting parameters of `settings` where pgwire looks for them.
pub(crate) fn copy_format_parameters(
    metadata: &mut HashMap<String, String>,
    settings: &PostgresSettings,
) {
    for name in FORMAT_PARAMETERS {
        if let Ok(value) = settings.get(name) {
            metadata.insert(name.to_ascii_lowercase(), value);
        }
    }
}

/// The rows of a `SHOW`.
fn show(shown: &Shown, options: &ConfigOptions) -> PgWireResult<Response> {
    let (columns, rows) = show_rows(shown, options).map_err(api_error)?;
    let fields = Arc::new(
        columns
            .iter()
            .map(|name| FieldInfo::new(name.clone(), None, None, Type::TEXT, FieldFormat::Text))
            .collect::<Vec<_>>(),
    );
    let encoded = rows
        .into_iter()
        .map(|row| {
            let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
            for value in row {
                encoder.encode_field(&Some(value))?;
            }
            Ok(encoder.take_row())
        })
        .collect::<Vec<_>>();
    Ok(Response::Query(QueryResponse::new(
        fields,
        Box::pin(futures::stream::iter(encoded)),
    )))
}

/// Column names and rows of a `SHOW`: one column named after the parameter, or PostgreSQL's
/// `name, setting, description` for `SHOW ALL`.
fn show_rows(
    shown: &Shown,
    options: &ConfigOptions,
) -> Result<(Vec<String>, Vec<Vec<String>>), DataFusionError> {
    match shown {
        Shown::All => {
            let rows = PostgresSettings::of(options)
                .all()
                .into_iter()
                .map(|(parameter, value)| {
                    vec![
                        parameter.name.to_owned(),
                        value,
                        parameter.description.to_owned(),
                    ]
                })
                .collect();
            Ok((
                vec!["name".into(), "setting".into(), "description".into()],
                rows,
            ))
        }
        Shown::One(name) => {
            let value = quantatom_engine::postgres_settings::current_setting(options, name)?;
            let column = find_parameter(name)
                .map_or_else(|| name.to_ascii_lowercase(), |p| p.name.to_owned());
            Ok((vec![column], vec![vec![value]]))
        }
    }
}

#[async_trait]
impl SessionStatementHook for SettingsHook {
    async fn answer(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let statement = SessionStatement::parse(statement)?;
        Some(self.answer(statement, session_context, client).await)
    }

    async fn describe(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let schema = match SessionStatement::parse(statement)? {
            SessionStatement::Show(shown) => {
                match show_rows(&shown, session_context.state_ref().read().config_options()) {
                    Ok((columns, _)) => {
                        let fields: Vec<Field> = columns
                            .into_iter()
                            .map(|name| Field::new(name, DataType::Utf8, false))
                            .collect();
                        match Schema::new(fields).to_dfschema_ref() {
                            Ok(schema) => schema,
                            Err(e) => return Some(Err(api_error(e))),
                        }
                    }
                    Err(e) => return Some(Err(api_error(e))),
                }
            }
            SessionStatement::Change(_) => Arc::new(DFSchema::empty()),
        };
        Some(Ok(answered_plan(schema)))
    }
}
