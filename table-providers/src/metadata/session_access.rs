//! What one session's user may do: the access model ([`super::access`]) resolved for that
//! user, through its roles, into the cells each privilege reaches.
//!
//! A session carries its [`SessionAccess`] in its configuration (set by the server at login,
//! never by `SET`); the engine's access rule reads it to refuse statements (42501) and to
//! narrow scans to the scope, writes check their rows against it, and the hot-tile cache puts
//! its fingerprint into every key. A session without one is the engine's own (tests, the
//! command line, the hot-tile refresher replaying a user's query with that user's
//! configuration): unrestricted.
//!
//! Scopes: a role's grants of one privilege on one object are combined as a union within a
//! dimension (`entity <@ 'Total.EMEA'` and `entity <@ 'Total.APAC'`: both subtrees) and as an
//! intersection across dimensions (`entity <@ 'Total.EMEA'` and `account <@ 'PL'`: EMEA's P&L
//! cells): an [`Area`]. What a user holds through several roles adds up (the union of their
//! areas). An unscoped grant reaches every cell. A scope on an alternate hierarchy reaches the
//! members of its dimension under that subtree.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};
use datafusion::config::{ConfigEntry, ConfigExtension, ConfigOptions, ExtensionOptions};
use quantatom_udfs::MemberPath;
use sha2::{Digest, Sha256};

use super::access::{AccessModel, Privilege, roles_of};
use super::{MetadataError, MetadataStore};

/// Cells whose member in each listed dimension column is one of its codes: what one role's
/// scoped grants of a privilege reach.
pub type Area = BTreeMap<String, Arc<BTreeSet<String>>>;

/// The cells (or members) one privilege on one object reaches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reach {
    /// All of them.
    All,
    /// Those inside any of these areas (one per role holding scoped grants of it: privileges
    /// a user holds through several roles add up).
    Members(Vec<Area>),
}

/// What a session's user may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAccess {
    user: String,
    admin: bool,
    reach: BTreeMap<(String, Privilege), Reach>,
    fingerprint: String,
}

impl SessionAccess {
    /// An administrator: everything.
    pub fn administrator(user: impl Into<String>) -> Self {
        Self::new(user.into(), true, BTreeMap::new())
    }

    fn new(user: String, admin: bool, reach: BTreeMap<(String, Privilege), Reach>) -> Self {
        // Two users who reach the same cells share a fingerprint, and so their tiles.
        let mut hash = Sha256::new();
        hash.update(if admin { "admin\n" } else { "grants\n" });
        for ((object, privilege), reach) in &reach {
            hash.update(format!("{object} {}\n", privilege.sql()));
            if let Reach::Members(areas) = reach {
                for area in areas {
                    hash.update(" area\n");
                    for (column, codes) in area {
                        hash.update(format!("  {column}:"));
                        for code in codes.iter() {
                            hash.update(format!("{code},"));
                        }
                        hash.update("\n");
                    }
                }
            }
        }
        let fingerprint = hash
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Self {
            user,
            admin,
            reach,
            fingerprint,
        }
    }

    /// Resolves what `user` may do from the store's access model and members. A user the
    /// model does not know (any more) is an administrator when `unknown_is_admin` (under
    /// `trust` authentication, where anyone could name an administrator anyway), else may do
    /// nothing: a role dropped while its session is open loses its privileges.
    pub async fn resolve(
        store: &dyn MetadataStore,
        user: &str,
        unknown_is_admin: bool,
    ) -> Result<Self, MetadataError> {
        let (model, _) = store.access().await?;
        if !model.roles.contains_key(user) {
            return Ok(if unknown_is_admin {
                Self::administrator(user)
            } else {
                Self::new(user.to_owned(), false, BTreeMap::new())
            });
        }
        let roles = roles_of(&model, user);
        if roles
            .iter()
            .any(|role| model.roles.get(role).is_some_and(|r| r.is_admin))
        {
            return Ok(Self::administrator(user));
        }
        let reach = resolve_reach(store, &model, &roles).await?;
        Ok(Self::new(user.to_owned(), false, reach))
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether the user administers Quantatom.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// A digest of everything the user reaches: equal for users who see the same cells.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// What `privilege` on `object` (`cube.finance`, `dim.entity`) reaches; `None`: nothing.
    pub fn reach(&self, object: &str, privilege: Privilege) -> Option<&Reach> {
        static ALL: Reach = Reach::All;
        if self.admin {
            return Some(&ALL);
        }
        self.reach.get(&(object.to_owned(), privilege))
    }

    /// What `privilege` on `object` reaches, or 42501 when nothing.
    pub fn require(&self, object: &str, privilege: Privilege) -> Result<&Reach, MetadataError> {
        self.reach(object, privilege).ok_or_else(|| {
            MetadataError::PermissionDenied(format!(
                "user \"{}\" has no {} privilege on {object}",
                self.user,
                privilege.sql()
            ))
        })
    }

    /// 42501 unless the user is an administrator; `what` names the action.
    pub fn require_admin(&self, what: &str) -> Result<(), MetadataError> {
        if self.admin {
            Ok(())
        } else {
            Err(MetadataError::PermissionDenied(format!(
                "only an administrator may {what}"
            )))
        }
    }

    /// Whether catalogs list `schema.table` to the user: a cube or dimension it holds any
    /// privilege on, a cube's ledger view when it may read the cube, `audit.ledger` for
    /// administrators only, and every table outside `cube`, `dim` and `audit`.
    pub fn may_list(&self, schema: &str, table: &str) -> bool {
        if self.admin {
            return true;
        }
        let any_privilege =
            |object: String| self.reach.keys().any(|(granted, _)| *granted == object);
        match schema {
            "cube" | "dim" => any_privilege(format!("{schema}.{table}")),
            "audit" => {
                table != "ledger"
                    && self
                        .reach(&format!("cube.{table}"), Privilege::Select)
                        .is_some()
            }
            _ => true,
        }
    }

    /// 42501 unless `privilege` on `object` reaches every row of `batches`; `columns` says in
    /// which column a row's member of each dimension is. Writes call this on the rows they are
    /// about to commit, so a write reaching outside its scope is refused whole.
    pub fn check_rows(
        &self,
        object: &str,
        privilege: Privilege,
        batches: &[RecordBatch],
        columns: &[(&str, &str)],
    ) -> Result<(), MetadataError> {
        let Reach::Members(areas) = self.require(object, privilege)? else {
            return Ok(());
        };
        let outside = |detail: String| {
            MetadataError::PermissionDenied(format!(
                "user \"{}\" may {} only some cells of {object}, and {detail}",
                self.user,
                privilege.sql()
            ))
        };
        let dimensions: BTreeSet<&String> = areas.iter().flat_map(|area| area.keys()).collect();
        for batch in batches {
            // Each scoped dimension's member in every row, as text.
            let mut members = BTreeMap::new();
            for dimension in &dimensions {
                let Some((_, column)) = columns.iter().find(|(d, _)| d == dimension) else {
                    return Err(outside(format!("this write has no {dimension} to check")));
                };
                let Some(values) = batch.column_by_name(column) else {
                    return Err(outside(format!("this write has no {column} to check")));
                };
                let values = cast(values, &DataType::Utf8)
                    .map_err(|e| MetadataError::Invalid(e.to_string()))?;
                members.insert(dimension.as_str(), (column, values));
            }
            let member = |dimension: &str, row: usize| {
                let values = members[dimension].1.as_string::<i32>();
                values.is_valid(row).then(|| values.value(row))
            };
            for row in 0..batch.num_rows() {
                let inside = areas.iter().any(|area| {
                    area.iter().all(|(dimension, codes)| {
                        member(dimension, row).is_some_and(|code| codes.contains(code))
                    })
                });
                if !inside {
                    let cell: Vec<String> = dimensions
                        .iter()
                        .map(|d| format!("{} {:?}", members[d.as_str()].0, member(d, row)))
                        .collect();
                    return Err(outside(format!(
                        "a row with {} is outside its scope",
                        cell.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// The access of the session `config` belongs to; `None` for the engine's own sessions.
    pub fn of(config: &ConfigOptions) -> Option<&Arc<SessionAccess>> {
        config
            .extensions
            .get::<SessionAccessOption>()
            .and_then(|option| option.0.as_ref())
    }

    /// Sets the access of the session `config` belongs to.
    pub fn install(self: Arc<Self>, config: &mut ConfigOptions) {
        config.extensions.insert(SessionAccessOption(Some(self)));
    }
}

/// The subtrees a role's grants of one privilege on one object reach, by dimension; `None`
/// when one of them is unscoped.
type ScopePaths = Option<BTreeMap<String, Vec<MemberPath>>>;

/// What `roles` may do, grant by grant: each role's scoped grants of a privilege become the
/// area of member codes they reach; the areas of several roles add up.
async fn resolve_reach(
    store: &dyn MetadataStore,
    model: &AccessModel,
    roles: &BTreeSet<String>,
) -> Result<BTreeMap<(String, Privilege), Reach>, MetadataError> {
    let mut scopes: BTreeMap<(String, Privilege), BTreeMap<&str, ScopePaths>> = BTreeMap::new();
    for grant in model.grants.iter().filter(|g| roles.contains(&g.grantee)) {
        let entry = scopes
            .entry((grant.object.clone(), grant.privilege))
            .or_default()
            .entry(grant.grantee.as_str())
            .or_insert_with(|| Some(BTreeMap::new()));
        match (&grant.scope, entry.as_mut()) {
            (None, _) => *entry = None,
            (Some(scope), Some(dimensions)) => dimensions
                .entry(scope.dimension.clone())
                .or_default()
                .push(scope.path.clone()),
            (Some(_), None) => {}
        }
    }
    let dimensions = store.dimensions().await?;
    let mut members = BTreeMap::new();
    let mut reach = BTreeMap::new();
    for (key, by_role) in scopes {
        if by_role.values().any(Option::is_none) {
            reach.insert(key, Reach::All);
            continue;
        }
        let mut areas: Vec<Area> = Vec::new();
        for scoped in by_role.into_values().flatten() {
            let mut columns: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (dimension, paths) in scoped {
                if !members.contains_key(&dimension) {
                    members.insert(dimension.clone(), store.members(&dimension).await?);
                }
                // An alternate hierarchy's scope is a set of its dimension's members.
                let column = dimensions
                    .iter()
                    .find(|d| d.name == dimension)
                    .and_then(|d| d.hierarchy_of.clone())
                    .unwrap_or_else(|| dimension.clone());
                let codes = columns.entry(column).or_default();
                codes.extend(
                    members[&dimension]
                        .iter()
                        .filter(|m| paths.iter().any(|p| m.path.is_descendant_of(p)))
                        .map(|m| m.code.clone()),
                );
            }
            let area: Area = columns
                .into_iter()
                .map(|(column, codes)| (column, Arc::new(codes)))
                .collect();
            if !areas.contains(&area) {
                areas.push(area);
            }
        }
        reach.insert(key, Reach::Members(areas));
    }
    Ok(reach)
}

/// [`SessionAccess`] as a configuration extension, so that analyzer rules (which see only a
/// session's `ConfigOptions`) can read it. It has no settings: `SET` cannot change it.
#[derive(Debug, Clone, Default)]
struct SessionAccessOption(Option<Arc<SessionAccess>>);

impl ConfigExtension for SessionAccessOption {
    const PREFIX: &'static str = "quantatom_access";
}

impl ExtensionOptions for SessionAccessOption {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, _value: &str) -> Result<()> {
        Err(DataFusionError::External(Box::new(
            MetadataError::PermissionDenied(format!(
                "{}.{key} cannot be set: a session's access comes from its user's grants",
                Self::PREFIX
            )),
        )))
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        Vec::new()
    }
}
