//! Who may do what: roles (a user is a role that can log in, as in PostgreSQL), role
//! membership, and grants of privileges on cubes and dimensions, each optionally scoped to a
//! dimension subtree (`entity <@ 'Total.EMEA'`).
//!
//! Like members, the whole access model is read at a version, changed by one function both
//! stores share ([`apply_access_changes`]), and committed whole by the store
//! ([`MetadataStore::commit_access`]) only if nothing changed since that version.
//! [`change_access`] does all three, after checking grant scopes against the dimensions.

use std::collections::{BTreeMap, BTreeSet};

use quantatom_udfs::MemberPath;
use serde::{Deserialize, Serialize};

use super::{MetadataError, MetadataStore};

/// A role: a user when it can log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// The role's name, as clients log in with it.
    pub name: String,
    /// Whether the role can log in (a user).
    pub can_login: bool,
    /// Whether the role administers Quantatom: every privilege, and managing roles.
    pub is_admin: bool,
    /// The password verifier as PostgreSQL stores one (`SCRAM-SHA-256$...`), never a password.
    pub password_verifier: Option<String>,
}

/// What a grant allows on its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Privilege {
    /// Read it.
    Select,
    /// Add rows (cells, members).
    Insert,
    /// Change rows.
    Update,
    /// Remove rows.
    Delete,
}

impl Privilege {
    /// PostgreSQL's name for it (`SELECT`, ...).
    pub fn sql(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
        }
    }

    /// The privilege PostgreSQL calls `name` (any case).
    pub fn named(name: &str) -> Option<Self> {
        [
            Privilege::Select,
            Privilege::Insert,
            Privilege::Update,
            Privilege::Delete,
        ]
        .into_iter()
        .find(|p| p.sql().eq_ignore_ascii_case(name))
    }
}

/// The cells or members a scoped grant covers: those at or under one member of a dimension.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SubtreeScope {
    /// The dimension.
    pub dimension: String,
    /// The path of the subtree's top member.
    #[serde(with = "super::model::path_as_text")]
    pub path: MemberPath,
}

/// A privilege on a cube (`cube.finance`) or dimension (`dim.entity`) held by a role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// The role holding it.
    pub grantee: String,
    /// What it allows.
    pub privilege: Privilege,
    /// The object, schema-qualified: `cube.<name>` or `dim.<name>`.
    pub object: String,
    /// When set, the privilege covers only that subtree; a role may hold several scoped
    /// grants of one privilege (the union is what it may reach).
    pub scope: Option<SubtreeScope>,
}

/// `member` is a member of `role`: it has the role's privileges.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Membership {
    /// The role whose privileges are passed on.
    pub role: String,
    /// The role (or user) receiving them.
    pub member: String,
}

/// Every role, membership and grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessModel {
    /// Roles by name.
    pub roles: BTreeMap<String, Role>,
    /// Memberships.
    pub memberships: BTreeSet<Membership>,
    /// Grants.
    pub grants: BTreeSet<Grant>,
}

/// One change to the access model, as `CREATE ROLE`, `GRANT` and the like make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessChange {
    /// Adds a role; its name must be new.
    CreateRole(Role),
    /// Replaces an existing role's attributes (same name).
    AlterRole(Role),
    /// Removes a role that holds no grants and has no memberships.
    DropRole(String),
    /// Makes `member` a member of `role` (again: no change).
    GrantRole(Membership),
    /// Ends a membership (none: no change).
    RevokeRole(Membership),
    /// Adds a grant (held already: no change).
    Grant(Grant),
    /// Removes a grant (not held: no change).
    Revoke(Grant),
    /// Removes every grant of the same grantee, privilege and object, whatever its scope (the
    /// given grant's scope is ignored).
    RevokeAll(Grant),
}

/// Applies `changes` in order; fails (changing nothing) on an unknown or duplicate role, a
/// membership cycle, or dropping a role others depend on.
pub fn apply_access_changes(
    model: &AccessModel,
    changes: Vec<AccessChange>,
) -> Result<AccessModel, MetadataError> {
    let mut model = model.clone();
    let known = |model: &AccessModel, name: &str| {
        if model.roles.contains_key(name) {
            Ok(())
        } else {
            Err(MetadataError::NotFound(format!("role {name:?}")))
        }
    };
    for change in changes {
        match change {
            AccessChange::CreateRole(role) => {
                validate_role_name(&role.name)?;
                if model.roles.contains_key(&role.name) {
                    return Err(MetadataError::AlreadyExists(format!(
                        "role {:?}",
                        role.name
                    )));
                }
                model.roles.insert(role.name.clone(), role);
            }
            AccessChange::AlterRole(role) => {
                known(&model, &role.name)?;
                model.roles.insert(role.name.clone(), role);
            }
            AccessChange::DropRole(name) => {
                known(&model, &name)?;
                let grants = model.grants.iter().filter(|g| g.grantee == name).count();
                let memberships = model
                    .memberships
                    .iter()
                    .filter(|m| m.role == name || m.member == name)
                    .count();
                if grants + memberships > 0 {
                    return Err(MetadataError::DependentObjects(format!(
                        "role {name:?} cannot be dropped because {grants} grant(s) and {memberships} membership(s) depend on it: revoke them first"
                    )));
                }
                model.roles.remove(&name);
            }
            AccessChange::GrantRole(membership) => {
                known(&model, &membership.role)?;
                known(&model, &membership.member)?;
                if reaches(&model, &membership.role, &membership.member) {
                    return Err(MetadataError::InvalidGrant(format!(
                        "role {:?} is a member of role {:?}: granting would make a cycle",
                        membership.role, membership.member
                    )));
                }
                model.memberships.insert(membership);
            }
            AccessChange::RevokeRole(membership) => {
                model.memberships.remove(&membership);
            }
            AccessChange::Grant(grant) => {
                known(&model, &grant.grantee)?;
                validate_object(&grant.object)?;
                model.grants.insert(grant);
            }
            AccessChange::Revoke(grant) => {
                model.grants.remove(&grant);
            }
            AccessChange::RevokeAll(revoked) => {
                model.grants.retain(|g| {
                    (&g.grantee, g.privilege, &g.object)
                        != (&revoked.grantee, revoked.privilege, &revoked.object)
                });
            }
        }
    }
    Ok(model)
}

/// Whether `from` is `to` or a member of it, directly or through other roles.
fn reaches(model: &AccessModel, from: &str, to: &str) -> bool {
    roles_of(model, from).contains(to)
}

/// `role` and every role it is a member of, directly or through other roles.
pub(crate) fn roles_of(model: &AccessModel, role: &str) -> BTreeSet<String> {
    let mut roles = BTreeSet::new();
    let mut pending = vec![role.to_owned()];
    while let Some(role) = pending.pop() {
        if roles.insert(role.clone()) {
            pending.extend(
                model
                    .memberships
                    .iter()
                    .filter(|m| m.member == role)
                    .map(|m| m.role.clone()),
            );
        }
    }
    roles
}

/// A role name: 1 to 63 bytes (PostgreSQL's identifier limit), no control characters.
fn validate_role_name(name: &str) -> Result<(), MetadataError> {
    if name.is_empty() || name.len() > 63 || name.chars().any(char::is_control) {
        return Err(MetadataError::Invalid(format!(
            "role name {name:?} must be 1 to 63 bytes without control characters"
        )));
    }
    Ok(())
}

/// A grant's object: `cube.<name>` or `dim.<name>`.
fn validate_object(object: &str) -> Result<(), MetadataError> {
    match object.split_once('.') {
        Some(("cube" | "dim", name)) if !name.is_empty() && !name.contains('.') => Ok(()),
        _ => Err(MetadataError::Invalid(format!(
            "a grant is on cube.<name> or dim.<name>, not {object:?}"
        ))),
    }
}

/// Reads the access model, applies `changes` and commits the result, after checking that every
/// new grant's scope names a member of an existing dimension. Fails with 40001 when another
/// change committed in between.
pub async fn change_access(
    store: &dyn MetadataStore,
    changes: Vec<AccessChange>,
) -> Result<AccessModel, MetadataError> {
    let (model, version) = store.access().await?;
    let changed = apply_access_changes(&model, changes)?;
    for scope in changed
        .grants
        .difference(&model.grants)
        .filter_map(|g| g.scope.as_ref())
    {
        let members = store.members(&scope.dimension).await?;
        if !members.iter().any(|m| m.path == scope.path) {
            return Err(MetadataError::Invalid(format!(
                "the scope {} <@ '{}' names no member of {}",
                scope.dimension, scope.path, scope.dimension
            )));
        }
    }
    store.commit_access(version, changed.clone()).await?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> AccessChange {
        AccessChange::CreateRole(Role {
            name: name.into(),
            can_login: false,
            is_admin: false,
            password_verifier: None,
        })
    }

    fn member(role: &str, member: &str) -> AccessChange {
        AccessChange::GrantRole(Membership {
            role: role.into(),
            member: member.into(),
        })
    }

    fn grant(grantee: &str) -> Grant {
        Grant {
            grantee: grantee.into(),
            privilege: Privilege::Select,
            object: "cube.finance".into(),
            scope: Some(SubtreeScope {
                dimension: "entity".into(),
                path: MemberPath::parse("Total.EMEA").unwrap(),
            }),
        }
    }

    #[test]
    fn roles_memberships_and_grants() {
        let model = apply_access_changes(
            &AccessModel::default(),
            vec![
                role("planners"),
                role("ana"),
                member("planners", "ana"),
                member("planners", "ana"),
                AccessChange::Grant(grant("planners")),
            ],
        )
        .unwrap();
        assert_eq!(model.roles.len(), 2);
        assert_eq!(model.memberships.len(), 1);
        assert_eq!(model.grants.len(), 1);
        let dropped = apply_access_changes(&model, vec![AccessChange::DropRole("ana".into())]);
        assert_eq!(dropped.unwrap_err().sqlstate(), "2BP01");
        let cycle = apply_access_changes(&model, vec![member("ana", "planners")]);
        assert_eq!(cycle.unwrap_err().sqlstate(), "0LP01");
        let again = apply_access_changes(&model, vec![role("ana")]);
        assert_eq!(again.unwrap_err().sqlstate(), "42710");
        let unknown = apply_access_changes(&model, vec![AccessChange::Grant(grant("nobody"))]);
        assert_eq!(unknown.unwrap_err().sqlstate(), "42704");
        let revoked = apply_access_changes(
            &model,
            vec![
                AccessChange::Revoke(grant("planners")),
                AccessChange::RevokeRole(Membership {
                    role: "planners".into(),
                    member: "ana".into(),
                }),
                AccessChange::DropRole("ana".into()),
            ],
        )
        .unwrap();
        assert_eq!(revoked.roles.keys().collect::<Vec<_>>(), ["planners"]);
        assert!(revoked.grants.is_empty());
    }
}
