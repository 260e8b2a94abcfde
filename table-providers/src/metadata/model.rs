//! The planning model's metadata types: dimensions and their members.

use std::collections::BTreeMap;

use quantatom_udfs::MemberPath;
use serde::{Deserialize, Serialize};

use super::{MemberChange, MetadataError, apply_member_changes};

/// A dimension of the planning model (`account`, `entity`, `time`, ...), or an alternate
/// hierarchy of one: the same members (and rollups of its own) arranged in another tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimension {
    /// SQL name: lower-case identifier, also the table name under `dim.`; for an alternate
    /// hierarchy `<dimension>__<hierarchy>`.
    pub name: String,
    /// What the dimension holds, shown to users.
    pub description: String,
    /// For an alternate hierarchy, the dimension whose members it arranges; its leaves are
    /// members of that dimension, so cells roll up through it as through the dimension's own
    /// hierarchy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hierarchy_of: Option<String>,
}

impl Dimension {
    /// A dimension.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            hierarchy_of: None,
        }
    }

    /// The alternate hierarchy `hierarchy` of `dimension`, table `dim.<dimension>__<hierarchy>`.
    pub fn alternate_hierarchy(
        dimension: &str,
        hierarchy: &str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            name: format!("{dimension}{HIERARCHY_SEPARATOR}{hierarchy}"),
            description: description.into(),
            hierarchy_of: Some(dimension.to_owned()),
        }
    }
}

/// Between a dimension's name and an alternate hierarchy's in the hierarchy's table name.
pub const HIERARCHY_SEPARATOR: &str = "__";

/// What a caller supplies to create a member; the hierarchy fields are derived from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSpec {
    /// Member code: unique in its dimension, a valid `ltree` label.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Code of the parent member; `None` for a root.
    pub parent: Option<String>,
    /// Free-form attributes (currency of an entity, account type, ...).
    pub attributes: BTreeMap<String, String>,
}

/// A member of a dimension with its place in the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Member code: unique in its dimension, a valid `ltree` label.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Code of the parent member; `None` for a root.
    pub parent: Option<String>,
    /// Codes from the root down to this member (`Total.EMEA.DE`).
    #[serde(with = "path_as_text")]
    pub path: MemberPath,
    /// Depth in the hierarchy, `nlevel(path)`: a root is level 1.
    pub level: i32,
    /// True when no member has this one as parent; cells are written to leaves only.
    pub is_leaf: bool,
    /// Position among the dimension's members in the order the model lists them.
    pub sort_order: i32,
    /// Free-form attributes.
    pub attributes: BTreeMap<String, String>,
}

impl Member {
    /// Builds a dimension's members from specs, deriving path, level, leaf flag and sort order
    /// (the order listed, parents moved before their children), and rejecting duplicate
    /// codes, invalid labels and unknown parents: the members [`apply_member_changes`] makes
    /// of adding each spec to an empty dimension.
    pub fn build_hierarchy(specs: Vec<MemberSpec>) -> Result<Vec<Member>, MetadataError> {
        let changes = specs.into_iter().map(MemberChange::Add).collect();
        Ok(apply_member_changes(&[], changes)?.members)
    }
}

pub(super) mod path_as_text {
    use quantatom_udfs::MemberPath;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &MemberPath, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(path)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<MemberPath, D::Error> {
        let text = String::deserialize(deserializer)?;
        MemberPath::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Who made a change, recorded with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeAuthor {
    /// The session's user.
    pub user: Option<String>,
    /// The statement that made the change.
    pub statement: Option<crate::mdf::StatementRef>,
}

/// One committed change of a dimension's members, as its store recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberCommit {
    /// The dimension's version the change made.
    pub version: u64,
    /// When, in milliseconds since the Unix epoch.
    pub committed_at_ms: u64,
    /// Who, and with which statement.
    pub author: ChangeAuthor,
    /// Each member changed, by code: as it was (`None`: added) and as it is (`None`: deleted).
    pub changes: Vec<(String, Option<Member>, Option<Member>)>,
}

/// The members that differ between `before` and `after`, by code, each as it was and is.
pub fn member_differences(
    before: &[Member],
    after: &[Member],
) -> Vec<(String, Option<Member>, Option<Member>)> {
    use std::collections::BTreeMap;
    let before: BTreeMap<&str, &Member> = before.iter().map(|m| (m.code.as_str(), m)).collect();
    let after: BTreeMap<&str, &Member> = after.iter().map(|m| (m.code.as_str(), m)).collect();
    let mut codes: Vec<&str> = before.keys().chain(after.keys()).copied().collect();
    codes.sort_unstable();
    codes.dedup();
    codes
        .into_iter()
        .filter_map(|code| {
            let (old, new) = (before.get(code).copied(), after.get(code).copied());
            (old != new).then(|| (code.to_owned(), old.cloned(), new.cloned()))
        })
        .collect()
}
