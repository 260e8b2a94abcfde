//! How Quantatom's scalar functions answer a call: computed over arrays, and a scalar again
//! when every argument was one, which keeps constant folding of literal arguments working.

use datafusion::arrow::array::ArrayRef;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::ColumnarValue;

/// `compute` over `args` as arrays; a scalar when every argument is one.
pub(crate) fn evaluate(
    args: &[ColumnarValue],
    compute: impl FnOnce(&[ArrayRef]) -> Result<ArrayRef>,
) -> Result<ColumnarValue> {
    let all_scalar = args
        .iter()
        .all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
    let result = compute(&ColumnarValue::values_to_arrays(args)?)?;
    match all_scalar {
        true => Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &result, 0,
        )?)),
        false => Ok(ColumnarValue::Array(result)),
    }
}
