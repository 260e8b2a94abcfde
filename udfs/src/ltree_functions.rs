//! The `ltree` scalar functions: `nlevel`, `subpath`, `subltree`, `index`, `lca`,
//! `text2ltree`, `ltree2text`, `lquery_match`, and the functions behind `@>` / `<@`.
//!
//! Each takes paths as text (any string type; DataFusion coerces to `Utf8`) and follows
//! [`crate::ltree`] exactly. NULL in, NULL out, as in PostgreSQL's strict functions.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, ListArray, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::cast::{as_int64_array, as_list_array, as_string_array};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use crate::evaluation::evaluate;
use crate::lquery::{Lquery, lquery_match};
use crate::ltree::{self, LTREE, LtreeError};
use crate::tagged_text::tagged_text_field;

/// Which `ltree` function a [`LtreeFunction`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LtreeFunctionKind {
    /// `nlevel(path) -> int`: the number of labels. `nlevel('Total.EMEA.DE')` is 3.
    Nlevel,
    /// `subpath(path, offset [, len]) -> text`, PostgreSQL rules for negative offsets and
    /// lengths. `subpath('Total.EMEA.DE', 0, 2)` is `Total.EMEA`; `subpath(p, -1)` the last label.
    Subpath,
    /// `subltree(path, start, end) -> text`: the labels from `start` to before `end`.
    /// `subltree('Total.EMEA.DE', 1, 2)` is `EMEA`.
    Subltree,
    /// `index(path, part [, offset]) -> int`: where `part` first appears in `path` (at or after
    /// `offset`, negative from the end), or -1. `index('Total.EMEA.DE', 'EMEA')` is 1.
    Index,
    /// `lca(path, ...) -> text`: the longest common ancestor of up to 8 paths, or of the
    /// paths in an array. `lca('Total.EMEA.DE', 'Total.EMEA.FR')` is `Total.EMEA`.
    Lca,
    /// `text2ltree(text) -> text`: the text, checked to be a path.
    Text2ltree,
    /// `ltree2text(path) -> text`: the path as text, checked.
    Ltree2text,
    /// `ltree_isparent(a, b) -> bool`, the function behind `a @> b`: `a` is an ancestor of `b`
    /// or equal to it.
    IsAncestor,
    /// `ltree_risparent(a, b) -> bool`, the function behind `a <@ b`: `a` is a descendant of
    /// `b` or equal to it.
    IsDescendant,
    /// `lquery_match(path, pattern) -> bool`, PostgreSQL's `path ~ pattern` with an `lquery`
    /// (see [`crate::lquery`]). `lquery_match('Total.EMEA.DE', '*.EMEA.*')` is true.
    LqueryMatch,
    /// `ltree_concat(a, b) -> ltree`, PostgreSQL's `a || b` on paths (planned from `||` when a
    /// side is a path). `ltree_concat('Total.EMEA', 'DE')` is `Total.EMEA.DE`.
    Concat,
}

impl LtreeFunctionKind {
    /// Every kind, in the order they are registered.
    pub const ALL: [LtreeFunctionKind; 11] = [
        LtreeFunctionKind::Nlevel,
        LtreeFunctionKind::Subpath,
        LtreeFunctionKind::Subltree,
        LtreeFunctionKind::Index,
        LtreeFunctionKind::Lca,
        LtreeFunctionKind::Text2ltree,
        LtreeFunctionKind::Ltree2text,
        LtreeFunctionKind::IsAncestor,
        LtreeFunctionKind::IsDescendant,
        LtreeFunctionKind::LqueryMatch,
        LtreeFunctionKind::Concat,
    ];

    /// The SQL name, PostgreSQL's own.
    pub fn sql_name(self) -> &'static str {
        match self {
            LtreeFunctionKind::Nlevel => "nlevel",
            LtreeFunctionKind::Subpath => "subpath",
            LtreeFunctionKind::Subltree => "subltree",
            LtreeFunctionKind::Index => "index",
            LtreeFunctionKind::Lca => "lca",
            LtreeFunctionKind::Text2ltree => "text2ltree",
            LtreeFunctionKind::Ltree2text => "ltree2text",
            LtreeFunctionKind::IsAncestor => "ltree_isparent",
            LtreeFunctionKind::IsDescendant => "ltree_risparent",
            LtreeFunctionKind::LqueryMatch => "lquery_match",
            LtreeFunctionKind::Concat => "ltree_concat",
        }
    }

    fn signature(self) -> Signature {
        use DataType::{Int64, Utf8};
        let exact = |types: Vec<DataType>| TypeSignature::Exact(types);
        let variants = match self {
            LtreeFunctionKind::Nlevel
            | LtreeFunctionKind::Text2ltree
            | LtreeFunctionKind::Ltree2text => vec![exact(vec![Utf8])],
            LtreeFunctionKind::Subltree => vec![exact(vec![Utf8, Int64, Int64])],
            LtreeFunctionKind::Index => {
                vec![exact(vec![Utf8, Utf8]), exact(vec![Utf8, Utf8, Int64])]
            }
            LtreeFunctionKind::Lca => (1..=8)
                .map(|n| exact(vec![Utf8; n]))
                .chain([exact(vec![DataType::new_list(Utf8, true)])])
                .collect(),
            LtreeFunctionKind::Subpath => {
                vec![exact(vec![Utf8, Int64]), exact(vec![Utf8, Int64, Int64])]
            }
            LtreeFunctionKind::IsAncestor
            | LtreeFunctionKind::IsDescendant
            | LtreeFunctionKind::LqueryMatch
            | LtreeFunctionKind::Concat => vec![exact(vec![Utf8, Utf8])],
        };
        Signature::one_of(variants, Volatility::Immutable)
    }

    fn return_type(self) -> DataType {
        match self {
            LtreeFunctionKind::Nlevel | LtreeFunctionKind::Index => DataType::Int32,
            LtreeFunctionKind::Subpath
            | LtreeFunctionKind::Subltree
            | LtreeFunctionKind::Lca
            | LtreeFunctionKind::Text2ltree
            | LtreeFunctionKind::Ltree2text
            | LtreeFunctionKind::Concat => DataType::Utf8,
            LtreeFunctionKind::IsAncestor
            | LtreeFunctionKind::IsDescendant
            | LtreeFunctionKind::LqueryMatch => DataType::Boolean,
        }
    }
}

/// One `ltree` function as a DataFusion scalar UDF.
///
/// ```
/// use datafusion::logical_expr::ScalarUDF;
/// use quantatom_udfs::{LtreeFunction, LtreeFunctionKind};
/// let nlevel = ScalarUDF::from(LtreeFunction::new(LtreeFunctionKind::Nlevel));
/// assert_eq!(nlevel.name(), "nlevel");
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LtreeFunction {
    kind: LtreeFunctionKind,
    signature: Signature,
}

impl LtreeFunction {
    /// Creates the function of the given kind.
    pub fn new(kind: LtreeFunctionKind) -> Self {
        Self {
            kind,
            signature: kind.signature(),
        }
    }

    /// The function as a shareable UDF.
    pub fn udf(kind: LtreeFunctionKind) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::from(Self::new(kind)))
    }
}

impl LtreeFunctionKind {
    /// Whether the function returns a path (PostgreSQL: `ltree`), so that its result is
    /// tagged as one.
    fn returns_path(self) -> bool {
        matches!(
            self,
            LtreeFunctionKind::Subpath
                | LtreeFunctionKind::Subltree
                | LtreeFunctionKind::Lca
                | LtreeFunctionKind::Text2ltree
                | LtreeFunctionKind::Concat
        )
    }
}

impl ScalarUDFImpl for LtreeFunction {
    fn name(&self) -> &str {
        self.kind.sql_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.kind.return_type())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = self.name();
        Ok(Arc::new(match self.kind.returns_path() {
            true => tagged_text_field(name, LTREE, true),
            false => Field::new(name, self.kind.return_type(), true),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        evaluate(&args.args, |arrays| self.compute(arrays))
    }
}

impl LtreeFunction {
    fn compute(&self, arrays: &[ArrayRef]) -> Result<ArrayRef> {
        Ok(match self.kind {
            LtreeFunctionKind::Nlevel => by_row::<_, Int32Array>(arrays, |row| {
                ltree::nlevel(row.text(0)).map(|levels| Some(levels as i32))
            })?,
            LtreeFunctionKind::Subpath => by_row::<_, StringArray>(arrays, |row| {
                let length = row.int(2);
                ltree::subpath(row.text(0), row.int(1).unwrap_or(0), length).map(Some)
            })?,
            LtreeFunctionKind::Subltree => by_row::<_, StringArray>(arrays, |row| {
                let (start, end) = (row.int(1).unwrap_or(0), row.int(2).unwrap_or(0));
                ltree::subltree(row.text(0), start, end).map(Some)
            })?,
            LtreeFunctionKind::Index => by_row::<_, Int32Array>(arrays, |row| {
                let offset = row.int(2).unwrap_or(0);
                ltree::index(row.text(0), row.text(1), offset).map(|at| Some(at as i32))
            })?,
            LtreeFunctionKind::Lca if matches!(arrays[0].data_type(), DataType::List(_)) => {
                lca_of_arrays(as_list_array(&arrays[0])?)?
            }
            LtreeFunctionKind::Lca => by_row::<_, StringArray>(arrays, |row| {
                let paths: Vec<&str> = (0..row.arguments()).map(|i| row.text(i)).collect();
                ltree::lca(&paths)
            })?,
            LtreeFunctionKind::Text2ltree | LtreeFunctionKind::Ltree2text => {
                by_row::<_, StringArray>(arrays, |row| {
                    let path = row.text(0);
                    ltree::labels_of(path).map(|_| Some(path.to_owned()))
                })?
            }
            LtreeFunctionKind::Concat => by_row::<_, StringArray>(arrays, |row| {
                ltree::concat(row.text(0), row.text(1)).map(Some)
            })?,
            LtreeFunctionKind::IsAncestor => {
                predicate(arrays, [check_path, check_path], |ancestor, path| {
                    ltree::is_descendant(path, ancestor)
                })?
            }
            LtreeFunctionKind::IsDescendant => {
                predicate(arrays, [check_path, check_path], ltree::is_descendant)?
            }
            LtreeFunctionKind::LqueryMatch => predicate(
                arrays,
                [check_path, |pattern| Lquery::parse(pattern).map(|_| ())],
                lquery_match,
            )?,
        })
    }
}

fn ltree_error(error: LtreeError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

fn strings(array: &ArrayRef) -> Result<StringArray> {
    Ok(as_string_array(&cast(array, &DataType::Utf8)?)?.clone())
}

/// One row of a function's arguments, none of them NULL.
struct Row<'a> {
    texts: &'a [Option<StringArray>],
    integers: &'a [Option<Int64Array>],
    row: usize,
}

impl Row<'_> {
    fn arguments(&self) -> usize {
        self.texts.len()
    }

    /// Text argument `i`.
    fn text(&self, i: usize) -> &str {
        self.texts[i]
            .as_ref()
            .map_or("", |texts| texts.value(self.row))
    }

    /// Integer argument `i`, if the call has it.
    fn int(&self, i: usize) -> Option<i64> {
        let integers = self.integers.get(i)?.as_ref()?;
        Some(integers.value(self.row))
    }
}

/// Applies `compute` to every row whose arguments are all non-NULL (NULL otherwise, as
/// PostgreSQL's strict functions do, once every path given is checked), into an array of
/// type `A`.
fn by_row<T, A: FromIterator<Option<T>> + Array + 'static>(
    arrays: &[ArrayRef],
    compute: impl Fn(&Row) -> Result<Option<T>, LtreeError>,
) -> Result<ArrayRef> {
    let is_integer: Vec<bool> = arrays
        .iter()
        .map(|array| array.data_type() == &DataType::Int64)
        .collect();
    let texts = arrays
        .iter()
        .zip(&is_integer)
        .map(|(array, integer)| (!integer).then(|| strings(array)).transpose())
        .collect::<Result<Vec<_>>>()?;
    let integers = arrays
        .iter()
        .zip(&is_integer)
        .map(|(array, integer)| integer.then(|| as_int64_array(array).cloned()).transpose())
        .collect::<Result<Vec<_>>>()?;
    let rows = arrays.first().map_or(0, |a| a.len());
    let result = (0..rows)
        .map(|row| {
            if arrays.iter().any(|array| array.is_null(row)) {
                // Every text argument is a path, which PostgreSQL casts to `ltree` (and
                // rejects) before a NULL elsewhere makes the call NULL; without a NULL,
                // `compute` checks them itself.
                for paths in texts.iter().flatten() {
                    if paths.is_valid(row) {
                        ltree::labels_of(paths.value(row)).map_err(ltree_error)?;
                    }
                }
                return Ok(None);
            }
            let row = Row {
                texts: &texts,
                integers: &integers,
                row,
            };
            compute(&row).map_err(ltree_error)
        })
        .collect::<Result<A>>()?;
    Ok(Arc::new(result))
}

/// A check of a text argument (a path, a pattern) on its own.
type TextCheck = fn(&str) -> Result<(), LtreeError>;

fn check_path(path: &str) -> Result<(), LtreeError> {
    ltree::labels_of(path).map(|_| ())
}

/// A boolean function of two text arguments; in a row with a NULL (NULL out), the other
/// argument is still checked by its `checks` entry, as PostgreSQL casts it before the call.
fn predicate(
    arrays: &[ArrayRef],
    checks: [TextCheck; 2],
    compute: impl Fn(&str, &str) -> Result<bool, LtreeError>,
) -> Result<ArrayRef> {
    let left = strings(&arrays[0])?;
    let right = strings(&arrays[1])?;
    let result = left
        .iter()
        .zip(right.iter())
        .map(|pair| match pair {
            (Some(l), Some(r)) => compute(l, r).map(Some),
            (Some(l), None) => checks[0](l).map(|_| None),
            (None, Some(r)) => checks[1](r).map(|_| None),
            (None, None) => Ok(None),
        })
        .collect::<Result<BooleanArray, LtreeError>>()
        .map_err(ltree_error)?;
    Ok(Arc::new(result))
}

/// `lca(ltree[])`: the common ancestor of each array's paths; NULL for a NULL or empty
/// array, an error for a NULL element (as PostgreSQL).
fn lca_of_arrays(lists: &ListArray) -> Result<ArrayRef> {
    let result = lists
        .iter()
        .map(|paths| {
            let Some(paths) = paths else {
                return Ok(None);
            };
            let paths = strings(&paths)?;
            if paths.null_count() > 0 {
                return Err(ltree_error(LtreeError::NullInArray));
            }
            let paths: Vec<&str> = paths.iter().flatten().collect();
            match paths.is_empty() {
                true => Ok(None),
                false => ltree::lca(&paths).map_err(ltree_error),
            }
        })
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(result))
}
