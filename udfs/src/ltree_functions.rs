//! The `ltree` scalar functions: `nlevel`, `subpath`, and the functions behind `@>` / `<@`.
//!
//! Each takes paths as text (any string type; DataFusion coerces to `Utf8`) and follows
//! [`crate::ltree`] exactly. NULL in, NULL out, as in PostgreSQL's strict functions.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::{as_int64_array, as_string_array};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::ltree::{self, LtreeError};

/// Which `ltree` function a [`LtreeFunction`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LtreeFunctionKind {
    /// `nlevel(path) -> int`: the number of labels. `nlevel('Total.EMEA.DE')` is 3.
    Nlevel,
    /// `subpath(path, offset [, len]) -> text`, PostgreSQL rules for negative offsets and
    /// lengths. `subpath('Total.EMEA.DE', 0, 2)` is `Total.EMEA`; `subpath(p, -1)` the last label.
    Subpath,
    /// `ltree_isparent(a, b) -> bool`, the function behind `a @> b`: `a` is an ancestor of `b`
    /// or equal to it.
    IsAncestor,
    /// `ltree_risparent(a, b) -> bool`, the function behind `a <@ b`: `a` is a descendant of
    /// `b` or equal to it.
    IsDescendant,
}

impl LtreeFunctionKind {
    /// Every kind, in the order they are registered.
    pub const ALL: [LtreeFunctionKind; 4] = [
        LtreeFunctionKind::Nlevel,
        LtreeFunctionKind::Subpath,
        LtreeFunctionKind::IsAncestor,
        LtreeFunctionKind::IsDescendant,
    ];

    /// The SQL name, PostgreSQL's own.
    pub fn sql_name(self) -> &'static str {
        match self {
            LtreeFunctionKind::Nlevel => "nlevel",
            LtreeFunctionKind::Subpath => "subpath",
            LtreeFunctionKind::IsAncestor => "ltree_isparent",
            LtreeFunctionKind::IsDescendant => "ltree_risparent",
        }
    }

    fn signature(self) -> Signature {
        use DataType::{Int64, Utf8};
        let exact = |types: Vec<DataType>| TypeSignature::Exact(types);
        let variants = match self {
            LtreeFunctionKind::Nlevel => vec![exact(vec![Utf8])],
            LtreeFunctionKind::Subpath => {
                vec![exact(vec![Utf8, Int64]), exact(vec![Utf8, Int64, Int64])]
            }
            LtreeFunctionKind::IsAncestor | LtreeFunctionKind::IsDescendant => {
                vec![exact(vec![Utf8, Utf8])]
            }
        };
        Signature::one_of(variants, Volatility::Immutable)
    }

    fn return_type(self) -> DataType {
        match self {
            LtreeFunctionKind::Nlevel => DataType::Int32,
            LtreeFunctionKind::Subpath => DataType::Utf8,
            LtreeFunctionKind::IsAncestor | LtreeFunctionKind::IsDescendant => DataType::Boolean,
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

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let result = match self.kind {
            LtreeFunctionKind::Nlevel => nlevel(&arrays)?,
            LtreeFunctionKind::Subpath => subpath(&arrays)?,
            LtreeFunctionKind::IsAncestor => path_predicate(&arrays, |ancestor, path| {
                ltree::is_descendant(path, ancestor)
            })?,
            LtreeFunctionKind::IsDescendant => path_predicate(&arrays, ltree::is_descendant)?,
        };
        // Scalars in, scalar out: keeps constant folding of literal paths working.
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

fn ltree_error(error: LtreeError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

fn strings(array: &ArrayRef) -> Result<StringArray> {
    Ok(as_string_array(&cast(array, &DataType::Utf8)?)?.clone())
}

fn nlevel(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let levels = strings(&arrays[0])?
        .iter()
        .map(|path| {
            path.map(|p| ltree::nlevel(p).map(|n| n as i32))
                .transpose()
                .map_err(ltree_error)
        })
        .collect::<Result<Int32Array>>()?;
    Ok(Arc::new(levels))
}

fn subpath(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let paths = strings(&arrays[0])?;
    let offsets = as_int64_array(&arrays[1])?;
    let lengths = arrays.get(2).map(|a| as_int64_array(a)).transpose()?;
    let result = (0..paths.len())
        .map(|row| {
            let any_null = paths.is_null(row)
                || offsets.is_null(row)
                || lengths.is_some_and(|lengths| lengths.is_null(row));
            if any_null {
                return Ok(None);
            }
            let length = lengths.map(|lengths| lengths.value(row));
            ltree::subpath(paths.value(row), offsets.value(row), length)
                .map(Some)
                .map_err(ltree_error)
        })
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(result))
}

fn path_predicate(
    arrays: &[ArrayRef],
    predicate: impl Fn(&str, &str) -> Result<bool, LtreeError>,
) -> Result<ArrayRef> {
    let left = strings(&arrays[0])?;
    let right = strings(&arrays[1])?;
    let result = left
        .iter()
        .zip(right.iter())
        .map(|pair| match pair {
            (Some(l), Some(r)) => predicate(l, r).map(Some).map_err(ltree_error),
            _ => Ok(None),
        })
        .collect::<Result<BooleanArray>>()?;
    Ok(Arc::new(result))
}
