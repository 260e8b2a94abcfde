//! Spreading (allocation): a value given at any level of the hierarchies written down to the
//! leaf cells under it, as one commit.
//!
//! `SELECT * FROM mdf_spread(cube, target, value [, method [, basis]])`:
//! - `target`: a JSON object naming a member of every dimension of the cube, at any level
//!   (`'{"version":"Budget","time":"FY2025","entity":"EMEA",...}'`); the cells written are the
//!   leaves under it, every combination of each dimension's leaf members under the member
//!   named (the member itself when it is a leaf);
//! - `value`: the amount, a number;
//! - `method`: `'even'` (the default: equal shares), `'proportional'` (shares in proportion to
//!   the basis), or `'add'` (the value is added on top of the current cells, in proportion to
//!   the basis);
//! - `basis`: for `proportional` and `add`, the cells whose values give the proportions: by
//!   default the target cells themselves; a JSON object of replacements reads them elsewhere
//!   (`'{"version":"Actual"}'`: the same cells of the Actual version). A dimension replaced
//!   must be named at a leaf in the target, and replaced by a leaf.
//!
//! Rounding: shares are in units of the measure's scale (cents for `numeric(18,2)`); each is
//! rounded down, and the units left go one each to the cells with the largest remainders (the
//! first in member order on ties), so the leaves sum to the target exactly. An empty basis
//! (no cells, or values summing to zero) spreads evenly. The spread commits every target cell
//! in one commit; one that read the cube (`proportional`, `add`) fails with 40001 if a commit
//! since wrote cells it covers. It answers one row: `cells` written and the `version`
//! committed. Cubes with one measure only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, RecordBatch, StringViewArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, DecimalType};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue, not_impl_err, plan_err};
use datafusion::execution::TaskContext;
use datafusion::prelude::{Expr, SessionContext, col, lit};

use super::arguments::{constant_arguments, members_by_dimension, named_cube};
use super::dml::{WriteKind, commit_cells};
use super::maintenance_sql::{
    MaintenanceCall, MaintenanceTable, Task, int64_schema, one_row, require, session_of, whole_cube,
};
use super::{CubeSchemaProvider, MdfTable};
use crate::metadata::{MetadataError, MetadataStore, Privilege};

/// The most cells one spread writes.
const MAX_SPREAD_CELLS: usize = 10_000_000;

/// How a spread divides its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Even,
    Proportional,
    Add,
}

/// `mdf_spread(cube, target, value [, method [, basis]])`.
#[derive(Debug)]
pub struct MdfSpreadFunction {
    cubes: Arc<CubeSchemaProvider>,
    metadata: Arc<dyn MetadataStore>,
}

impl MdfSpreadFunction {
    /// The function over `cubes`, their dimensions' members in `metadata`.
    pub fn new(cubes: Arc<CubeSchemaProvider>, metadata: Arc<dyn MetadataStore>) -> Self {
        Self { cubes, metadata }
    }
}

/// What one call asks for.
#[derive(Debug, Clone)]
struct Spread {
    cube: Arc<MdfTable>,
    /// Per dimension of the cube, in its order, the member named.
    target: Vec<String>,
    /// The value in units of the measure's scale.
    units: i128,
    method: Method,
    /// Dimensions whose basis is read at another member.
    basis: BTreeMap<String, String>,
}

const USAGE: &str = "mdf_spread takes a cube, a target, a value, and optionally a method and a basis: mdf_spread('cube.finance', '{\"version\":\"Budget\",...}', 1000000, 'proportional', '{\"version\":\"Actual\"}')";

impl TableFunctionImpl for MdfSpreadFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let arguments = constant_arguments("mdf_spread", &args)?;
        let (cube, target, value, method, basis) = match arguments.as_slice() {
            [cube, target, value] => (cube, target, value, None, None),
            [cube, target, value, method] => (cube, target, value, Some(method), None),
            [cube, target, value, method, basis] => {
                (cube, target, value, Some(method), Some(basis))
            }
            _ => return plan_err!("{USAGE}"),
        };
        let cube = named_cube(&self.cubes, "mdf_spread", cube)?;
        let needs = whole_cube("mdf_spread", &cube, &[Privilege::Select, Privilege::Update]);
        require(&args, &needs)?;
        let definition = cube.definition();
        let [measure] = definition.measures.as_slice() else {
            return not_impl_err!(
                "mdf_spread writes cubes of one measure; {} has {}",
                definition.name,
                definition.measures.len()
            );
        };
        let mut named = members_by_dimension("mdf_spread", "target", target)?;
        let target = definition
            .dimensions
            .iter()
            .map(|dimension| {
                named.remove(dimension).ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "mdf_spread: the target names no member of {dimension}; it names one of every dimension of {}",
                        definition.name
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(extra) = named.keys().next() {
            return plan_err!(
                "mdf_spread: {extra} is not a dimension of {}",
                definition.name
            );
        }
        let units = match value.cast_to(&DataType::Decimal128(38, measure.scale))? {
            ScalarValue::Decimal128(Some(units), ..) => units,
            _ => return plan_err!("mdf_spread: the value is a number, not NULL"),
        };
        let method = match method {
            None => Method::Even,
            Some(ScalarValue::Utf8(Some(m))) | Some(ScalarValue::Utf8View(Some(m))) => {
                match m.to_ascii_lowercase().as_str() {
                    "even" => Method::Even,
                    "proportional" => Method::Proportional,
                    "add" => Method::Add,
                    _ => {
                        return plan_err!(
                            "mdf_spread: the method is 'even', 'proportional' or 'add', not {m:?}"
                        );
                    }
                }
            }
            Some(other) => return plan_err!("mdf_spread: the method is text, not {other}"),
        };
        let basis = match basis {
            None => BTreeMap::new(),
            Some(basis) => members_by_dimension("mdf_spread", "basis", basis)?,
        };
        if let Some(unknown) = basis.keys().find(|d| !definition.dimensions.contains(d)) {
            return plan_err!(
                "mdf_spread: {unknown} is not a dimension of {}",
                definition.name
            );
        }
        if !basis.is_empty() && method == Method::Even {
            return plan_err!("mdf_spread: an even spread takes no basis");
        }
        let spread = Spread {
            cube,
            target,
            units,
            method,
            basis,
        };
        let metadata = Arc::clone(&self.metadata);
        let schema = int64_schema(&[("cells", false), ("version", true)]);
        let row_schema = Arc::clone(&schema);
        let task: Task = Arc::new(move |ctx: Arc<TaskContext>| {
            let (spread, metadata, schema) = (
                spread.clone(),
                Arc::clone(&metadata),
                Arc::clone(&row_schema),
            );
            Box::pin(async move {
                let (cells, version) = spread.run(metadata.as_ref(), &ctx).await?;
                one_row(&schema, vec![Some(cells as i64), version.map(|v| v as i64)])
            })
        });
        Ok(Arc::new(MaintenanceTable(Arc::new(MaintenanceCall {
            schema,
            task,
            needs,
        }))))
    }
}

impl Spread {
    /// Computes and commits the spread: the cells written and the version committed.
    async fn run(
        &self,
        metadata: &dyn MetadataStore,
        ctx: &Arc<TaskContext>,
    ) -> Result<(usize, Option<u64>)> {
        let definition = self.cube.definition();
        let mut leaves = Vec::with_capacity(definition.dimensions.len());
        for (dimension, code) in definition.dimensions.iter().zip(&self.target) {
            leaves.push(self.leaves_under(metadata, dimension, code).await?);
        }
        let cells = leaves
            .iter()
            .try_fold(1usize, |n, l| n.checked_mul(l.len()));
        let cells = match cells {
            Some(n) if n <= MAX_SPREAD_CELLS => n,
            _ => {
                return plan_err!(
                    "mdf_spread: the target covers more than {MAX_SPREAD_CELLS} cells; spread a narrower target"
                );
            }
        };
        let coordinates = Coordinates::new(&leaves, cells);
        let read_version = match self.method {
            Method::Even => None,
            _ => Some(self.cube.version().await?),
        };
        let current = match self.method {
            Method::Add => self.values(ctx, &leaves, &BTreeMap::new()).await?,
            _ => HashMap::new(),
        };
        let weights: Vec<i128> = match self.method {
            Method::Even => vec![1; cells],
            Method::Proportional | Method::Add => {
                let basis = match (self.basis.is_empty(), self.method) {
                    (true, Method::Add) => current.clone(),
                    _ => self.values(ctx, &leaves, &self.basis).await?,
                };
                coordinates
                    .iter()
                    .map(|cell| basis.get(&cell).copied().unwrap_or(0))
                    .collect()
            }
        };
        let mut amounts = allocate(self.units, &weights)?;
        if self.method == Method::Add {
            for (amount, cell) in amounts.iter_mut().zip(coordinates.iter()) {
                *amount += current.get(&cell).copied().unwrap_or(0);
            }
        }
        let batch = self.batch(&coordinates, amounts)?;
        let kind = match read_version {
            Some(_) => WriteKind::Update,
            None => WriteKind::Insert,
        };
        let committed = commit_cells(&self.cube, kind, &[batch], read_version, ctx).await?;
        Ok((
            cells,
            committed
                .and_then(|(_, version)| version)
                .map(|version| version.0),
        ))
    }

    /// The leaf members at or under `code` of `dimension`, in model order; for a dimension
    /// whose basis is read elsewhere, checked to be the one leaf.
    async fn leaves_under(
        &self,
        metadata: &dyn MetadataStore,
        dimension: &str,
        code: &str,
    ) -> Result<Vec<String>> {
        let members = metadata.members(dimension).await?;
        let Some(top) = members.iter().find(|m| m.code == code) else {
            return Err(
                MetadataError::InUse(format!("{code:?} is not a member of {dimension}")).into(),
            );
        };
        let leaves: Vec<String> = members
            .iter()
            .filter(|m| m.is_leaf && m.path.is_descendant_of(&top.path))
            .map(|m| m.code.clone())
            .collect();
        if let Some(other) = self.basis.get(dimension) {
            let other_is_leaf = members.iter().any(|m| &m.code == other && m.is_leaf);
            if !top.is_leaf || !other_is_leaf {
                return plan_err!(
                    "mdf_spread: the basis replaces {dimension} {code:?} by {other:?}; both must be leaf members"
                );
            }
        }
        Ok(leaves)
    }

    /// The measure's values, in units, of the cells under the target, read with the basis
    /// replacements applied and keyed by the target cell they stand for.
    async fn values(
        &self,
        ctx: &Arc<TaskContext>,
        leaves: &[Vec<String>],
        replaced: &BTreeMap<String, String>,
    ) -> Result<HashMap<Vec<String>, i128>> {
        let definition = self.cube.definition();
        let session = SessionContext::new_with_state(session_of(ctx));
        let mut cells = session.read_table(Arc::clone(&self.cube) as Arc<dyn TableProvider>)?;
        for (dimension, leaves) in definition.dimensions.iter().zip(leaves) {
            let codes: Vec<Expr> = match replaced.get(dimension) {
                Some(other) => vec![lit(other.as_str())],
                None => leaves.iter().map(|code| lit(code.as_str())).collect(),
            };
            cells = cells.filter(col(dimension.as_str()).in_list(codes, false))?;
        }
        let mut values = HashMap::new();
        for batch in cells.collect().await? {
            let measure = batch.column(definition.dimensions.len());
            let measure = measure.as_primitive::<Decimal128Type>();
            let columns: Vec<ArrayRef> = (0..definition.dimensions.len())
                .map(|i| cast(batch.column(i), &DataType::Utf8))
                .collect::<std::result::Result<_, _>>()?;
            for row in 0..batch.num_rows() {
                if measure.is_null(row) {
                    continue;
                }
                let key = definition
                    .dimensions
                    .iter()
                    .zip(&self.target)
                    .zip(&columns)
                    .map(
                        |((dimension, target), column)| match replaced.get(dimension) {
                            Some(_) => target.clone(),
                            None => column.as_string::<i32>().value(row).to_owned(),
                        },
                    )
                    .collect();
                values.insert(key, measure.value(row));
            }
        }
        Ok(values)
    }

    /// The cells to write: every coordinate with its amount.
    fn batch(&self, coordinates: &Coordinates, amounts: Vec<i128>) -> Result<RecordBatch> {
        let definition = self.cube.definition();
        let measure = &definition.measures[0];
        let mut columns: Vec<ArrayRef> = (0..definition.dimensions.len())
            .map(|d| {
                let codes = coordinates.iter().map(|cell| cell[d].clone());
                Arc::new(StringViewArray::from_iter_values(codes)) as ArrayRef
            })
            .collect();
        let amounts = Decimal128Array::from(amounts)
            .with_precision_and_scale(measure.precision, measure.scale)?;
        let fits = |units: i128| {
            Decimal128Type::validate_decimal_precision(units, measure.precision, measure.scale)
                .is_ok()
        };
        if let Some(too_large) = amounts.iter().flatten().find(|units| !fits(*units)) {
            return plan_err!(
                "mdf_spread: a cell would hold {too_large} units, more than numeric({}, {}) holds",
                measure.precision,
                measure.scale
            );
        }
        columns.push(Arc::new(amounts));
        Ok(RecordBatch::try_new(self.cube.schema(), columns)?)
    }
}

/// Every combination of the leaves, one per dimension, in member order (the last dimension
/// varying fastest).
struct Coordinates<'a> {
    leaves: &'a [Vec<String>],
    cells: usize,
}

impl<'a> Coordinates<'a> {
    fn new(leaves: &'a [Vec<String>], cells: usize) -> Self {
        Self { leaves, cells }
    }

    fn iter(&self) -> impl Iterator<Item = Vec<String>> + '_ {
        (0..self.cells).map(move |mut n| {
            let mut cell = vec![String::new(); self.leaves.len()];
            for (d, leaves) in self.leaves.iter().enumerate().rev() {
                cell[d] = leaves[n % leaves.len()].clone();
                n /= leaves.len();
            }
            cell
        })
    }
}

/// Splits `total` units over cells in proportion to `weights`: each share rounded down, and
/// the units left one each to the cells with the largest remainders (the first on ties), so
/// the shares sum to `total` exactly. Weights summing to zero (an empty basis) share evenly.
fn allocate(total: i128, weights: &[i128]) -> Result<Vec<i128>> {
    let sum: i128 = weights.iter().sum();
    let (weights, sum): (Vec<i128>, i128) = match sum {
        0 => (vec![1; weights.len()], weights.len() as i128),
        s if s < 0 => (weights.iter().map(|w| -w).collect(), -s),
        s => (weights.to_vec(), s),
    };
    let overflow = || {
        DataFusionError::Plan(
            "mdf_spread: the value and the basis are too large to spread exactly".into(),
        )
    };
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for weight in &weights {
        let exact = total.checked_mul(*weight).ok_or_else(overflow)?;
        shares.push(exact.div_euclid(sum));
        remainders.push(exact.rem_euclid(sum));
    }
    let left = total - shares.iter().sum::<i128>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| remainders[*b].cmp(&remainders[*a]).then(a.cmp(b)));
    for &i in order.iter().take(left as usize) {
        shares[i] += 1;
    }
    Ok(shares)
}

#[cfg(test)]
mod tests {
    use super::allocate;

    #[test]
    fn shares_sum_to_the_total_exactly() {
        // 100.00 over three even cells: 33.34, 33.33, 33.33.
        assert_eq!(allocate(10_000, &[1, 1, 1]).unwrap(), [3_334, 3_333, 3_333]);
        // In proportion; the unit left goes to the largest remainder.
        assert_eq!(allocate(100, &[1, 2, 3]).unwrap(), [17, 33, 50]);
        // Negative totals and weights.
        assert_eq!(allocate(-100, &[1, 1, 1]).unwrap(), [-33, -33, -34]);
        let shares = allocate(1_000, &[-5, 2, -7]).unwrap();
        assert_eq!(shares.iter().sum::<i128>(), 1_000);
        // An empty basis shares evenly.
        assert_eq!(allocate(10, &[0, 0, 0, 0]).unwrap(), [3, 3, 2, 2]);
    }
}
