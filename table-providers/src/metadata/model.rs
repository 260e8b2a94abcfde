//! The planning model's metadata types: dimensions and their members.

use std::collections::{BTreeMap, HashMap};

use quantatom_udfs::MemberPath;
use serde::{Deserialize, Serialize};

use super::MetadataError;

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
    /// Builds members from specs listed parents-first, deriving path, level, leaf flag and
    /// sort order, and rejecting duplicate codes, invalid labels and unknown parents.
    pub fn build_hierarchy(specs: Vec<MemberSpec>) -> Result<Vec<Member>, MetadataError> {
        let mut index_of: HashMap<String, usize> = HashMap::with_capacity(specs.len());
        let mut members: Vec<Member> = Vec::with_capacity(specs.len());
        for spec in specs {
            let path = match &spec.parent {
                None => MemberPath::root(&spec.code),
                Some(parent) => {
                    let parent_index = *index_of.get(parent).ok_or_else(|| {
                        MetadataError::Invalid(format!(
                            "member {:?} names parent {parent:?}, which is not listed before it",
                            spec.code
                        ))
                    })?;
                    members[parent_index].is_leaf = false;
                    members[parent_index].path.child(&spec.code)
                }
            }
            .map_err(|e| MetadataError::Invalid(format!("member code {:?}: {e}", spec.code)))?;
            if index_of.insert(spec.code.clone(), members.len()).is_some() {
                return Err(MetadataError::Invalid(format!(
                    "duplicate member code {:?}",
                    spec.code
                )));
            }
            members.push(Member {
                level: path.nlevel() as i32,
                sort_order: members.len() as i32,
                code: spec.code,
                name: spec.name,
                parent: spec.parent,
                path,
                is_leaf: true,
                attributes: spec.attributes,
            });
        }
        Ok(members)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(code: &str, parent: Option<&str>) -> MemberSpec {
        MemberSpec {
            code: code.into(),
            name: code.into(),
            parent: parent.map(Into::into),
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn derives_paths_levels_and_leaves() {
        let members = Member::build_hierarchy(vec![
            spec("Total", None),
            spec("EMEA", Some("Total")),
            spec("DE", Some("EMEA")),
            spec("US", Some("Total")),
        ])
        .unwrap();
        let by_code: HashMap<_, _> = members.iter().map(|m| (m.code.as_str(), m)).collect();
        assert_eq!(by_code["DE"].path.to_string(), "Total.EMEA.DE");
        assert_eq!(by_code["DE"].level, 3);
        assert!(!by_code["EMEA"].is_leaf);
        assert!(by_code["US"].is_leaf);
        assert_eq!(by_code["US"].sort_order, 3);
    }

    #[test]
    fn rejects_bad_hierarchies() {
        let unknown_parent = Member::build_hierarchy(vec![spec("DE", Some("EMEA"))]);
        assert!(
            unknown_parent
                .unwrap_err()
                .to_string()
                .contains("not listed before it")
        );
        let duplicate = Member::build_hierarchy(vec![spec("A", None), spec("A", None)]);
        assert!(
            duplicate
                .unwrap_err()
                .to_string()
                .contains("duplicate member code")
        );
        let bad_label = Member::build_hierarchy(vec![spec("A.1", None)]);
        assert!(
            bad_label
                .unwrap_err()
                .to_string()
                .contains("ltree syntax error")
        );
    }
}
