//! Member maintenance: the rules every store applies when members are added, renamed, moved
//! or deleted, as one function from the members before to the members after.
//!
//! The stores only persist the result ([`MetadataStore::commit_members`]), so both apply the
//! same rules: codes unique in their dimension and valid `ltree` labels, no cycles, no member
//! left with a parent that is gone. Paths, levels and leaf flags are derived again for the whole
//! dimension, so moving a member moves its subtree: every descendant's path is rewritten in the
//! same change.
//!
//! [`MetadataStore::commit_members`]: super::MetadataStore::commit_members

use std::collections::{BTreeMap, HashMap};

use quantatom_udfs::MemberPath;

use super::{Member, MemberSpec, MetadataError};

/// One change to a dimension's members, as a statement gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Adds a member (`INSERT`).
    Add(MemberSpec),
    /// Gives the member coded `code` new values (`UPDATE`): a new code renames it (its
    /// children follow), a new parent moves it with its subtree.
    Update {
        /// The member's code before the change.
        code: String,
        /// Its new code, name, parent and attributes.
        values: MemberSpec,
    },
    /// Removes the member (`DELETE`); its children must go in the same change.
    Delete {
        /// The member's code.
        code: String,
    },
}

/// The members after some changes, and what the changes did to members that cells may sit on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedMembers {
    /// Every member of the dimension after the changes, in model order.
    pub members: Vec<Member>,
    /// Codes of members deleted.
    pub deleted: Vec<String>,
    /// Former codes of members renamed.
    pub renamed: Vec<String>,
    /// Members that were leaves and have children now.
    pub new_parents: Vec<String>,
}

/// A member being edited: what a caller may set, and its place in model order.
#[derive(Debug)]
struct Draft {
    spec: MemberSpec,
    sort_order: i32,
}

/// Applies `changes` in order to `members` (a whole dimension) and derives the hierarchy again.
pub fn apply_member_changes(
    members: &[Member],
    changes: Vec<MemberChange>,
) -> Result<ChangedMembers, MetadataError> {
    let mut drafts: Vec<Option<Draft>> = members
        .iter()
        .map(|m| {
            Some(Draft {
                spec: MemberSpec {
                    code: m.code.clone(),
                    name: m.name.clone(),
                    parent: m.parent.clone(),
                    attributes: m.attributes.clone(),
                },
                sort_order: m.sort_order,
            })
        })
        .collect();
    let mut index: HashMap<String, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.code.clone(), i))
        .collect();
    let mut next_order = members.iter().map(|m| m.sort_order + 1).max().unwrap_or(0);
    let mut renames: HashMap<String, String> = HashMap::new();
    let mut deleted = Vec::new();
    let mut renamed = Vec::new();
    let unique = |code: &str| MetadataError::UniqueViolation(format!("member code {code:?}"));
    let missing = |code: &str| MetadataError::NotFound(format!("member {code:?}"));
    for change in changes {
        match change {
            MemberChange::Add(mut spec) => {
                if index.contains_key(&spec.code) {
                    return Err(unique(&spec.code));
                }
                spec.parent = spec.parent.map(|p| renamed_to(&renames, p));
                index.insert(spec.code.clone(), drafts.len());
                drafts.push(Some(Draft {
                    spec,
                    sort_order: next_order,
                }));
                next_order += 1;
            }
            MemberChange::Delete { code } => {
                let at = index.remove(&code).ok_or_else(|| missing(&code))?;
                drafts[at] = None;
                deleted.push(code);
            }
            MemberChange::Update { code, mut values } => {
                let at = *index.get(&code).ok_or_else(|| missing(&code))?;
                // A row read before an earlier change of the same statement renamed its parent
                // still names the old code.
                values.parent = values.parent.map(|p| renamed_to(&renames, p));
                if values.code != code {
                    if index.contains_key(&values.code) {
                        return Err(unique(&values.code));
                    }
                    index.remove(&code);
                    index.insert(values.code.clone(), at);
                    for draft in drafts.iter_mut().flatten() {
                        if draft.spec.parent.as_deref() == Some(code.as_str()) {
                            draft.spec.parent = Some(values.code.clone());
                        }
                    }
                    renames.insert(code.clone(), values.code.clone());
                    renamed.push(code);
                }
                drafts[at].as_mut().expect("indexed members are live").spec = values;
            }
        }
    }
    let was_leaf: HashMap<&str, bool> = members
        .iter()
        .map(|m| (m.code.as_str(), m.is_leaf))
        .collect();
    let members = derive_hierarchy(drafts.into_iter().flatten().collect(), &deleted, next_order)?;
    let new_parents = members
        .iter()
        .filter(|m| !m.is_leaf && was_leaf.get(m.code.as_str()) == Some(&true))
        .map(|m| m.code.clone())
        .collect();
    Ok(ChangedMembers {
        members,
        deleted,
        renamed,
        new_parents,
    })
}

/// `code`, or what an earlier change of the same statement renamed it to.
fn renamed_to(renames: &HashMap<String, String>, code: String) -> String {
    renames.get(&code).cloned().unwrap_or(code)
}

/// Paths, levels, leaf flags and model order of `drafts`: parents come before their children
/// in model order, so a member moved under a later one is placed after it (with its subtree).
fn derive_hierarchy(
    mut drafts: Vec<Draft>,
    deleted: &[String],
    mut next_order: i32,
) -> Result<Vec<Member>, MetadataError> {
    drafts.sort_by_key(|d| d.sort_order);
    let position: HashMap<&str, usize> = drafts
        .iter()
        .enumerate()
        .map(|(i, d)| (d.spec.code.as_str(), i))
        .collect();
    let mut children: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
    for (i, draft) in drafts.iter().enumerate() {
        let parent = match &draft.spec.parent {
            None => None,
            Some(parent) => match position.get(parent.as_str()) {
                Some(&p) => Some(p),
                None if deleted.contains(parent) => {
                    return Err(MetadataError::InUse(format!(
                        "member {parent:?} still has member {:?} under it: delete or move its children too",
                        draft.spec.code
                    )));
                }
                None => {
                    return Err(MetadataError::Invalid(format!(
                        "member {:?} names parent {parent:?}, which does not exist",
                        draft.spec.code
                    )));
                }
            },
        };
        children.entry(parent).or_default().push(i);
    }
    let mut derived: Vec<Option<(MemberPath, bool, i32)>> = vec![None; drafts.len()];
    // Depth first from the roots, children in model order: (member, parent's path and order).
    let mut stack: Vec<(usize, Option<(MemberPath, i32)>)> = children
        .get(&None)
        .into_iter()
        .flatten()
        .rev()
        .map(|&i| (i, None))
        .collect();
    while let Some((i, parent)) = stack.pop() {
        let draft = &drafts[i];
        let code = &draft.spec.code;
        let path = match &parent {
            None => MemberPath::root(code),
            Some((parent_path, _)) => parent_path.child(code),
        }
        .map_err(|e| MetadataError::Invalid(format!("member code {code:?}: {e}")))?;
        let mut sort_order = draft.sort_order;
        if parent
            .as_ref()
            .is_some_and(|(_, order)| *order >= sort_order)
        {
            sort_order = next_order;
            next_order += 1;
        }
        let own_children = children.get(&Some(i));
        derived[i] = Some((path.clone(), own_children.is_none(), sort_order));
        for &child in own_children.into_iter().flatten().rev() {
            stack.push((child, Some((path.clone(), sort_order))));
        }
    }
    let mut members = Vec::with_capacity(drafts.len());
    for (draft, derived) in drafts.into_iter().zip(derived) {
        let Some((path, is_leaf, sort_order)) = derived else {
            return Err(MetadataError::Invalid(format!(
                "member {:?} would be its own ancestor: a member cannot move under its own subtree",
                draft.spec.code
            )));
        };
        members.push(Member {
            level: path.nlevel() as i32,
            code: draft.spec.code,
            name: draft.spec.name,
            parent: draft.spec.parent,
            path,
            is_leaf,
            sort_order,
            attributes: draft.spec.attributes,
        });
    }
    members.sort_by_key(|m| m.sort_order);
    Ok(members)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn spec(code: &str, parent: Option<&str>) -> MemberSpec {
        MemberSpec {
            code: code.into(),
            name: code.into(),
            parent: parent.map(Into::into),
            attributes: BTreeMap::new(),
        }
    }

    /// Total > (EMEA > (DE, FR), US).
    fn model() -> Vec<Member> {
        Member::build_hierarchy(vec![
            spec("Total", None),
            spec("EMEA", Some("Total")),
            spec("DE", Some("EMEA")),
            spec("FR", Some("EMEA")),
            spec("US", Some("Total")),
        ])
        .unwrap()
    }

    fn paths(changed: &ChangedMembers) -> Vec<String> {
        changed
            .members
            .iter()
            .map(|m| format!("{}:{}:{}", m.path, m.level, m.is_leaf))
            .collect()
    }

    fn update(code: &str, new_code: &str, parent: Option<&str>) -> MemberChange {
        MemberChange::Update {
            code: code.into(),
            values: spec(new_code, parent),
        }
    }

    #[test]
    fn moving_a_member_moves_its_subtree_after_its_new_parent() {
        let changed = apply_member_changes(
            &model(),
            vec![
                MemberChange::Add(spec("AMER", Some("Total"))),
                update("EMEA", "EMEA", Some("AMER")),
            ],
        )
        .unwrap();
        assert_eq!(
            paths(&changed),
            [
                "Total:1:false",
                "Total.US:2:true",
                "Total.AMER:2:false",
                "Total.AMER.EMEA:3:false",
                "Total.AMER.EMEA.DE:4:true",
                "Total.AMER.EMEA.FR:4:true",
            ]
        );
        let orders: Vec<i32> = changed.members.iter().map(|m| m.sort_order).collect();
        assert!(orders.windows(2).all(|w| w[0] < w[1]), "{orders:?}");
        assert_eq!(changed.new_parents, Vec::<String>::new());
    }

    #[test]
    fn renaming_carries_children_and_later_rows_of_the_statement() {
        // `UPDATE ... SET code = lower(code)`: DE's row still names its parent EMEA.
        let changed = apply_member_changes(
            &model(),
            vec![
                update("EMEA", "emea", Some("Total")),
                update("DE", "de", Some("EMEA")),
            ],
        )
        .unwrap();
        assert!(paths(&changed).contains(&"Total.emea.de:3:true".to_owned()));
        assert!(paths(&changed).contains(&"Total.emea.FR:3:true".to_owned()));
        assert_eq!(changed.renamed, ["EMEA", "DE"]);
    }

    #[test]
    fn refuses_cycles_duplicates_orphans_and_bad_codes() {
        let error = |changes| apply_member_changes(&model(), changes).unwrap_err();
        let cycle = error(vec![update("EMEA", "EMEA", Some("DE"))]);
        assert!(cycle.to_string().contains("its own ancestor"), "{cycle}");
        let duplicate = error(vec![MemberChange::Add(spec("DE", Some("US")))]);
        assert_eq!(duplicate.sqlstate(), "23505");
        let orphans = error(vec![MemberChange::Delete {
            code: "EMEA".into(),
        }]);
        assert_eq!(orphans.sqlstate(), "23503");
        assert!(
            orphans.to_string().contains("still has member"),
            "{orphans}"
        );
        let bad = error(vec![MemberChange::Add(spec("A B", Some("US")))]);
        assert!(bad.to_string().contains("ltree syntax error"), "{bad}");
        let unknown = error(vec![MemberChange::Add(spec("X", Some("Nowhere")))]);
        assert!(unknown.to_string().contains("does not exist"), "{unknown}");
    }

    #[test]
    fn deleting_a_subtree_and_adding_under_a_leaf() {
        let changed = apply_member_changes(
            &model(),
            vec![
                MemberChange::Delete { code: "DE".into() },
                MemberChange::Delete { code: "FR".into() },
                MemberChange::Delete {
                    code: "EMEA".into(),
                },
                MemberChange::Add(spec("US_EAST", Some("US"))),
            ],
        )
        .unwrap();
        assert_eq!(
            paths(&changed),
            [
                "Total:1:false",
                "Total.US:2:false",
                "Total.US.US_EAST:3:true"
            ]
        );
        assert_eq!(changed.deleted, ["DE", "FR", "EMEA"]);
        assert_eq!(changed.new_parents, ["US"]);
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
                .contains("which does not exist")
        );
        let duplicate = Member::build_hierarchy(vec![spec("A", None), spec("A", None)]);
        assert_eq!(duplicate.unwrap_err().sqlstate(), "23505");
        let bad_label = Member::build_hierarchy(vec![spec("A.1", None)]);
        assert!(
            bad_label
                .unwrap_err()
                .to_string()
                .contains("ltree syntax error")
        );
    }
}
