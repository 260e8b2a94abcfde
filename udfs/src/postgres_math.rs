//! PostgreSQL's number functions DataFusion lacks: `mod`, `div` and `sign`, and `ceiling`, its
//! name for `ceil`.
//!
//! - `mod(a, b)` is `a % b`, computed as DataFusion computes the operator (the remainder takes
//!   the dividend's sign: `mod(-7, 3)` is -1), of the type `a % b` has.
//! - `div(a, b)` is the quotient truncated toward zero, a `numeric` with no digits after the
//!   point (`div(-7.5, 2)` is -3), as PostgreSQL's `div(numeric, numeric)`.
//! - `sign(x)` is -1, 0 or 1: a `numeric` for a decimal, a `double precision` for any other
//!   number, as PostgreSQL resolves `sign` (an integer is read as a double there too).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Float64Array};
use datafusion::arrow::compute::kernels::numeric::rem;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, Result, exec_err, plan_err};
use datafusion::logical_expr::type_coercion::binary::{BinaryTypeCoercer, comparison_coercion};
use datafusion::logical_expr::{
    ColumnarValue, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::evaluation::evaluate;
use crate::numeric::DEFAULT_DECIMAL;

/// The quotient `div` gives: a whole `numeric`.
const WHOLE_DECIMAL: DataType = DataType::Decimal128(38, 0);

/// Which of PostgreSQL's number functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MathFunction {
    Mod,
    Div,
    Sign,
}

/// `mod`, `div` or `sign` (module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PostgresMathFunction {
    function: MathFunction,
    signature: Signature,
}

impl PostgresMathFunction {
    /// `mod`, `div`, `sign`, and DataFusion's `ceil` also named `ceiling`.
    pub fn udfs() -> Vec<ScalarUDF> {
        [MathFunction::Mod, MathFunction::Div, MathFunction::Sign]
            .into_iter()
            .map(|function| {
                ScalarUDF::from(Self {
                    function,
                    signature: Signature::user_defined(Volatility::Immutable),
                })
            })
            .chain(std::iter::once(
                datafusion::functions::math::ceil()
                    .as_ref()
                    .clone()
                    .with_aliases(["ceiling"]),
            ))
            .collect()
    }
}

impl ScalarUDFImpl for PostgresMathFunction {
    fn name(&self) -> &str {
        match self.function {
            MathFunction::Mod => "mod",
            MathFunction::Div => "div",
            MathFunction::Sign => "sign",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let numbers = args
            .iter()
            .all(|arg| arg.is_numeric() || arg == &DataType::Null);
        match (self.function, args) {
            (MathFunction::Sign, [x]) if numbers => Ok(vec![match x {
                DataType::Decimal128(..) => x.clone(),
                _ => DataType::Float64,
            }]),
            (MathFunction::Mod, [a, b]) if numbers => {
                let (a, b) = BinaryTypeCoercer::new(a, &Operator::Modulo, b).get_input_types()?;
                Ok(vec![a, b])
            }
            (MathFunction::Div, [a, b]) if numbers => {
                let common = match comparison_coercion(a, b) {
                    Some(common) if common.is_integer() => DataType::Int64,
                    Some(common @ DataType::Decimal128(..)) => common,
                    _ => DEFAULT_DECIMAL,
                };
                Ok(vec![common.clone(), common])
            }
            _ => plan_err!(
                "No function matches {}({args:?}): it takes numbers",
                self.name()
            ),
        }
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match (self.function, args) {
            (MathFunction::Sign, [DataType::Decimal128(..)]) => Ok(DataType::Decimal128(1, 0)),
            (MathFunction::Sign, _) => Ok(DataType::Float64),
            (MathFunction::Mod, [a, b]) => {
                BinaryTypeCoercer::new(a, &Operator::Modulo, b).get_result_type()
            }
            (MathFunction::Mod, _) => exec_err!("mod takes two numbers"),
            (MathFunction::Div, _) => Ok(WHOLE_DECIMAL),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        evaluate(&args.args, |arrays| match (self.function, arrays) {
            (MathFunction::Mod, [a, b]) => Ok(rem(a, b)?),
            (MathFunction::Div, [a, b]) => truncated_quotients(a, b),
            (MathFunction::Sign, [x]) => signs(x),
            _ => exec_err!("{} called with {} arguments", self.name(), arrays.len()),
        })
    }
}

/// The quotients of `a` and `b`, two integer or two decimal columns of one type (whose
/// scales then cancel out), truncated toward zero, as whole decimals.
fn truncated_quotients(a: &ArrayRef, b: &ArrayRef) -> Result<ArrayRef> {
    let divide = |a: i128, b: i128| -> Result<i128> {
        match b {
            0 => Err(DataFusionError::ArrowError(
                Box::new(ArrowError::DivideByZero),
                None,
            )),
            // Rust's division truncates toward zero; only MIN / -1 overflows.
            _ => a.checked_div(b).ok_or_else(|| {
                DataFusionError::ArrowError(
                    Box::new(ArrowError::ArithmeticOverflow("div out of range".into())),
                    None,
                )
            }),
        }
    };
    let quotients: Decimal128Array = match a.data_type() {
        DataType::Int64 => {
            let (a, b) = (a.as_primitive::<Int64Type>(), b.as_primitive::<Int64Type>());
            a.iter()
                .zip(b.iter())
                .map(|pair| match pair {
                    (Some(a), Some(b)) => divide(a.into(), b.into()).map(Some),
                    _ => Ok(None),
                })
                .collect::<Result<_>>()?
        }
        DataType::Decimal128(..) => {
            let (a, b) = (
                a.as_primitive::<Decimal128Type>(),
                b.as_primitive::<Decimal128Type>(),
            );
            a.iter()
                .zip(b.iter())
                .map(|pair| match pair {
                    (Some(a), Some(b)) => divide(a, b).map(Some),
                    _ => Ok(None),
                })
                .collect::<Result<_>>()?
        }
        other => return exec_err!("div of {other}"),
    };
    Ok(Arc::new(quotients.with_data_type(WHOLE_DECIMAL)))
}

/// -1, 0 or 1 for each value of `x`, a decimal or a double column (0 for -0 and NaN, as
/// PostgreSQL's `sign` compares).
fn signs(x: &ArrayRef) -> Result<ArrayRef> {
    Ok(match x.data_type() {
        DataType::Decimal128(..) => {
            let signs: Decimal128Array = x
                .as_primitive::<Decimal128Type>()
                .iter()
                .map(|value| value.map(i128::signum))
                .collect();
            Arc::new(signs.with_data_type(DataType::Decimal128(1, 0)))
        }
        DataType::Float64 => {
            let signs: Float64Array = x
                .as_primitive::<Float64Type>()
                .iter()
                .map(|value| {
                    value.map(|value| match value {
                        _ if value > 0.0 => 1.0,
                        _ if value < 0.0 => -1.0,
                        _ => 0.0,
                    })
                })
                .collect();
            Arc::new(signs)
        }
        other => return exec_err!("sign of {other}"),
    })
}
