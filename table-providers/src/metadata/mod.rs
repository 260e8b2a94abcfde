//! The metadata store: dimensions and members of the planning model, alternate hierarchies,
//! and roles, memberships and grants, behind one trait with two implementations: embedded (the
//! data folder) and PostgreSQL.
//!
//! Cell data never lives here; cubes are MDF tables (see [`crate::mdf`]).

mod access;
mod calendar;
mod coordinates;
mod dimension_table;
mod embedded;
mod maintenance;
mod member_dml;
mod member_filter;
mod model;
mod passwords;
mod postgres;
mod session_access;

use async_trait::async_trait;
use std::fmt::Debug;

pub use access::{
    AccessChange, AccessModel, Grant, Membership, Privilege, Role, SubtreeScope,
    apply_access_changes, change_access,
};
pub(crate) use calendar::calendar_version;
pub use calendar::{CalendarSchemaProvider, TIME_DIMENSION, VersionSwitchoverFunction};
pub use coordinates::CoordinateCheck;
pub use dimension_table::{DimensionSchemaProvider, DimensionTable};
pub use embedded::EmbeddedMetadataStore;
pub use maintenance::{ChangedMembers, MemberChange, apply_member_changes};
pub use member_dml::{MemberCells, MemberDmlRule};
pub use member_filter::{Comparison, MemberColumn, MemberFilter, MemberValue};
pub use model::{
    ChangeAuthor, Dimension, HIERARCHY_SEPARATOR, Member, MemberCommit, MemberSpec,
    member_differences,
};
pub use passwords::ScramVerifier;
pub use postgres::{PostgresMetadataStore, PostgresStoreSettings};
pub use session_access::{Area, Reach, SessionAccess};

/// Why a metadata operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The named object does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// An object of that name exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The definition is not valid (bad code, unknown parent, ...).
    #[error("invalid metadata: {0}")]
    Invalid(String),
    /// The backing storage failed.
    #[error("metadata storage error: {0}")]
    Storage(String),
    /// The backing storage cannot be reached (PostgreSQL down or out of connections).
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// Another change to the same dimension committed first; the statement may be retried.
    #[error("could not change the members: {0}")]
    Conflict(String),
    /// A member code that must be unique in its dimension would appear twice.
    #[error("{0} already exists in the dimension")]
    UniqueViolation(String),
    /// The change would leave something pointing at a member that is gone (children, cells).
    #[error("{0}")]
    InUse(String),
    /// A cell would sit on a member with members under it.
    #[error("{0}")]
    NotALeaf(String),
    /// A required value is NULL.
    #[error("{0}")]
    NotNull(String),
    /// Other objects depend on the one to drop (a role's grants and memberships).
    #[error("{0}")]
    DependentObjects(String),
    /// A role grant that cannot be (a membership cycle).
    #[error("{0}")]
    InvalidGrant(String),
    /// The store's server cannot hold it (PostgreSQL 15 and a PostgreSQL 16 label).
    #[error("{0}")]
    Unsupported(String),
    /// A statement gave a value to a column derived from others (`path`, `level`, ...).
    #[error("{0}")]
    Derived(String),
    /// The session's user may not do it (a missing grant, or cells outside its scope).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
}

impl MetadataError {
    /// The SQLSTATE a client sees for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            MetadataError::NotFound(_) => "42704",
            MetadataError::AlreadyExists(_) => "42710",
            MetadataError::Invalid(_) => "22023",
            MetadataError::Storage(_) => "58030",
            MetadataError::Unavailable(_) => "08006",
            MetadataError::Conflict(_) => "40001",
            MetadataError::UniqueViolation(_) => "23505",
            MetadataError::InUse(_) => "23503",
            MetadataError::NotNull(_) => "23502",
            MetadataError::NotALeaf(_) => "23514",
            MetadataError::Derived(_) => "428C9",
            MetadataError::PermissionDenied(_) => "42501",
            MetadataError::Unsupported(_) => "0A000",
            MetadataError::DependentObjects(_) => "2BP01",
            MetadataError::InvalidGrant(_) => "0LP01",
        }
    }
}

impl From<MetadataError> for datafusion::common::DataFusionError {
    fn from(error: MetadataError) -> Self {
        datafusion::common::DataFusionError::External(Box::new(error))
    }
}

/// What [`MetadataStore::members_where`] found, and how.
#[derive(Debug, Clone)]
pub struct FilteredMembers {
    /// The members.
    pub members: Vec<Member>,
    /// The query the store ran, as `EXPLAIN` shows it.
    pub query: String,
}

/// The members of a new dimension or alternate hierarchy, once its name and their hierarchy
/// are checked (the rules every store applies before it writes).
async fn new_dimension_members(
    store: &dyn MetadataStore,
    dimension: &Dimension,
    specs: Vec<MemberSpec>,
) -> Result<Vec<Member>, MetadataError> {
    validate_dimension_name(&dimension.name)?;
    let members = Member::build_hierarchy(specs)?;
    check_alternate_hierarchy(store, dimension, &members).await?;
    Ok(members)
}

/// For an alternate hierarchy (else nothing to check): its name is `<dimension>__<hierarchy>`
/// of an existing dimension that is not itself an alternate hierarchy, and every leaf is a
/// member of that dimension (cells sit on those).
pub async fn check_alternate_hierarchy(
    store: &dyn MetadataStore,
    dimension: &Dimension,
    members: &[Member],
) -> Result<(), MetadataError> {
    let Some(base) = &dimension.hierarchy_of else {
        return Ok(());
    };
    let invalid = |what: String| Err(MetadataError::Invalid(what));
    let Some(hierarchy) = dimension
        .name
        .strip_prefix(base.as_str())
        .and_then(|rest| rest.strip_prefix(HIERARCHY_SEPARATOR))
        .filter(|h| !h.is_empty())
    else {
        return invalid(format!(
            "an alternate hierarchy of {base} is named {base}{HIERARCHY_SEPARATOR}<hierarchy>, not {}",
            dimension.name
        ));
    };
    let dimensions = store.dimensions().await?;
    match dimensions.iter().find(|d| &d.name == base) {
        None => return Err(MetadataError::NotFound(format!("dimension {base:?}"))),
        Some(d) if d.hierarchy_of.is_some() => {
            return invalid(format!(
                "{base} is an alternate hierarchy itself; hierarchy {hierarchy} must arrange a dimension"
            ));
        }
        Some(_) => {}
    }
    let codes: std::collections::HashSet<String> = store
        .members(base)
        .await?
        .into_iter()
        .map(|m| m.code)
        .collect();
    match members
        .iter()
        .find(|m| m.is_leaf && !codes.contains(&m.code))
    {
        Some(stray) => invalid(format!(
            "leaf {:?} of hierarchy {} is not a member of {base}: the leaves of an alternate hierarchy are the dimension's members",
            stray.code, dimension.name
        )),
        None => Ok(()),
    }
}

/// A dimension name is a lower-case SQL identifier, so it needs no quoting.
fn validate_dimension_name(name: &str) -> Result<(), MetadataError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(MetadataError::Invalid(format!(
            "dimension name {name:?} must be a lower-case identifier (a-z, 0-9, _)"
        )))
    }
}

/// Where dimensions and members live. Implementations must be safe to share between sessions.
#[async_trait]
pub trait MetadataStore: Debug + Send + Sync {
    /// All dimensions, ordered by name.
    async fn dimensions(&self) -> Result<Vec<Dimension>, MetadataError>;

    /// The members of `dimension` in model order (parents before children).
    async fn members(&self, dimension: &str) -> Result<Vec<Member>, MetadataError>;

    /// A number that changes whenever the members of `dimension` change, so that a plan which
    /// read the members at one version is known to be still right while the version stays.
    async fn dimension_version(&self, dimension: &str) -> Result<u64, MetadataError>;

    /// The members of `dimension` whose code is one of `codes`, in model order.
    async fn members_with_codes(
        &self,
        dimension: &str,
        codes: &[String],
    ) -> Result<Vec<Member>, MetadataError>;

    /// Whether the store evaluates [`MemberFilter`]s itself ([`MetadataStore::members_where`]);
    /// when not, the engine filters the members it reads.
    fn filters_members(&self) -> bool {
        false
    }

    /// Whether the store can evaluate `filter`, when it [filters members](Self::filters_members)
    /// at all (a PostgreSQL 15 server cannot parse PostgreSQL 16's labels).
    fn can_filter(&self, _filter: &MemberFilter) -> bool {
        true
    }

    /// The members of `dimension` passing every filter, at most `limit` of them, in model
    /// order, and the query that found them. Only for a store that
    /// [filters members](MetadataStore::filters_members). `columns` (indices into the columns
    /// of `dim.*`, [`dimension_table::dimension_schema`]) are those the caller reads; `None`
    /// is all, and the others may hold placeholders.
    async fn members_where(
        &self,
        dimension: &str,
        _filters: &[MemberFilter],
        _limit: Option<usize>,
        _columns: Option<&[usize]>,
    ) -> Result<FilteredMembers, MetadataError> {
        Err(MetadataError::Invalid(format!(
            "this metadata store does not filter the members of {dimension:?} itself"
        )))
    }

    /// Replaces the members of `dimension` by `members` (derived by [`apply_member_changes`]
    /// from the members read at `read_version`), atomically; fails with
    /// [`MetadataError::Conflict`] when the dimension changed since that version. Returns the
    /// new version. The members changed are recorded with `author` in the same commit (see
    /// [`MetadataStore::member_history`]).
    async fn commit_members(
        &self,
        dimension: &str,
        read_version: u64,
        members: Vec<Member>,
        author: &ChangeAuthor,
    ) -> Result<u64, MetadataError>;

    /// The changes of `dimension`'s members committed after version `after`, oldest first
    /// (versions committed before the store recorded history are missing).
    async fn member_history(
        &self,
        dimension: &str,
        after: u64,
    ) -> Result<Vec<MemberCommit>, MetadataError>;

    /// Every role, membership and grant, and the version they are at.
    async fn access(&self) -> Result<(AccessModel, u64), MetadataError>;

    /// How many member and access changes this handle has committed: it moves whenever what
    /// a session resolved from the store (its grants' scopes) may have changed through this
    /// process. Changes other processes commit are not counted.
    fn committed_changes(&self) -> u64;

    /// Replaces the access model by `model` (derived by [`apply_access_changes`] from the one
    /// read at `read_version`), atomically; fails with [`MetadataError::Conflict`] when it
    /// changed since. Returns the new version.
    async fn commit_access(
        &self,
        read_version: u64,
        model: AccessModel,
    ) -> Result<u64, MetadataError>;

    /// Creates a dimension with its members; fails if one of that name exists.
    async fn create_dimension(
        &self,
        dimension: Dimension,
        members: Vec<MemberSpec>,
    ) -> Result<(), MetadataError>;
}
