//! PostgreSQL's run-time parameters, as one session sees them.
//!
//! Clients and BI tools read and write PostgreSQL's parameters (`SET DateStyle`, `SHOW
//! transaction_isolation`, `current_setting('server_version_num')`) before and between their
//! queries. [`PostgresSettings`] keeps them in the session's own DataFusion configuration (as
//! the `postgres.*` extension), so they are private to a connection, are reset with the rest of
//! the session by `DISCARD ALL`, and are readable while a query runs ([`CurrentSettingFunction`]).
//!
//! Names match case-insensitively, as in PostgreSQL. A name PostgreSQL does not have is
//! `42704`; a dotted name (`myapp.region`) is a custom placeholder anyone may set; a
//! read-only parameter (`server_version`) is `55P02`.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// One of PostgreSQL's parameters that Quantatom knows.
#[derive(Debug)]
pub struct Parameter {
    /// PostgreSQL's spelling (`DateStyle`), shown by `SHOW` and in ParameterStatus.
    pub name: &'static str,
    /// The value a session starts with.
    pub default: &'static str,
    /// Whether a session may change it.
    pub settable: bool,
    /// Whether PostgreSQL reports a change to the client (a `GUC_REPORT` parameter).
    pub reported: bool,
    /// PostgreSQL's short description, as `pg_settings` shows it.
    pub description: &'static str,
}

const fn parameter(
    name: &'static str,
    default: &'static str,
    settable: bool,
    reported: bool,
    description: &'static str,
) -> Parameter {
    Parameter {
        name,
        default,
        settable,
        reported,
        description,
    }
}

/// Every parameter a session has, with PostgreSQL 16's defaults.
pub const PARAMETERS: &[Parameter] = &[
    parameter(
        "application_name",
        "",
        true,
        true,
        "Sets the application name to be reported in statistics and logs.",
    ),
    parameter(
        "bytea_output",
        "hex",
        true,
        false,
        "Sets the output format for bytea.",
    ),
    parameter(
        "client_encoding",
        "UTF8",
        true,
        true,
        "Sets the client's character set encoding.",
    ),
    parameter(
        "client_min_messages",
        "notice",
        true,
        false,
        "Sets the message levels that are sent to the client.",
    ),
    parameter(
        "DateStyle",
        "ISO, MDY",
        true,
        true,
        "Sets the display format for date and time values.",
    ),
    parameter(
        "default_transaction_isolation",
        "read committed",
        true,
        false,
        "Sets the transaction isolation level of each new transaction.",
    ),
    parameter(
        "default_transaction_read_only",
        "off",
        true,
        true,
        "Sets the default read-only status of new transactions.",
    ),
    parameter(
        "extra_float_digits",
        "1",
        true,
        false,
        "Sets the number of digits displayed for floating-point values.",
    ),
    parameter(
        "idle_in_transaction_session_timeout",
        "0",
        true,
        false,
        "Sets the maximum allowed idle time between queries, when in a transaction.",
    ),
    parameter(
        "in_hot_standby",
        "off",
        false,
        true,
        "Shows whether hot standby is currently active.",
    ),
    parameter(
        "integer_datetimes",
        "on",
        false,
        true,
        "Shows whether datetimes are integer based.",
    ),
    parameter(
        "IntervalStyle",
        "postgres",
        true,
        true,
        "Sets the display format for interval values.",
    ),
    parameter(
        "is_superuser",
        "on",
        false,
        true,
        "Shows whether the current user is a superuser.",
    ),
    parameter(
        "lc_collate",
        "C.UTF-8",
        false,
        false,
        "Shows the collation order locale.",
    ),
    parameter(
        "lc_ctype",
        "C.UTF-8",
        false,
        false,
        "Shows the character classification and case conversion locale.",
    ),
    parameter(
        "lc_messages",
        "C.UTF-8",
        true,
        false,
        "Sets the language in which messages are displayed.",
    ),
    parameter(
        "lc_monetary",
        "C.UTF-8",
        true,
        false,
        "Sets the locale for formatting monetary amounts.",
    ),
    parameter(
        "lc_numeric",
        "C.UTF-8",
        true,
        false,
        "Sets the locale for formatting numbers.",
    ),
    parameter(
        "lc_time",
        "C.UTF-8",
        true,
        false,
        "Sets the locale for formatting date and time values.",
    ),
    parameter(
        "lock_timeout",
        "0",
        true,
        false,
        "Sets the maximum allowed duration of any wait for a lock.",
    ),
    parameter(
        "max_connections",
        "1000",
        false,
        false,
        "Sets the maximum number of concurrent connections.",
    ),
    parameter(
        "max_identifier_length",
        "63",
        false,
        false,
        "Shows the maximum identifier length.",
    ),
    parameter(
        "max_index_keys",
        "32",
        false,
        false,
        "Shows the maximum number of index keys.",
    ),
    parameter(
        "search_path",
        "\"$user\", public",
        true,
        true,
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    parameter(
        "server_encoding",
        "UTF8",
        false,
        true,
        "Shows the server (database) character set encoding.",
    ),
    parameter(
        "server_version",
        concat!("16.6 (Quantatom ", env!("CARGO_PKG_VERSION"), ")"),
        false,
        true,
        "Shows the server version.",
    ),
    parameter(
        "server_version_num",
        "160006",
        false,
        false,
        "Shows the server version as an integer.",
    ),
    parameter(
        "session_authorization",
        "",
        false,
        true,
        "Sets the session user name.",
    ),
    parameter(
        "standard_conforming_strings",
        "on",
        true,
        true,
        "Causes '...' strings to treat backslashes literally.",
    ),
    parameter(
        "statement_timeout",
        "0",
        true,
        false,
        "Sets the maximum allowed duration of any statement.",
    ),
    parameter(
        "TimeZone",
        "UTC",
        true,
        true,
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    parameter(
        "transaction_isolation",
        "read committed",
        true,
        false,
        "Sets the current transaction's isolation level.",
    ),
    parameter(
        "transaction_read_only",
        "off",
        true,
        false,
        "Sets the current transaction's read-only status.",
    ),
];

/// The parameter named `name` (any case), if PostgreSQL has it.
pub fn find_parameter(name: &str) -> Option<&'static Parameter> {
    PARAMETERS
        .iter()
        .find(|parameter| parameter.name.eq_ignore_ascii_case(name))
}

/// Why a parameter could not be read or set; each carries PostgreSQL's SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// No such parameter.
    #[error("unrecognized configuration parameter \"{0}\"")]
    Unrecognized(String),
    /// A read-only parameter.
    #[error("parameter \"{0}\" cannot be changed")]
    ReadOnly(String),
    /// A value the parameter does not accept.
    #[error("invalid value for parameter \"{name}\": \"{value}\"")]
    InvalidValue {
        /// The parameter.
        name: String,
        /// The rejected value.
        value: String,
    },
}

impl From<SettingError> for DataFusionError {
    fn from(error: SettingError) -> Self {
        DataFusionError::External(Box::new(error))
    }
}

impl SettingError {
    /// PostgreSQL's SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SettingError::Unrecognized(_) => "42704",
            SettingError::ReadOnly(_) => "55P02",
            SettingError::InvalidValue { .. } => "22023",
        }
    }
}

/// Whether `name` is one of the engine's own options (`datafusion.*`, `quantatom.*`), kept in
/// DataFusion's configuration rather than with PostgreSQL's parameters.
pub fn is_engine_option(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("datafusion.") || name.starts_with("quantatom.")
}

/// The values a session has changed from the defaults, plus its custom placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostgresSettings {
    /// Changed values, keyed by the lowercase name.
    changed: BTreeMap<String, String>,
}

impl ConfigExtension for PostgresSettings {
    const PREFIX: &'static str = "postgres";
}

impl PostgresSettings {
    /// The session's value of `name`: a known parameter, or a custom placeholder set earlier.
    pub fn get(&self, name: &str) -> Result<String, SettingError> {
        let key = name.to_ascii_lowercase();
        if let Some(value) = self.changed.get(&key) {
            return Ok(value.clone());
        }
        match find_parameter(name) {
            Some(parameter) => Ok(parameter.default.to_owned()),
            None => Err(SettingError::Unrecognized(name.to_owned())),
        }
    }

    /// Sets `name` to `value` as `SET name = value` does, after checking both.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SettingError> {
        let value = match find_parameter(name) {
            Some(parameter) if !parameter.settable => {
                return Err(SettingError::ReadOnly(parameter.name.to_owned()));
            }
            Some(parameter) => normalize(parameter, value, &self.get(parameter.name)?)?,
            None if name.contains('.') => value.to_owned(),
            None => return Err(SettingError::Unrecognized(name.to_owned())),
        };
        self.changed.insert(name.to_ascii_lowercase(), value);
        Ok(())
    }

    /// Puts `name` back to its default (`RESET name`).
    pub fn reset(&mut self, name: &str) -> Result<(), SettingError> {
        match find_parameter(name) {
            Some(parameter) if !parameter.settable => {
                Err(SettingError::ReadOnly(parameter.name.to_owned()))
            }
            None if !name.contains('.') => Err(SettingError::Unrecognized(name.to_owned())),
            _ => {
                self.changed.remove(&name.to_ascii_lowercase());
                Ok(())
            }
        }
    }

    /// Every known parameter with the session's value, in PostgreSQL's order (by name).
    pub fn all(&self) -> Vec<(&'static Parameter, String)> {
        let mut all: Vec<_> = PARAMETERS
            .iter()
            .map(|parameter| (parameter, self.get(parameter.name).unwrap_or_default()))
            .collect();
        all.sort_by_key(|(parameter, _)| parameter.name.to_ascii_lowercase());
        all
    }

    /// How long a statement may run, when the session limits it (`statement_timeout`).
    pub fn statement_timeout(&self) -> Option<Duration> {
        // Read in place, without `get`'s copies: this runs for every statement. Unset, it is
        // its default, 0 (none).
        let text = self.changed.get("statement_timeout")?;
        milliseconds(text)
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }

    /// The settings of the session whose options are `options` (defaults when it has none).
    pub fn of(options: &ConfigOptions) -> PostgresSettings {
        options
            .extensions
            .get::<PostgresSettings>()
            .cloned()
            .unwrap_or_default()
    }
}

/// Checks a value the way PostgreSQL would for the parameters clients actually change, and
/// spells it the way `SHOW` gives it back; `current` is the value it replaces.
fn normalize(parameter: &Parameter, value: &str, current: &str) -> Result<String, SettingError> {
    let invalid = || SettingError::InvalidValue {
        name: parameter.name.to_owned(),
        value: value.to_owned(),
    };
    let lower = value.to_ascii_lowercase();
    match parameter.name {
        // PostgreSQL ignores everything but letters and digits in encoding names ('utf-8').
        "client_encoding" => match lower
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .as_str()
        {
            "utf8" | "unicode" => Ok("UTF8".to_owned()),
            _ => Err(invalid()),
        },
        "standard_conforming_strings"
        | "default_transaction_read_only"
        | "transaction_read_only" => match lower.as_str() {
            "on" | "true" | "yes" | "1" => Ok("on".to_owned()),
            "off" | "false" | "no" | "0" => Ok("off".to_owned()),
            _ => Err(invalid()),
        },
        "extra_float_digits" => match value.trim().parse::<i8>() {
            Ok(digits) if (-15..=3).contains(&digits) => Ok(digits.to_string()),
            _ => Err(invalid()),
        },
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => {
            milliseconds(value).map(duration_text).ok_or_else(invalid)
        }
        "bytea_output" => match lower.as_str() {
            "hex" | "escape" => Ok(lower),
            _ => Err(invalid()),
        },
        "IntervalStyle" => match lower.as_str() {
            "postgres" | "postgres_verbose" | "sql_standard" | "iso_8601" => Ok(lower),
            _ => Err(invalid()),
        },
        "transaction_isolation" | "default_transaction_isolation" => match lower.as_str() {
            "read uncommitted" | "read committed" | "repeatable read" | "serializable" => Ok(lower),
            _ => Err(invalid()),
        },
        "DateStyle" => date_style(&lower, current).ok_or_else(invalid),
        _ => Ok(value.to_owned()),
    }
}

/// `DateStyle` as PostgreSQL shows it: output style, then field order (`ISO, MDY`). A part not
/// given keeps its `current` value, except that `German` alone also means `DMY`.
fn date_style(value: &str, current: &str) -> Option<String> {
    let (current_style, current_order) = current.split_once(", ")?;
    let (mut style, mut order) = (None, None);
    for part in value.split([',', ' ']).filter(|part| !part.is_empty()) {
        match part {
            "iso" => style = Some("ISO"),
            "sql" => style = Some("SQL"),
            "postgres" => style = Some("Postgres"),
            "german" => style = Some("German"),
            "mdy" | "us" | "noneuropean" => order = Some("MDY"),
            "dmy" | "euro" | "european" => order = Some("DMY"),
            "ymd" => order = Some("YMD"),
            _ => return None,
        }
    }
    let order = order
        .or((style == Some("German")).then_some("DMY"))
        .unwrap_or(current_order);
    Some(format!("{}, {order}", style.unwrap_or(current_style)))
}

/// A duration the way `SHOW` gives it: in the largest unit that divides it (`2s`, `5min`).
fn duration_text(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
    ];
    if ms == 0 {
        return "0".to_owned();
    }
    UNITS
        .iter()
        .find(|(size, _)| ms.is_multiple_of(*size))
        .map_or_else(
            || format!("{ms}ms"),
            |(size, unit)| format!("{}{unit}", ms / size),
        )
}

/// A duration setting in milliseconds: a bare number is milliseconds; units as PostgreSQL
/// takes them (`us`, `ms`, `s`, `min`, `h`, `d`).
fn milliseconds(value: &str) -> Option<u64> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "us" => return Some(number / 1_000),
        _ => return None,
    };
    number.checked_mul(factor)
}

impl ExtensionOptions for PostgresSettings {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        Ok(PostgresSettings::set(self, key, value)?)
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        self.all()
            .into_iter()
            .map(|(parameter, value)| ConfigEntry {
                key: format!("{}.{}", Self::PREFIX, parameter.name),
                value: Some(value),
                description: parameter.description,
            })
            .collect()
    }
}

impl fmt::Display for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.changed {
            writeln!(f, "{name} = {value}")?;
        }
        Ok(())
    }
}

/// `current_setting(name [, missing_ok])`: the session's value of a PostgreSQL parameter, a
/// custom placeholder, or a DataFusion setting (`datafusion.execution.batch_size`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CurrentSettingFunction {
    signature: Signature,
}

impl CurrentSettingFunction {
    /// The function, ready to register.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::one_of(
                vec![
                    datafusion::logical_expr::TypeSignature::Exact(vec![DataType::Utf8]),
                    datafusion::logical_expr::TypeSignature::Exact(vec![
                        DataType::Utf8,
                        DataType::Boolean,
                    ]),
                ],
                Volatility::Stable,
            ),
        })
    }
}

/// The value of `name` in a session whose options are `options`.
pub fn current_setting(options: &ConfigOptions, name: &str) -> Result<String, SettingError> {
    if is_engine_option(name) {
        let key = name.to_ascii_lowercase();
        return options
            .entries()
            .into_iter()
            .find(|entry| entry.key == key)
            .map(|entry| entry.value.unwrap_or_default())
            .ok_or_else(|| SettingError::Unrecognized(name.to_owned()));
    }
    PostgresSettings::of(options).get(name)
}

impl ScalarUDFImpl for CurrentSettingFunction {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let missing_ok = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(flag))) => flag.unwrap_or(false),
            Some(_) => return exec_err!("current_setting: missing_ok must be a constant"),
            None => false,
        };
        let lookup = |name: &str| match current_setting(&args.config_options, name) {
            Ok(value) => Ok(Some(value)),
            Err(SettingError::Unrecognized(_)) if missing_ok => Ok(None),
            Err(e) => Err(e.into()),
        };
        match &args.args[0] {
            ColumnarValue::Scalar(name) => {
                let value = match name.try_as_str().flatten() {
                    Some(name) => lookup(name)?,
                    None => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value)))
            }
            ColumnarValue::Array(names) => {
                let names = names
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| {
                        DataFusionError::Internal("current_setting: names are not Utf8".into())
                    })?;
                let values = (0..names.len())
                    .map(|i| {
                        if names.is_null(i) {
                            Ok(None)
                        } else {
                            lookup(names.value(i))
                        }
                    })
                    .collect::<Result<StringArray>>()?;
                Ok(ColumnarValue::Array(std::sync::Arc::new(values)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_in_any_case_and_values_are_checked() {
        let mut settings = PostgresSettings::default();
        assert_eq!(settings.get("datestyle").unwrap(), "ISO, MDY");
        settings.set("DATESTYLE", "german").unwrap();
        assert_eq!(settings.get("DateStyle").unwrap(), "German, DMY");
        settings.set("DateStyle", "sql").unwrap();
        assert_eq!(settings.get("DateStyle").unwrap(), "SQL, DMY");
        settings.set("DateStyle", "iso, mdy").unwrap();
        assert_eq!(settings.get("DateStyle").unwrap(), "ISO, MDY");
        settings.set("extra_float_digits", "3").unwrap();
        assert_eq!(settings.get("extra_float_digits").unwrap(), "3");
        assert_eq!(
            settings
                .set("extra_float_digits", "9")
                .unwrap_err()
                .sqlstate(),
            "22023"
        );
        settings.set("client_encoding", "'utf-8'").unwrap();
        assert_eq!(settings.get("client_encoding").unwrap(), "UTF8");
        settings.set("statement_timeout", "2000").unwrap();
        assert_eq!(settings.get("statement_timeout").unwrap(), "2s");
        settings.set("statement_timeout", "1500").unwrap();
        assert_eq!(settings.get("statement_timeout").unwrap(), "1500ms");
        settings.reset("statement_timeout").unwrap();
        assert_eq!(settings.get("statement_timeout").unwrap(), "0");
    }

    #[test]
    fn unknown_read_only_and_custom_parameters_behave_like_postgres() {
        let mut settings = PostgresSettings::default();
        let unknown = settings.set("no_such_thing", "1").unwrap_err();
        assert_eq!(
            (unknown.sqlstate(), unknown.to_string().as_str()),
            (
                "42704",
                "unrecognized configuration parameter \"no_such_thing\""
            )
        );
        assert_eq!(
            settings.set("server_version", "1").unwrap_err().sqlstate(),
            "55P02"
        );
        assert_eq!(
            settings.get("myapp.region").unwrap_err().sqlstate(),
            "42704"
        );
        settings.set("myapp.region", "EMEA").unwrap();
        assert_eq!(settings.get("MyApp.Region").unwrap(), "EMEA");
    }

    #[test]
    fn durations_take_postgres_units() {
        assert_eq!(milliseconds("150"), Some(150));
        assert_eq!(milliseconds("3min"), Some(180_000));
        assert_eq!(milliseconds("2 s"), Some(2_000));
        assert_eq!(milliseconds("soon"), None);
    }
}
