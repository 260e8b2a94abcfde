//! PostgreSQL `ltree` semantics on member paths held as text.
//!
//! A path is a sequence of labels separated by dots (`Total.EMEA.DE`); the empty string is the
//! empty path (zero labels). Labels follow PostgreSQL 16's rule (production runs 16): one or
//! more letters (any alphabet), digits `0-9`, `_` and `-`, at most 1,000 characters each
//! (PostgreSQL 15 allowed neither `-` nor more than 255). Every function here mirrors
//! `contrib/ltree` exactly, including its error cases, because planners port queries from
//! Postgres and expect the same answers.

use std::fmt;

/// The PostgreSQL type name of a path, as text columns are tagged with it (see
/// [`crate::tagged_text`]).
pub const LTREE: &str = "ltree";

/// The PostgreSQL type name of a path pattern.
pub const LQUERY: &str = "lquery";

/// The longest label PostgreSQL 16's `ltree` accepts, in characters.
pub const MAX_LABEL_LENGTH: usize = 1000;

/// Why a text value is not a valid `ltree`, or an `ltree` operation has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LtreeError {
    /// The text is not a dotted list of valid labels; `position` is 1-based, in characters.
    Syntax { text: String, position: usize },
    /// A label longer than PostgreSQL allows; `position` is 1-based, in characters.
    LabelTooLong { length: usize, position: usize },
    /// `subpath`/`subltree` positions outside the path (PostgreSQL: "invalid positions").
    InvalidPositions,
    /// The text is not an `lquery`; `position` is 1-based, in characters.
    LquerySyntax {
        text: String,
        position: usize,
        detail: String,
    },
    /// An `lquery` count above the most levels a path can have.
    LimitTooLarge { detail: String },
    /// `lca` of an array holding a NULL.
    NullInArray,
}

impl LtreeError {
    /// The PostgreSQL SQLSTATE for this error (`42601` syntax, `42622` label too long,
    /// `22023` invalid parameter).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            LtreeError::Syntax { .. } => "42601",
            LtreeError::LabelTooLong { .. } => "42622",
            LtreeError::InvalidPositions => "22023",
            LtreeError::LquerySyntax { .. } => "42601",
            LtreeError::LimitTooLarge { .. } => "54000",
            LtreeError::NullInArray => "22004",
        }
    }
}

impl fmt::Display for LtreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LtreeError::Syntax { text, position } => {
                write!(
                    f,
                    "ltree syntax error at character {position} in \"{text}\""
                )
            }
            LtreeError::LabelTooLong { length, position } => write!(
                f,
                "label string is too long: label length is {length}, must be at most \
                 {MAX_LABEL_LENGTH}, at character {position}"
            ),
            LtreeError::InvalidPositions => write!(f, "invalid positions"),
            LtreeError::LquerySyntax {
                text,
                position,
                detail,
            } => {
                write!(
                    f,
                    "lquery syntax error at character {position} in \"{text}\""
                )?;
                match detail.is_empty() {
                    true => Ok(()),
                    false => write!(f, ": {detail}"),
                }
            }
            LtreeError::LimitTooLarge { detail } => write!(f, "lquery syntax error: {detail}"),
            LtreeError::NullInArray => write!(f, "array must not contain nulls"),
        }
    }
}

impl std::error::Error for LtreeError {}

/// A validated member path: the labels of an `ltree` value.
///
/// ```
/// use quantatom_udfs::MemberPath;
/// let path = MemberPath::parse("Total.EMEA.DE").unwrap();
/// assert_eq!(path.nlevel(), 3);
/// assert!(path.is_descendant_of(&MemberPath::parse("Total.EMEA").unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberPath {
    labels: Vec<String>,
}

impl MemberPath {
    /// Parses dotted text, rejecting what PostgreSQL's `ltree_in` rejects.
    pub fn parse(text: &str) -> Result<Self, LtreeError> {
        labels_of(text).map(|labels| MemberPath {
            labels: labels.into_iter().map(str::to_owned).collect(),
        })
    }

    /// The path of a root member: its one label.
    pub fn root(label: &str) -> Result<Self, LtreeError> {
        Ok(MemberPath {
            labels: vec![one_label(label)?],
        })
    }

    /// The path of a child: this path with one more label.
    pub fn child(&self, label: &str) -> Result<Self, LtreeError> {
        let mut child = self.clone();
        child.labels.push(one_label(label)?);
        Ok(child)
    }

    /// The labels, root first.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Number of labels (`nlevel`).
    pub fn nlevel(&self) -> usize {
        self.labels.len()
    }

    /// `self <@ ancestor`: true when `ancestor` is this path or one of its prefixes.
    pub fn is_descendant_of(&self, ancestor: &MemberPath) -> bool {
        self.labels.starts_with(&ancestor.labels)
    }
}

impl fmt::Display for MemberPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.labels.join("."))
    }
}

/// Whether `text` (a path or an `lquery`) has a label only PostgreSQL 16 accepts: one with a
/// `-`, or longer than PostgreSQL 15's 255 characters.
pub fn needs_postgres_16(text: &str) -> bool {
    text.contains('-')
        || text
            .split(|c: char| !is_label_char(c))
            .any(|label| label.chars().count() > 255)
}

/// `label` if it is exactly one valid label (a member code): not empty, no dot.
fn one_label(label: &str) -> Result<String, LtreeError> {
    match labels_of(label)?.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(syntax_error(label, 1)),
        [first, ..] => Err(syntax_error(label, first.chars().count() + 1)),
    }
}

/// Splits and validates `text` into labels without allocating them.
pub fn labels_of(text: &str) -> Result<Vec<&str>, LtreeError> {
    validate(text)?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    Ok(text.split('.').collect())
}

/// Checks that `text` is a path (labels of 1 to [`MAX_LABEL_LENGTH`] letters, digits,
/// underscores and hyphens, joined by dots; or empty), as PostgreSQL 16's `ltree_in` does, character by
/// character: a bad character is a syntax error where it stands, a label is measured when it
/// ends. Letters are any alphabetic character, as PostgreSQL's `iswalpha` in a UTF-8 locale.
fn validate(text: &str) -> Result<(), LtreeError> {
    if text.is_empty() {
        return Ok(());
    }
    let (mut label_start, mut label_length) = (1, 0);
    for (index, character) in text.chars().chain(std::iter::once('.')).enumerate() {
        let position = index + 1;
        if character == '.' {
            if label_length == 0 {
                return Err(syntax_error(text, label_start));
            }
            if label_length > MAX_LABEL_LENGTH {
                return Err(LtreeError::LabelTooLong {
                    length: label_length,
                    position: label_start,
                });
            }
            (label_start, label_length) = (position + 1, 0);
        } else if is_label_char(character) {
            label_length += 1;
        } else {
            return Err(syntax_error(text, position));
        }
    }
    Ok(())
}

/// Whether `character` may be part of a label: a letter of any alphabet (PostgreSQL's
/// `iswalpha` in a UTF-8 locale), a digit `0-9`, `_` or `-`.
pub fn is_label_char(character: char) -> bool {
    character.is_ascii_alphanumeric()
        || character == '_'
        || character == '-'
        || (!character.is_ascii() && character.is_alphabetic())
}

fn syntax_error(text: &str, position: usize) -> LtreeError {
    LtreeError::Syntax {
        text: text.to_owned(),
        position,
    }
}

/// `a <@ b` on text: true when `b` is `a` or an ancestor of `a`. Labels hold no dot, so
/// `b` is an ancestor when `a` starts with `b` followed by a dot.
pub fn is_descendant(path: &str, ancestor: &str) -> Result<bool, LtreeError> {
    validate(path)?;
    validate(ancestor)?;
    Ok(ancestor.is_empty()
        || path == ancestor
        || (path.starts_with(ancestor) && path.as_bytes().get(ancestor.len()) == Some(&b'.')))
}

/// `nlevel(path)`: the number of labels.
pub fn nlevel(path: &str) -> Result<usize, LtreeError> {
    Ok(labels_of(path)?.len())
}

/// `subpath(path, offset)` and `subpath(path, offset, len)` with PostgreSQL's rules: a negative
/// offset counts from the end, a negative length leaves that many labels off the end, and a
/// range that starts outside the path is an error.
pub fn subpath(path: &str, offset: i64, len: Option<i64>) -> Result<String, LtreeError> {
    let levels = labels_of(path)?.len() as i64;
    let explicit_len = len.unwrap_or(0);
    let mut start = offset;
    // contrib/ltree applies the negative-offset adjustment twice; the second pass can only
    // make a still-negative start more negative, which then fails the range check.
    for _ in 0..2 {
        if start < 0 {
            start += levels;
        }
    }
    let end = if explicit_len < 0 {
        levels + explicit_len
    } else if explicit_len == 0 {
        if len.is_some() {
            start
        } else {
            i64::from(u16::MAX)
        }
    } else {
        start + explicit_len
    };
    subltree(path, start, end)
}

/// `subltree(path, start, end)`: the labels from `start` up to, not including, `end` (counted
/// from 0); an error when `start` is outside the path or after `end`.
pub fn subltree(path: &str, start: i64, end: i64) -> Result<String, LtreeError> {
    let labels = labels_of(path)?;
    let levels = labels.len() as i64;
    if start < 0 || end < 0 || start >= levels || start > end {
        return Err(LtreeError::InvalidPositions);
    }
    let end = end.min(levels);
    Ok(labels[start as usize..end as usize].join("."))
}

/// `index(path, part [, offset])`: where the labels of `part` first appear in `path`, at or
/// after `offset` (negative: counted from the end), or -1.
pub fn index(path: &str, part: &str, offset: i64) -> Result<i64, LtreeError> {
    let (labels, part) = (labels_of(path)?, labels_of(part)?);
    let levels = labels.len() as i64;
    let start = match offset {
        negative if negative < 0 && -negative >= levels => 0,
        negative if negative < 0 => levels + negative,
        offset => offset,
    };
    if levels - start < part.len() as i64 || labels.is_empty() || part.is_empty() {
        return Ok(-1);
    }
    let found = (start.max(0) as usize..=labels.len() - part.len())
        .find(|&at| labels[at..at + part.len()] == part[..]);
    Ok(found.map_or(-1, |at| at as i64))
}

/// `lca(paths...)`: the longest common ancestor, at most one label shorter than the shortest
/// path (a path is not its own ancestor); `None` (SQL NULL) for no paths or an empty one.
pub fn lca(paths: &[&str]) -> Result<Option<String>, LtreeError> {
    let paths = paths
        .iter()
        .map(|path| labels_of(path))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = paths.first() else {
        return Ok(None);
    };
    if paths.iter().any(Vec::is_empty) {
        return Ok(None);
    }
    let mut common = first.len() - 1;
    for path in &paths[1..] {
        common = common.min(path.len() - 1);
        common = (0..common)
            .find(|&level| path[level] != first[level])
            .unwrap_or(common);
    }
    Ok(Some(first[..common].join(".")))
}

/// `a || b` on paths: the labels of `a`, then those of `b`; both are checked.
pub fn concat(a: &str, b: &str) -> Result<String, LtreeError> {
    validate(a)?;
    validate(b)?;
    Ok(match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}.{b}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_postgres() {
        assert_eq!(labels_of("").unwrap(), Vec::<&str>::new());
        assert_eq!(
            labels_of("Top.Science_1").unwrap(),
            vec!["Top", "Science_1"]
        );
        assert_eq!(
            labels_of("Top..X").unwrap_err(),
            LtreeError::Syntax {
                text: "Top..X".into(),
                position: 5
            }
        );
        assert_eq!(
            labels_of("Top.A+B").unwrap_err(),
            LtreeError::Syntax {
                text: "Top.A+B".into(),
                position: 6
            }
        );
        assert_eq!(
            labels_of("A.Tötal").unwrap(),
            vec!["A", "Tötal"],
            "letters of any alphabet"
        );
        assert_eq!(
            labels_of("Ä.T€tal").unwrap_err(),
            LtreeError::Syntax {
                text: "Ä.T€tal".into(),
                position: 4
            },
            "positions count characters"
        );
        assert_eq!(
            labels_of(&format!("a.{}", "x".repeat(1001))).unwrap_err(),
            LtreeError::LabelTooLong {
                length: 1001,
                position: 3
            }
        );
        assert_eq!(
            labels_of(&"x".repeat(1001)).unwrap_err().sqlstate(),
            "42622"
        );
        // PostgreSQL 16: up to 1,000 characters, and hyphens.
        assert!(labels_of(&"x".repeat(1000)).is_ok());
        assert_eq!(labels_of("US-EAST.CC-100").unwrap(), ["US-EAST", "CC-100"]);
    }

    #[test]
    fn descendant_is_prefix_on_labels_not_characters() {
        assert!(is_descendant("Total.EMEA.DE", "Total.EMEA").unwrap());
        assert!(is_descendant("Total.EMEA", "Total.EMEA").unwrap());
        assert!(is_descendant("Total", "").unwrap());
        assert!(!is_descendant("Total.EMEAX", "Total.EMEA").unwrap());
        assert!(!is_descendant("Total", "Total.EMEA").unwrap());
        assert!(!is_descendant("", "Total").unwrap());
        assert!(is_descendant("", "").unwrap());
        for bad in ["Total..EMEA", "Total.", ".Total", "Total.EM EA", "T€tal"] {
            assert_eq!(
                is_descendant(bad, "Total").unwrap_err().to_string(),
                labels_of(bad).unwrap_err().to_string(),
                "{bad} is refused with the same error"
            );
            assert!(
                is_descendant("Total", bad).is_err(),
                "{bad} as the ancestor"
            );
        }
    }

    /// Expected values are PostgreSQL 15's answers for the same calls.
    #[test]
    fn subpath_matches_postgres() {
        let p = "Top.Child1.Child2";
        assert_eq!(subpath(p, 0, Some(2)).unwrap(), "Top.Child1");
        assert_eq!(subpath(p, 1, None).unwrap(), "Child1.Child2");
        assert_eq!(subpath(p, -1, None).unwrap(), "Child2");
        assert_eq!(subpath(p, -2, Some(1)).unwrap(), "Child1");
        assert_eq!(subpath(p, 0, Some(-1)).unwrap(), "Top.Child1");
        assert_eq!(subpath(p, 0, Some(10)).unwrap(), p);
        assert_eq!(subpath(p, 1, Some(0)).unwrap(), "");
        assert_eq!(subpath(p, 3, None), Err(LtreeError::InvalidPositions));
        // contrib/ltree adjusts a negative offset twice: -4 on three labels lands on label 2.
        assert_eq!(subpath(p, -4, None).unwrap(), "Child2");
        assert_eq!(subpath(p, -7, None), Err(LtreeError::InvalidPositions));
        assert_eq!(subpath(p, 2, Some(-2)), Err(LtreeError::InvalidPositions));
        assert_eq!(subpath("", 0, None), Err(LtreeError::InvalidPositions));
    }
}
