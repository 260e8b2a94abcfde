//! Plan-versus-actual comparisons: `variance(actual, plan)` is `actual - plan` in the wider of
//! the two numeric types, and `variance_pct(actual, plan)` is the difference as a percentage
//! of the plan's magnitude, `(actual - plan) * 100 / abs(plan)`, a double, NULL when the plan
//! is zero (no percentage of nothing). NULL in, NULL out.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::numeric::sub;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_float64_array;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::evaluation::evaluate;

/// Which comparison a [`VarianceFunction`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Variance {
    Difference,
    Percent,
}

/// `variance` or `variance_pct` (see the module documentation).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VarianceFunction {
    kind: Variance,
    signature: Signature,
}

impl VarianceFunction {
    /// `variance(actual, plan)` and `variance_pct(actual, plan)`.
    pub fn udfs() -> Vec<ScalarUDF> {
        [Variance::Difference, Variance::Percent]
            .into_iter()
            .map(|kind| {
                ScalarUDF::from(Self {
                    kind,
                    signature: Signature::any(2, Volatility::Immutable),
                })
            })
            .collect()
    }
}

/// The type `actual - plan` is computed in: a double if either is a float, a decimal of the
/// larger scale if either is a decimal, else a 64-bit integer.
fn difference_type(arg_types: &[DataType]) -> Result<DataType> {
    if let Some(other) = arg_types.iter().find(|t| !t.is_numeric() && !t.is_null()) {
        return plan_err!("variance compares numbers, not {other}");
    }
    Ok(if arg_types.iter().any(DataType::is_floating) {
        DataType::Float64
    } else if let Some(scale) = arg_types
        .iter()
        .filter_map(|t| match t {
            DataType::Decimal128(_, s) | DataType::Decimal256(_, s) => Some(*s),
            _ => None,
        })
        .max()
    {
        DataType::Decimal128(38, scale)
    } else {
        DataType::Int64
    })
}

impl ScalarUDFImpl for VarianceFunction {
    fn name(&self) -> &str {
        match self.kind {
            Variance::Difference => "variance",
            Variance::Percent => "variance_pct",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let difference = difference_type(arg_types)?;
        Ok(match self.kind {
            Variance::Difference => difference,
            Variance::Percent => DataType::Float64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types: Vec<DataType> = args.args.iter().map(ColumnarValue::data_type).collect();
        evaluate(&args.args, |arrays| -> Result<ArrayRef> {
            Ok(match self.kind {
                Variance::Difference => {
                    let common = difference_type(&types)?;
                    sub(&cast(&arrays[0], &common)?, &cast(&arrays[1], &common)?)?
                }
                Variance::Percent => {
                    let actual = cast(&arrays[0], &DataType::Float64)?;
                    let plan = cast(&arrays[1], &DataType::Float64)?;
                    let (actual, plan) = (as_float64_array(&actual)?, as_float64_array(&plan)?);
                    Arc::new(
                        actual
                            .iter()
                            .zip(plan.iter())
                            .map(|pair| match pair {
                                (Some(a), Some(p)) if p != 0.0 => Some((a - p) * 100.0 / p.abs()),
                                _ => None,
                            })
                            .collect::<Float64Array>(),
                    )
                }
            })
        })
    }
}
