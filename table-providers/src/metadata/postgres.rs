//! The PostgreSQL metadata store: dimensions and members in tables of the `quantatom` schema,
//! member paths as `ltree` with a GiST index, reached through a deadpool connection pool.
//!
//! The schema is created and upgraded by the migrations under `table-providers/migrations/`,
//! applied in order when the store is opened: each in one transaction, under an advisory lock
//! so that replicas starting together apply it once, and recorded in
//! `quantatom.schema_migrations`. A migration, once released, never changes; a change is a new
//! migration.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Timeouts};
use quantatom_udfs::MemberPath;
use quantatom_udfs::ltree::needs_postgres_16;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::{
    AccessModel, ChangeAuthor, Comparison, Dimension, FilteredMembers, Grant, Member, MemberColumn,
    MemberCommit, MemberFilter, MemberSpec, MemberValue, Membership, MetadataError, MetadataStore,
    Privilege, Role, SubtreeScope, member_differences, new_dimension_members,
};
use crate::mdf::StatementRef;

/// The migrations, in the order they apply: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "dimensions",
        include_str!("../../migrations/0001_dimensions.sql"),
    ),
    (
        2,
        "member_maintenance",
        include_str!("../../migrations/0002_member_maintenance.sql"),
    ),
    (
        3,
        "alternate_hierarchies",
        include_str!("../../migrations/0003_alternate_hierarchies.sql"),
    ),
    (
        4,
        "access",
        include_str!("../../migrations/0004_access.sql"),
    ),
    (
        5,
        "member_history",
        include_str!("../../migrations/0005_member_history.sql"),
    ),
];

/// The advisory lock taken while migrations apply (any fixed number; "QTMIGRAT" in ASCII).
const MIGRATION_LOCK: i64 = 0x5154_4d49_4752_4154;

/// How the store connects to PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresStoreSettings {
    /// A libpq-style URL or key=value string (`postgres://user@host:5432/db`).
    pub url: String,
    /// Connections the pool keeps at most.
    pub pool_size: usize,
    /// How long connecting, or waiting for a free connection, may take.
    pub timeout: Duration,
}

/// Metadata kept in PostgreSQL.
#[derive(Debug)]
pub struct PostgresMetadataStore {
    pool: Pool,
    /// The server's `server_version_num`: before 160000 its `ltree` refuses labels with `-`
    /// or longer than 255 characters, which Quantatom (PostgreSQL 16's rule) accepts.
    server_version: i32,
    /// Member and access changes this handle committed (see
    /// [`MetadataStore::committed_changes`]).
    committed: AtomicU64,
}

impl PostgresMetadataStore {
    /// Connects, and brings the schema up to date; fails if PostgreSQL cannot be reached or
    /// lacks the `ltree` extension.
    pub async fn open(settings: &PostgresStoreSettings) -> Result<Self, MetadataError> {
        let mut config: tokio_postgres::Config = settings
            .url
            .parse()
            .map_err(|e| MetadataError::Invalid(format!("PostgreSQL URL: {e}")))?;
        config.connect_timeout(settings.timeout);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .timeouts(Timeouts {
                wait: Some(settings.timeout),
                create: Some(settings.timeout),
                recycle: Some(settings.timeout),
            })
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| MetadataError::Invalid(format!("PostgreSQL pool: {e}")))?;
        let mut store = Self {
            pool,
            server_version: 0,
            committed: AtomicU64::new(0),
        };
        store.migrate().await?;
        let version: String = store
            .client()
            .await?
            .query_one("SHOW server_version_num", &[])
            .await
            .map_err(|e| store.failed(e))?
            .get(0);
        store.server_version = version.parse().unwrap_or(0);
        Ok(store)
    }

    /// Whether the server's `ltree` takes PostgreSQL 16's labels.
    fn has_postgres_16_labels(&self) -> bool {
        self.server_version >= 160000
    }

    /// Fails when a path (or pattern) has a label this server's `ltree` refuses.
    fn check_labels(&self, paths: impl IntoIterator<Item = String>) -> Result<(), MetadataError> {
        if self.has_postgres_16_labels() {
            return Ok(());
        }
        match paths.into_iter().find(|path| needs_postgres_16(path)) {
            Some(path) => Err(MetadataError::Unsupported(format!(
                "{path:?} has a label with '-' or longer than 255 characters, which the ltree of this PostgreSQL server ({}) refuses; PostgreSQL 16 takes it",
                self.server_version
            ))),
            None => Ok(()),
        }
    }

    /// What `error` means for the store. A lost connection also drops every idle pooled
    /// connection: an outage cut them all, and one whose end has not been noticed yet would
    /// otherwise be handed out after the server is back and fail once more.
    fn failed(&self, error: tokio_postgres::Error) -> MetadataError {
        let error = postgres_error(error);
        if matches!(error, MetadataError::Unavailable(_)) {
            self.pool.retain(|_, _| false);
        }
        error
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, MetadataError> {
        self.pool
            .get()
            .await
            .map_err(|e| MetadataError::Unavailable(format!("PostgreSQL: {e}")))
    }

    /// Applies the migrations not applied yet.
    async fn migrate(&self) -> Result<(), MetadataError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.failed(e))?;
        // First the lock: even `CREATE ... IF NOT EXISTS` fails when two sessions race it.
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| self.failed(e))?;
        transaction
            .batch_execute(
                "CREATE SCHEMA IF NOT EXISTS quantatom;
                 CREATE TABLE IF NOT EXISTS quantatom.schema_migrations (
                     version integer PRIMARY KEY,
                     name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .map_err(|e| self.failed(e))?;
        let applied: Vec<i32> = transaction
            .query("SELECT version FROM quantatom.schema_migrations", &[])
            .await
            .map_err(|e| self.failed(e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            transaction.batch_execute(sql).await.map_err(|e| {
                MetadataError::Storage(format!("migration {version} ({name}): {}", describe(&e)))
            })?;
            transaction
                .execute(
                    "INSERT INTO quantatom.schema_migrations (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .await
                .map_err(|e| self.failed(e))?;
            tracing::info!(version, name, "applied a metadata migration");
        }
        transaction.commit().await.map_err(|e| self.failed(e))
    }

    /// Fails with `NotFound` unless `dimension` exists.
    async fn version_of(
        &self,
        client: &deadpool_postgres::Object,
        dimension: &str,
    ) -> Result<u64, MetadataError> {
        let row = client
            .query_opt(
                "SELECT version FROM quantatom.dimensions WHERE name = $1",
                &[&dimension],
            )
            .await
            .map_err(|e| self.failed(e))?
            .ok_or_else(|| MetadataError::NotFound(format!("dimension {dimension:?}")))?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

/// A PostgreSQL error as the store reports it: lost connections as `Unavailable`.
fn postgres_error(error: tokio_postgres::Error) -> MetadataError {
    let lost = error.is_closed()
        || error.code().is_some_and(|code| {
            [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code)
        });
    match lost {
        true => MetadataError::Unavailable(format!("PostgreSQL: {}", describe(&error))),
        false => MetadataError::Storage(format!("PostgreSQL: {}", describe(&error))),
    }
}

/// The server's message when there is one (tokio-postgres's own `Display` says only "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// The columns of `members` as arrays, for statements that take all rows at once with
/// `unnest`: code, name, parent, path, is_leaf, sort_order, attributes.
struct MemberColumns {
    codes: Vec<String>,
    names: Vec<String>,
    parents: Vec<Option<String>>,
    paths: Vec<String>,
    leaves: Vec<bool>,
    orders: Vec<i32>,
    attributes: Vec<String>,
}

impl MemberColumns {
    fn of<'a>(members: impl IntoIterator<Item = &'a Member>) -> Result<Self, MetadataError> {
        let mut columns = MemberColumns {
            codes: Vec::new(),
            names: Vec::new(),
            parents: Vec::new(),
            paths: Vec::new(),
            leaves: Vec::new(),
            orders: Vec::new(),
            attributes: Vec::new(),
        };
        for m in members {
            columns.codes.push(m.code.clone());
            columns.names.push(m.name.clone());
            columns.parents.push(m.parent.clone());
            columns.paths.push(m.path.to_string());
            columns.leaves.push(m.is_leaf);
            columns.orders.push(m.sort_order);
            columns.attributes.push(
                serde_json::to_string(&m.attributes)
                    .map_err(|e| MetadataError::Invalid(e.to_string()))?,
            );
        }
        Ok(columns)
    }

    /// The parameters after the dimension's, in the order `unnest` takes them.
    fn parameters(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.codes,
            &self.names,
            &self.parents,
            &self.paths,
            &self.leaves,
            &self.orders,
            &self.attributes,
        ]
    }
}

/// The rows of `unnest` over [`MemberColumns::parameters`] bound from `$2`.
const MEMBER_ROWS: &str = "unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], \
     $7::int4[], $8::text[]) AS m(code, name, parent, path, is_leaf, sort_order, attributes)";

impl PostgresMetadataStore {
    /// Runs `sql` with the dimension as `$1` and `members`' columns after it.
    async fn execute_with_members(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
        sql: &str,
        dimension: &str,
        members: &[&Member],
    ) -> Result<u64, MetadataError> {
        if members.is_empty() {
            return Ok(0);
        }
        let columns = MemberColumns::of(members.iter().copied())?;
        let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&dimension];
        parameters.extend(columns.parameters());
        transaction
            .execute(sql, &parameters)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Inserts `members` of `dimension` in one statement.
    async fn insert_members(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
        dimension: &str,
        members: &[&Member],
    ) -> Result<(), MetadataError> {
        let sql = format!(
            "INSERT INTO quantatom.members \
             (dimension, code, name, parent, path, is_leaf, sort_order, attributes) \
             SELECT $1, code, name, parent, path::ltree, is_leaf, sort_order, attributes::jsonb \
             FROM {MEMBER_ROWS}"
        );
        self.execute_with_members(transaction, &sql, dimension, members)
            .await?;
        Ok(())
    }
}

/// A member read by [`MemberQuery`]'s columns.
fn member(dimension: &str, row: &tokio_postgres::Row) -> Result<Member, MetadataError> {
    let code: String = row.get(0);
    let corrupt =
        |what: String| MetadataError::Storage(format!("member {code:?} of {dimension:?}: {what}"));
    let path = MemberPath::parse(row.get(3)).map_err(|e| corrupt(e.to_string()))?;
    let attributes: BTreeMap<String, String> =
        serde_json::from_str(row.get(7)).map_err(|e| corrupt(e.to_string()))?;
    Ok(Member {
        name: row.get(1),
        parent: row.get(2),
        path,
        level: row.get(4),
        is_leaf: row.get(5),
        sort_order: row.get(6),
        attributes,
        code,
    })
}

/// The select list of a member query, in the order of `dim.*`'s columns, each with the
/// constant that stands in for it when the caller does not read it.
const MEMBER_SELECT: [(&str, &str); 8] = [
    ("code", "''"),
    ("name", "''"),
    ("parent", "NULL::text"),
    ("path::text", "''"),
    ("level", "0"),
    ("is_leaf", "false"),
    ("sort_order", "0"),
    ("attributes::text", "'{}'"),
];

/// The SQL reading a dimension's members that pass some filters, with its bind parameters:
/// values never become part of the SQL text.
struct MemberQuery {
    sql: String,
    parameters: Vec<Box<dyn ToSql + Sync + Send>>,
    shown: Vec<String>,
}

impl MemberQuery {
    fn new(
        dimension: &str,
        filters: &[MemberFilter],
        limit: Option<usize>,
        columns: Option<&[usize]>,
    ) -> Self {
        let mut query = Self {
            sql: String::new(),
            parameters: Vec::new(),
            shown: Vec::new(),
        };
        let dimension = query.bind(&MemberValue::Text(dimension.to_owned()));
        let mut conditions = vec![format!("dimension = {dimension}")];
        for filter in filters {
            let condition = match filter {
                MemberFilter::Compare(column, comparison, value) => {
                    let value = query.bind(value);
                    let ordered = !matches!(comparison, Comparison::Eq | Comparison::NotEq);
                    format!(
                        "{} {} {value}",
                        column_sql(*column, ordered),
                        comparison.sql()
                    )
                }
                MemberFilter::InList(column, values, negated) => {
                    let values: Vec<String> = values.iter().map(|v| query.bind(v)).collect();
                    let not = if *negated { "NOT " } else { "" };
                    format!(
                        "{} {not}IN ({})",
                        column_sql(*column, false),
                        values.join(", ")
                    )
                }
                MemberFilter::Like {
                    column,
                    pattern,
                    negated,
                } => {
                    let pattern = query.bind(&MemberValue::Text(pattern.clone()));
                    let not = if *negated { "NOT " } else { "" };
                    format!("{} {not}LIKE {pattern}", column_sql(*column, true))
                }
                MemberFilter::DescendantOf(path) => {
                    format!(
                        "path <@ {}::ltree",
                        query.bind(&MemberValue::Text(path.clone()))
                    )
                }
                MemberFilter::AncestorOf(path) => {
                    format!(
                        "path @> {}::ltree",
                        query.bind(&MemberValue::Text(path.clone()))
                    )
                }
                MemberFilter::Matches(pattern) => {
                    format!(
                        "path ~ {}::lquery",
                        query.bind(&MemberValue::Text(pattern.clone()))
                    )
                }
            };
            conditions.push(condition);
        }
        let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        // The columns not read are constants of their type: not fetched, still parsed alike.
        let selected: Vec<&str> = MEMBER_SELECT
            .iter()
            .enumerate()
            .map(|(i, (column, placeholder))| match columns {
                Some(columns) if !columns.contains(&i) => *placeholder,
                _ => *column,
            })
            .collect();
        query.sql = format!(
            "SELECT {} FROM quantatom.members WHERE {} ORDER BY sort_order{limit}",
            selected.join(", "),
            conditions.join(" AND ")
        );
        query
    }

    /// Adds a parameter; its placeholder, typed.
    fn bind(&mut self, value: &MemberValue) -> String {
        let number = self.parameters.len() + 1;
        let (parameter, shown, cast): (Box<dyn ToSql + Sync + Send>, String, &str) = match value {
            MemberValue::Text(text) => (Box::new(text.clone()), format!("{text:?}"), "text"),
            MemberValue::Int(n) => (Box::new(*n), n.to_string(), "int8"),
            MemberValue::Bool(flag) => (Box::new(*flag), flag.to_string(), "bool"),
        };
        self.parameters.push(parameter);
        self.shown.push(format!("${number}={shown}"));
        format!("${number}::{cast}")
    }
}

impl std::fmt::Display for MemberQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]", self.sql, self.shown.join(", "))
    }
}

/// A member column in SQL. Text that is ordered or matched is compared byte by byte
/// (`COLLATE "C"`), as DataFusion does; equality means the same under every deterministic
/// collation, and without the `COLLATE` it can use the primary key's index.
fn column_sql(column: MemberColumn, ordered: bool) -> String {
    let name = match column {
        MemberColumn::Code => "code",
        MemberColumn::Name => "name",
        MemberColumn::Parent => "parent",
        MemberColumn::Path => "path::text",
        MemberColumn::Level => "level",
        MemberColumn::IsLeaf => "is_leaf",
        MemberColumn::SortOrder => "sort_order",
    };
    match ordered && column.is_text() {
        true => format!(r#"{name} COLLATE "C""#),
        false => name.to_owned(),
    }
}

#[async_trait]
impl MetadataStore for PostgresMetadataStore {
    async fn dimensions(&self) -> Result<Vec<Dimension>, MetadataError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, description, hierarchy_of FROM quantatom.dimensions ORDER BY name",
                &[],
            )
            .await
            .map_err(|e| self.failed(e))?;
        Ok(rows
            .iter()
            .map(|row| Dimension {
                name: row.get(0),
                description: row.get(1),
                hierarchy_of: row.get(2),
            })
            .collect())
    }

    async fn members(&self, dimension: &str) -> Result<Vec<Member>, MetadataError> {
        Ok(self
            .members_where(dimension, &[], None, None)
            .await?
            .members)
    }

    fn filters_members(&self) -> bool {
        true
    }

    async fn members_with_codes(
        &self,
        dimension: &str,
        codes: &[String],
    ) -> Result<Vec<Member>, MetadataError> {
        let mut found = Vec::new();
        // Bounded lists: a statement takes at most 65,535 parameters.
        for chunk in codes.chunks(1_000) {
            let values = chunk.iter().cloned().map(MemberValue::Text).collect();
            let filter = MemberFilter::InList(MemberColumn::Code, values, false);
            let members = self.members_where(dimension, &[filter], None, None).await?;
            found.extend(members.members);
        }
        found.sort_by_key(|m| m.sort_order);
        Ok(found)
    }

    fn can_filter(&self, filter: &MemberFilter) -> bool {
        match filter {
            MemberFilter::DescendantOf(text)
            | MemberFilter::AncestorOf(text)
            | MemberFilter::Matches(text) => self.check_labels([text.clone()]).is_ok(),
            _ => true,
        }
    }

    async fn members_where(
        &self,
        dimension: &str,
        filters: &[MemberFilter],
        limit: Option<usize>,
        columns: Option<&[usize]>,
    ) -> Result<FilteredMembers, MetadataError> {
        let client = self.client().await?;
        let query = MemberQuery::new(dimension, filters, limit, columns);
        let parameters: Vec<&(dyn ToSql + Sync)> = query
            .parameters
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client
            .query(&query.sql, &parameters)
            .await
            .map_err(|e| self.failed(e))?;
        // Members found prove the dimension exists; only no rows needs the second question.
        if rows.is_empty() {
            self.version_of(&client, dimension).await?;
        }
        let members = rows
            .iter()
            .map(|row| member(dimension, row))
            .collect::<Result<_, _>>()?;
        Ok(FilteredMembers {
            members,
            query: query.to_string(),
        })
    }

    async fn dimension_version(&self, dimension: &str) -> Result<u64, MetadataError> {
        self.version_of(&self.client().await?, dimension).await
    }

    fn committed_changes(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    async fn commit_members(
        &self,
        dimension: &str,
        read_version: u64,
        members: Vec<Member>,
        author: &ChangeAuthor,
    ) -> Result<u64, MetadataError> {
        self.check_labels(members.iter().map(|m| m.path.to_string()))?;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.failed(e))?;
        // The dimension's row is the lock every change of its members takes.
        let version: i64 = transaction
            .query_opt(
                "SELECT version FROM quantatom.dimensions WHERE name = $1 FOR UPDATE",
                &[&dimension],
            )
            .await
            .map_err(|e| self.failed(e))?
            .ok_or_else(|| MetadataError::NotFound(format!("dimension {dimension:?}")))?
            .get(0);
        if version as u64 != read_version {
            return Err(MetadataError::Conflict(format!(
                "dimension {dimension:?} changed since version {read_version}"
            )));
        }
        let query = MemberQuery::new(dimension, &[], None, None);
        let before: BTreeMap<String, Member> = transaction
            .query(&query.sql, &[&dimension])
            .await
            .map_err(|e| self.failed(e))?
            .iter()
            .map(|row| member(dimension, row).map(|m| (m.code.clone(), m)))
            .collect::<Result<_, _>>()?;
        let after: BTreeMap<&str, &Member> = members.iter().map(|m| (m.code.as_str(), m)).collect();
        let gone: Vec<&str> = before
            .keys()
            .map(String::as_str)
            .filter(|code| !after.contains_key(code))
            .collect();
        let (changed, added): (Vec<&Member>, Vec<&Member>) = members
            .iter()
            .filter(|m| before.get(&m.code) != Some(m))
            .partition(|m| before.contains_key(&m.code));
        transaction
            .execute(
                "DELETE FROM quantatom.members WHERE dimension = $1 AND code = ANY($2)",
                &[&dimension, &gone],
            )
            .await
            .map_err(|e| self.failed(e))?;
        let update = format!(
            "UPDATE quantatom.members AS target SET name = m.name, parent = m.parent, \
             path = m.path::ltree, is_leaf = m.is_leaf, sort_order = m.sort_order, \
             attributes = m.attributes::jsonb \
             FROM {MEMBER_ROWS} WHERE target.dimension = $1 AND target.code = m.code"
        );
        self.execute_with_members(&transaction, &update, dimension, &changed)
            .await?;
        self.insert_members(&transaction, dimension, &added).await?;
        // The history row of each member changed, in the same transaction.
        let before_members: Vec<Member> = before.into_values().collect();
        let history = member_differences(&before_members, &members);
        let json = |member: &Option<Member>| -> Result<Option<String>, MetadataError> {
            member
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| MetadataError::Storage(e.to_string()))
        };
        let codes: Vec<&str> = history.iter().map(|(code, _, _)| code.as_str()).collect();
        let befores = history
            .iter()
            .map(|(_, old, _)| json(old))
            .collect::<Result<Vec<_>, _>>()?;
        let afters = history
            .iter()
            .map(|(_, _, new)| json(new))
            .collect::<Result<Vec<_>, _>>()?;
        let statement = author.statement.as_ref();
        transaction
            .execute(
                "INSERT INTO quantatom.member_history \
                 (dimension, version, committed_at, user_name, statement_id, statement, code, before, after) \
                 SELECT $1, $2, now(), $3, $4, $5, h.code, h.before::jsonb, h.after::jsonb \
                 FROM unnest($6::text[], $7::text[], $8::text[]) AS h(code, before, after)",
                &[
                    &dimension,
                    &(version + 1),
                    &author.user,
                    &statement.map(|s| s.id.as_str()),
                    &statement.map(|s| s.text.as_str()),
                    &codes,
                    &befores,
                    &afters,
                ],
            )
            .await
            .map_err(|e| self.failed(e))?;
        let version: i64 = transaction
            .query_one(
                "UPDATE quantatom.dimensions SET version = version + 1 WHERE name = $1 \
                 RETURNING version",
                &[&dimension],
            )
            .await
            .map_err(|e| self.failed(e))?
            .get(0);
        transaction.commit().await.map_err(|e| self.failed(e))?;
        self.committed.fetch_add(1, Ordering::AcqRel);
        Ok(version as u64)
    }

    async fn member_history(
        &self,
        dimension: &str,
        after: u64,
    ) -> Result<Vec<MemberCommit>, MetadataError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT version, (extract(epoch FROM committed_at) * 1000)::bigint, user_name, \
                 statement_id, statement, code, before::text, after::text \
                 FROM quantatom.member_history WHERE dimension = $1 AND version > $2 \
                 ORDER BY version, code",
                &[&dimension, &(after as i64)],
            )
            .await
            .map_err(|e| self.failed(e))?;
        let parse = |text: Option<String>| -> Result<Option<Member>, MetadataError> {
            text.map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| MetadataError::Storage(format!("member history: {e}")))
        };
        let mut history: Vec<MemberCommit> = Vec::new();
        for row in rows {
            let version = row.get::<_, i64>(0) as u64;
            if history
                .last()
                .is_none_or(|commit| commit.version != version)
            {
                let statement = match (
                    row.get::<_, Option<String>>(3),
                    row.get::<_, Option<String>>(4),
                ) {
                    (Some(id), Some(text)) => Some(StatementRef { id, text }),
                    _ => None,
                };
                history.push(MemberCommit {
                    version,
                    committed_at_ms: row.get::<_, i64>(1) as u64,
                    author: ChangeAuthor {
                        user: row.get(2),
                        statement,
                    },
                    changes: Vec::new(),
                });
            }
            let commit = history.last_mut().expect("pushed above");
            commit
                .changes
                .push((row.get(5), parse(row.get(6))?, parse(row.get(7))?));
        }
        Ok(history)
    }

    async fn access(&self) -> Result<(AccessModel, u64), MetadataError> {
        let mut client = self.client().await?;
        // One snapshot for the four reads.
        let transaction = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| self.failed(e))?;
        let query = |sql: &'static str| transaction.query(sql, &[]);
        let version: i64 = query("SELECT version FROM quantatom.access_version")
            .await
            .map_err(|e| self.failed(e))?
            .first()
            .map(|row| row.get(0))
            .unwrap_or_default();
        let mut model = AccessModel::default();
        for row in query("SELECT name, can_login, is_admin, password_verifier FROM quantatom.roles")
            .await
            .map_err(|e| self.failed(e))?
        {
            let role = Role {
                name: row.get(0),
                can_login: row.get(1),
                is_admin: row.get(2),
                password_verifier: row.get(3),
            };
            model.roles.insert(role.name.clone(), role);
        }
        for row in query("SELECT role, member FROM quantatom.role_memberships")
            .await
            .map_err(|e| self.failed(e))?
        {
            model.memberships.insert(Membership {
                role: row.get(0),
                member: row.get(1),
            });
        }
        for row in query(
            "SELECT grantee, privilege, object, scope_dimension, scope_path::text \
             FROM quantatom.grants",
        )
        .await
        .map_err(|e| self.failed(e))?
        {
            let privilege: String = row.get(1);
            let corrupt = |what: String| MetadataError::Storage(format!("a grant: {what}"));
            let scope = match (
                row.get::<_, Option<String>>(3),
                row.get::<_, Option<&str>>(4),
            ) {
                (Some(dimension), Some(path)) => Some(SubtreeScope {
                    dimension,
                    path: MemberPath::parse(path).map_err(|e| corrupt(e.to_string()))?,
                }),
                _ => None,
            };
            model.grants.insert(Grant {
                grantee: row.get(0),
                privilege: Privilege::named(&privilege)
                    .ok_or_else(|| corrupt(format!("privilege {privilege:?}")))?,
                object: row.get(2),
                scope,
            });
        }
        transaction.commit().await.map_err(|e| self.failed(e))?;
        Ok((model, version as u64))
    }

    async fn commit_access(
        &self,
        read_version: u64,
        model: AccessModel,
    ) -> Result<u64, MetadataError> {
        let scopes = model.grants.iter().filter_map(|g| g.scope.as_ref());
        self.check_labels(scopes.map(|scope| scope.path.to_string()))?;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.failed(e))?;
        let version: i64 = transaction
            .query_one(
                "SELECT version FROM quantatom.access_version FOR UPDATE",
                &[],
            )
            .await
            .map_err(|e| self.failed(e))?
            .get(0);
        if version as u64 != read_version {
            return Err(MetadataError::Conflict(format!(
                "roles and grants changed since version {read_version}"
            )));
        }
        let roles: Vec<&Role> = model.roles.values().collect();
        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        let logins: Vec<bool> = roles.iter().map(|r| r.can_login).collect();
        let admins: Vec<bool> = roles.iter().map(|r| r.is_admin).collect();
        let verifiers: Vec<Option<&str>> = roles
            .iter()
            .map(|r| r.password_verifier.as_deref())
            .collect();
        let (member_roles, members): (Vec<&str>, Vec<&str>) = model
            .memberships
            .iter()
            .map(|m| (m.role.as_str(), m.member.as_str()))
            .unzip();
        let grants: Vec<&Grant> = model.grants.iter().collect();
        let grantees: Vec<&str> = grants.iter().map(|g| g.grantee.as_str()).collect();
        let privileges: Vec<&str> = grants.iter().map(|g| g.privilege.sql()).collect();
        let objects: Vec<&str> = grants.iter().map(|g| g.object.as_str()).collect();
        let scope_dimensions: Vec<Option<&str>> = grants
            .iter()
            .map(|g| g.scope.as_ref().map(|s| s.dimension.as_str()))
            .collect();
        let scope_paths: Vec<Option<String>> = grants
            .iter()
            .map(|g| g.scope.as_ref().map(|s| s.path.to_string()))
            .collect();
        // Grants and memberships are small: written again whole; roles are upserted so that
        // a role's row stays while it exists.
        let statements: [(&str, Vec<&(dyn ToSql + Sync)>); 6] = [
            ("DELETE FROM quantatom.grants", vec![]),
            ("DELETE FROM quantatom.role_memberships", vec![]),
            (
                "DELETE FROM quantatom.roles WHERE name <> ALL($1)",
                vec![&names],
            ),
            (
                "INSERT INTO quantatom.roles (name, can_login, is_admin, password_verifier) \
                 SELECT * FROM unnest($1::text[], $2::bool[], $3::bool[], $4::text[]) \
                 ON CONFLICT (name) DO UPDATE SET can_login = excluded.can_login, \
                 is_admin = excluded.is_admin, password_verifier = excluded.password_verifier",
                vec![&names, &logins, &admins, &verifiers],
            ),
            (
                "INSERT INTO quantatom.role_memberships (role, member) \
                 SELECT * FROM unnest($1::text[], $2::text[])",
                vec![&member_roles, &members],
            ),
            (
                "INSERT INTO quantatom.grants \
                 (grantee, privilege, object, scope_dimension, scope_path) \
                 SELECT g, p, o, d, s::ltree \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
                 AS t(g, p, o, d, s)",
                vec![
                    &grantees,
                    &privileges,
                    &objects,
                    &scope_dimensions,
                    &scope_paths,
                ],
            ),
        ];
        for (sql, parameters) in statements {
            transaction
                .execute(sql, &parameters)
                .await
                .map_err(|e| self.failed(e))?;
        }
        let version: i64 = transaction
            .query_one(
                "UPDATE quantatom.access_version SET version = version + 1 RETURNING version",
                &[],
            )
            .await
            .map_err(|e| self.failed(e))?
            .get(0);
        transaction.commit().await.map_err(|e| self.failed(e))?;
        self.committed.fetch_add(1, Ordering::AcqRel);
        Ok(version as u64)
    }

    async fn create_dimension(
        &self,
        dimension: Dimension,
        members: Vec<MemberSpec>,
    ) -> Result<(), MetadataError> {
        let members = new_dimension_members(self, &dimension, members).await?;
        self.check_labels(members.iter().map(|m| m.path.to_string()))?;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.failed(e))?;
        let created = transaction
            .execute(
                "INSERT INTO quantatom.dimensions (name, description, hierarchy_of) \
                 VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                &[
                    &dimension.name,
                    &dimension.description,
                    &dimension.hierarchy_of,
                ],
            )
            .await
            .map_err(|e| self.failed(e))?;
        if created == 0 {
            return Err(MetadataError::AlreadyExists(format!(
                "dimension {:?}",
                dimension.name
            )));
        }
        let members: Vec<&Member> = members.iter().collect();
        self.insert_members(&transaction, &dimension.name, &members)
            .await?;
        transaction.commit().await.map_err(|e| self.failed(e))
    }
}
