//! `pg_catalog.pg_stat_activity`: one row per open connection, as PostgreSQL shows its backends
//! (DBeaver's session manager, Grafana's and pgAdmin's dashboards read it).
//!
//! Each connection registers when its startup completes and leaves when it closes; a query
//! marks it `active` with its text and start time until the query's last result row has been
//! sent, then `idle`, or `idle in transaction` (`(aborted)` after an error) inside a
//! transaction block, as the connection loop reports after each message.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use datafusion::arrow::array::{
    ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use pgwire::messages::response::TransactionStatus;
use quantatom_engine::metadata::SessionAccess;

/// The open connections of a server, by process id. In-process sessions (tests) use an empty
/// one.
#[derive(Debug, Default)]
pub struct ActivityRegistry {
    sessions: Mutex<BTreeMap<i32, Arc<SessionActivity>>>,
}

/// Who a connection is, and what it is doing.
#[derive(Debug)]
pub(crate) struct SessionActivity {
    pid: i32,
    user: String,
    database: String,
    application_name: String,
    client: SocketAddr,
    backend_start: SystemTime,
    now: Mutex<Doing>,
}

#[derive(Debug, Clone)]
struct Doing {
    active: bool,
    transaction: TransactionStatus,
    query: String,
    query_start: Option<SystemTime>,
    state_change: SystemTime,
}

/// Marks its connection `active` while it lives (held by the running query's stop handle,
/// so it ends when the last result row has been sent or the query is dropped).
#[derive(Debug)]
pub(crate) struct RunningQuery(Arc<SessionActivity>);

impl Drop for RunningQuery {
    fn drop(&mut self) {
        let mut now = self.0.now.lock().expect("activity poisoned");
        now.active = false;
        now.state_change = SystemTime::now();
    }
}

impl SessionActivity {
    /// The connection's process id.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// The user the connection logged in as.
    pub(crate) fn user(&self) -> &str {
        &self.user
    }
    /// Records that `query` starts now; the connection is active until the guard drops.
    pub(crate) fn query_started(self: &Arc<Self>, query: &str) -> RunningQuery {
        let started = SystemTime::now();
        let mut now = self.now.lock().expect("activity poisoned");
        now.active = true;
        now.query.clear();
        now.query.push_str(query);
        now.query_start = Some(started);
        now.state_change = started;
        drop(now);
        RunningQuery(Arc::clone(self))
    }

    /// Records the connection's transaction status once a client message has been handled.
    pub(crate) fn transaction_status_is(&self, status: TransactionStatus) {
        let mut now = self.now.lock().expect("activity poisoned");
        if now.transaction != status {
            now.transaction = status;
            now.state_change = SystemTime::now();
        }
    }

    fn doing(&self) -> Doing {
        self.now.lock().expect("activity poisoned").clone()
    }

    /// `pg_stat_activity.state` for what the connection is `doing`.
    fn state(doing: &Doing) -> &'static str {
        match (doing.active, doing.transaction) {
            (true, _) => "active",
            (false, TransactionStatus::Transaction) => "idle in transaction",
            (false, TransactionStatus::Error) => "idle in transaction (aborted)",
            (false, TransactionStatus::Idle) => "idle",
        }
    }
}

impl ActivityRegistry {
    /// Registers a connection whose startup just completed.
    pub(crate) fn connected(
        &self,
        pid: i32,
        user: String,
        database: String,
        application_name: String,
        client: SocketAddr,
    ) -> Arc<SessionActivity> {
        let started = SystemTime::now();
        let doing = Doing {
            active: false,
            transaction: TransactionStatus::Idle,
            query: String::new(),
            query_start: None,
            state_change: started,
        };
        let session = Arc::new(SessionActivity {
            pid,
            user,
            database,
            application_name,
            client,
            backend_start: started,
            now: Mutex::new(doing),
        });
        self.sessions
            .lock()
            .expect("activity poisoned")
            .insert(pid, Arc::clone(&session));
        session
    }

    /// Forgets a closed connection.
    /// The connections open now (those past startup).
    pub fn connections(&self) -> usize {
        self.sessions.lock().expect("activity poisoned").len()
    }

    pub(crate) fn disconnected(&self, pid: i32) {
        self.sessions
            .lock()
            .expect("activity poisoned")
            .remove(&pid);
    }

    /// `pg_stat_activity` over this registry.
    pub(crate) fn table(self: &Arc<Self>) -> Result<Arc<dyn TableProvider>> {
        let view = Arc::new(ActivityView {
            registry: Arc::clone(self),
            schema: activity_schema(),
        });
        Ok(Arc::new(StreamingTable::try_new(
            activity_schema(),
            vec![view],
        )?))
    }

    /// The rows as `reader` (the session reading, `None` for the engine's own) may see them:
    /// as in PostgreSQL, the query text of another user's session shows only to
    /// administrators.
    fn rows(&self, schema: &SchemaRef, reader: Option<&SessionAccess>) -> Result<RecordBatch> {
        let sessions: Vec<(Arc<SessionActivity>, Doing)> = self
            .sessions
            .lock()
            .expect("activity poisoned")
            .values()
            .map(|session| (Arc::clone(session), session.doing()))
            .collect();
        let text = |value: &dyn Fn(&SessionActivity, &Doing) -> Option<String>| -> ArrayRef {
            Arc::new(
                sessions
                    .iter()
                    .map(|(session, doing)| value(session, doing))
                    .collect::<StringArray>(),
            )
        };
        let int = |value: &dyn Fn(&SessionActivity) -> Option<i32>| -> ArrayRef {
            Arc::new(
                sessions
                    .iter()
                    .map(|(session, _)| value(session))
                    .collect::<Int32Array>(),
            )
        };
        let time = |value: &dyn Fn(&SessionActivity, &Doing) -> Option<SystemTime>| -> ArrayRef {
            let micros = |at: SystemTime| {
                at.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as i64)
            };
            let values: TimestampMicrosecondArray = sessions
                .iter()
                .map(|(session, doing)| value(session, doing).map(micros))
                .collect();
            Arc::new(values.with_timezone("UTC"))
        };
        let columns: Vec<ArrayRef> = vec![
            int(&|_| None),
            text(&|session, _| Some(session.database.clone())),
            int(&|session| Some(session.pid)),
            int(&|_| None),
            int(&|_| None),
            text(&|session, _| Some(session.user.clone())),
            text(&|session, _| Some(session.application_name.clone())),
            text(&|session, _| Some(session.client.ip().to_string())),
            text(&|_, _| None),
            int(&|session| Some(i32::from(session.client.port()))),
            time(&|session, _| Some(session.backend_start)),
            time(&|_, _| None),
            time(&|_, doing| doing.query_start),
            time(&|_, doing| Some(doing.state_change)),
            text(&|_, doing| (!doing.active).then(|| "Client".to_owned())),
            text(&|_, doing| (!doing.active).then(|| "ClientRead".to_owned())),
            text(&|_, doing| Some(SessionActivity::state(doing).to_owned())),
            text(&|session, doing| {
                Some(match reader {
                    Some(reader) if !reader.is_admin() && reader.user() != session.user => {
                        "<insufficient privilege>".to_owned()
                    }
                    _ => doing.query.clone(),
                })
            }),
            text(&|_, _| Some("client backend".to_owned())),
        ];
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }
}

fn activity_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let int = |name: &str| Field::new(name, DataType::Int32, true);
    let time = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        )
    };
    Arc::new(Schema::new(vec![
        int("datid"),
        text("datname"),
        int("pid"),
        int("leader_pid"),
        int("usesysid"),
        text("usename"),
        text("application_name"),
        text("client_addr"),
        text("client_hostname"),
        int("client_port"),
        time("backend_start"),
        time("xact_start"),
        time("query_start"),
        time("state_change"),
        text("wait_event_type"),
        text("wait_event"),
        text("state"),
        text("query"),
        text("backend_type"),
    ]))
}

/// The rows, taken from the registry when the scan runs.
#[derive(Debug)]
struct ActivityView {
    registry: Arc<ActivityRegistry>,
    schema: SchemaRef,
}

impl PartitionStream for ActivityView {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, context: Arc<TaskContext>) -> SendableRecordBatchStream {
        let reader = SessionAccess::of(context.session_config().options());
        let batch = self.registry.rows(&self.schema, reader.map(Arc::as_ref));
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::once(async move { batch }),
        ))
    }
}

/// A function answering a value fixed for the connection, registered in its session at
/// startup: `pg_backend_pid()` (the process id the client received in BackendKeyData, as
/// `pg_stat_activity.pid` shows it) and `current_user`/`session_user`/`user` (who logged in).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct SessionConstant {
    name: &'static str,
    value: ScalarValue,
    signature: Signature,
}

impl SessionConstant {
    /// The function `name` answering `value`.
    pub(crate) fn udf(name: &'static str, value: ScalarValue) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            name,
            value,
            signature: Signature::nullary(Volatility::Stable),
        })
    }

    /// The functions a connection of `user` with process id `pid` registers.
    pub(crate) fn of_connection(pid: i32, user: &str) -> Vec<ScalarUDF> {
        let user = || ScalarValue::Utf8(Some(user.to_owned()));
        vec![
            Self::udf("pg_backend_pid", ScalarValue::Int32(Some(pid))),
            Self::udf("current_user", user()),
            Self::udf("session_user", user()),
            Self::udf("user", user()),
        ]
    }
}

impl ScalarUDFImpl for SessionConstant {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}
