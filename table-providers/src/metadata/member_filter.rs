//! Conditions on a dimension's members that a metadata store evaluates itself (PostgreSQL, as
//! SQL with bind parameters), translated from the filters DataFusion hands a `dim.*` scan.
//!
//! Only what has the same meaning in both places is translated: comparisons and `IN` on the
//! member columns (text compared byte by byte, as DataFusion does), `LIKE`, the ltree
//! relations `<@` and `@>` and `lquery_match` on `path`, and `nlevel(path)` (the `level`
//! column). Anything else, and a malformed path or pattern (so that the error is the same on
//! every store), stays with DataFusion.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{InList, Like, ScalarFunction};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use quantatom_udfs::lquery::Lquery;
use quantatom_udfs::ltree::labels_of;

/// A column of `dim.*` a filter may name (all but `attributes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberColumn {
    /// `code`, text.
    Code,
    /// `name`, text.
    Name,
    /// `parent`, text or NULL.
    Parent,
    /// `path` as text.
    Path,
    /// `level`, `nlevel(path)`.
    Level,
    /// `is_leaf`, boolean.
    IsLeaf,
    /// `sort_order`, integer.
    SortOrder,
}

impl MemberColumn {
    /// The column `name` of a dimension table.
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "code" => Self::Code,
            "name" => Self::Name,
            "parent" => Self::Parent,
            "path" => Self::Path,
            "level" => Self::Level,
            "is_leaf" => Self::IsLeaf,
            "sort_order" => Self::SortOrder,
            _ => return None,
        })
    }

    /// Whether the column holds text.
    pub(crate) fn is_text(self) -> bool {
        matches!(self, Self::Code | Self::Name | Self::Parent | Self::Path)
    }
}

/// A literal a filter compares with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberValue {
    /// Text.
    Text(String),
    /// A whole number.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

impl Comparison {
    /// The operator in SQL.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::NotEq => "<>",
            Self::Lt => "<",
            Self::LtEq => "<=",
            Self::Gt => ">",
            Self::GtEq => ">=",
        }
    }

    fn of(op: Operator) -> Option<Self> {
        Some(match op {
            Operator::Eq => Self::Eq,
            Operator::NotEq => Self::NotEq,
            Operator::Lt => Self::Lt,
            Operator::LtEq => Self::LtEq,
            Operator::Gt => Self::Gt,
            Operator::GtEq => Self::GtEq,
            _ => return None,
        })
    }

    /// The operator with its sides swapped: `1 < x` is `x > 1`.
    fn swapped(self) -> Self {
        match self {
            Self::Lt => Self::Gt,
            Self::LtEq => Self::GtEq,
            Self::Gt => Self::Lt,
            Self::GtEq => Self::LtEq,
            same => same,
        }
    }
}

/// One condition on members; a store keeps the members passing all of a scan's conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberFilter {
    /// `column op value`.
    Compare(MemberColumn, Comparison, MemberValue),
    /// `column [NOT] IN (values)`.
    InList(MemberColumn, Vec<MemberValue>, bool),
    /// `column [NOT] LIKE pattern`, `\` escaping (`ILIKE` is left to DataFusion: case
    /// folding differs between the two).
    Like {
        /// The text column.
        column: MemberColumn,
        /// The pattern.
        pattern: String,
        /// `NOT LIKE`.
        negated: bool,
    },
    /// `path <@ value`: the member is the path's member or below it.
    DescendantOf(String),
    /// `path @> value`: the member is the path's member or above it.
    AncestorOf(String),
    /// `lquery_match(path, pattern)`: the path matches the `lquery` (PostgreSQL's `~`).
    Matches(String),
}

impl MemberFilter {
    /// The filter `expr` is, when a store can evaluate it with DataFusion's meaning.
    pub fn from_expr(expr: &Expr) -> Option<Self> {
        match expr {
            // `WHERE is_leaf`, `WHERE NOT is_leaf`.
            Expr::Column(_) | Expr::Not(_) => {
                let (column, flag) = match expr {
                    Expr::Not(inner) => (column_of(inner)?, false),
                    _ => (column_of(expr)?, true),
                };
                compare(column, Comparison::Eq, MemberValue::Bool(flag))
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let comparison = Comparison::of(*op)?;
                match (
                    column_of(left),
                    value_of(right),
                    column_of(right),
                    value_of(left),
                ) {
                    (Some(column), Some(value), ..) => compare(column, comparison, value),
                    (_, _, Some(column), Some(value)) => {
                        compare(column, comparison.swapped(), value)
                    }
                    _ => None,
                }
            }
            Expr::InList(InList {
                expr,
                list,
                negated,
            }) => {
                let column = column_of(expr).filter(|_| !list.is_empty())?;
                let values = list
                    .iter()
                    .map(|item| value_of(item).filter(|value| fits(column, value)))
                    .collect::<Option<Vec<_>>>()?;
                Some(Self::InList(column, values, *negated))
            }
            Expr::Like(Like {
                negated,
                expr,
                pattern,
                escape_char,
                case_insensitive,
            }) if matches!(escape_char, None | Some('\\')) && !case_insensitive => {
                let column = column_of(expr).filter(|c| c.is_text())?;
                let Some(MemberValue::Text(pattern)) = value_of(pattern) else {
                    return None;
                };
                Some(Self::Like {
                    column,
                    pattern,
                    negated: *negated,
                })
            }
            Expr::ScalarFunction(ScalarFunction { func, args })
                if func.name() == "lquery_match" && args.len() == 2 =>
            {
                column_of(&args[0]).filter(|c| *c == MemberColumn::Path)?;
                let Some(MemberValue::Text(pattern)) = value_of(&args[1]) else {
                    return None;
                };
                // A bad pattern stays with DataFusion, which reports it as PostgreSQL does.
                Lquery::parse(&pattern).ok()?;
                Some(Self::Matches(pattern))
            }
            Expr::ScalarFunction(ScalarFunction { func, args }) if args.len() == 2 => {
                let descendant = match func.name() {
                    "ltree_risparent" => true,
                    "ltree_isparent" => false,
                    _ => return None,
                };
                // `a <@ b` is `ltree_risparent(a, b)`, `a @> b` is `ltree_isparent(a, b)`.
                let (path_first, other) = match (column_of(&args[0]), column_of(&args[1])) {
                    (Some(MemberColumn::Path), _) => (true, &args[1]),
                    (_, Some(MemberColumn::Path)) => (false, &args[0]),
                    _ => return None,
                };
                let Some(MemberValue::Text(path)) = value_of(other) else {
                    return None;
                };
                // A bad path stays with DataFusion, which reports it as PostgreSQL does.
                labels_of(&path).ok()?;
                Some(match descendant == path_first {
                    true => Self::DescendantOf(path),
                    false => Self::AncestorOf(path),
                })
            }
            _ => None,
        }
    }
}

fn compare(
    column: MemberColumn,
    comparison: Comparison,
    value: MemberValue,
) -> Option<MemberFilter> {
    fits(column, &value).then_some(MemberFilter::Compare(column, comparison, value))
}

/// Whether `value` is of `column`'s kind (DataFusion has coerced both sides by now).
fn fits(column: MemberColumn, value: &MemberValue) -> bool {
    match value {
        MemberValue::Text(_) => column.is_text(),
        MemberValue::Int(_) => matches!(column, MemberColumn::Level | MemberColumn::SortOrder),
        MemberValue::Bool(_) => column == MemberColumn::IsLeaf,
    }
}

/// The member column `expr` reads: the column itself, a cast of it to a wider type of the
/// same kind, or `nlevel(path)`.
fn column_of(expr: &Expr) -> Option<MemberColumn> {
    match expr {
        Expr::Column(column) => MemberColumn::named(&column.name),
        Expr::Cast(cast) => {
            let column = column_of(&cast.expr)?;
            let widened = match column.is_text() {
                true => cast.field.data_type().is_string(),
                false => cast.field.data_type().is_integer(),
            };
            widened.then_some(column)
        }
        Expr::ScalarFunction(ScalarFunction { func, args })
            if func.name() == "nlevel" && args.len() == 1 =>
        {
            (column_of(&args[0]) == Some(MemberColumn::Path)).then_some(MemberColumn::Level)
        }
        _ => None,
    }
}

/// The non-null literal `expr` is.
fn value_of(expr: &Expr) -> Option<MemberValue> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    Some(match value {
        ScalarValue::Utf8(Some(text))
        | ScalarValue::Utf8View(Some(text))
        | ScalarValue::LargeUtf8(Some(text)) => MemberValue::Text(text.clone()),
        ScalarValue::Boolean(Some(flag)) => MemberValue::Bool(*flag),
        ScalarValue::Int8(Some(n)) => MemberValue::Int(i64::from(*n)),
        ScalarValue::Int16(Some(n)) => MemberValue::Int(i64::from(*n)),
        ScalarValue::Int32(Some(n)) => MemberValue::Int(i64::from(*n)),
        ScalarValue::Int64(Some(n)) => MemberValue::Int(*n),
        _ => return None,
    })
}
