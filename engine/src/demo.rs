//! The demo planning model: a small company's P&L plan, generated deterministically.
//!
//! Dimensions: `account` (P&L, depth 4–5), `entity` (ragged org tree), `product`
//! (categories > products), `time` (year > quarter > month, 2023–2025), `version` (Actual,
//! Budget, Forecast) and `currency` (each entity books in its local currency). The `finance`
//! cube holds one `amount` per leaf cell:
//!
//! - Budget for all 36 months, Actual for the closed months (up to [`LAST_CLOSED_MONTH`]),
//!   Forecast for 2025 (equal to Actual for closed months, Budget-based after).
//! - Expenses are negative, so every parent is the plain sum of its children and `PL` is
//!   net income.
//!
//! Every amount comes from integer arithmetic over a fixed hash of the cell's coordinates, so
//! the same size gives the same cube on every machine, and documented answers stay true.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Decimal128Builder, RecordBatch, StringViewBuilder};
use datafusion::common::{DataFusionError, Result};
use quantatom_table_providers::mdf::{CubeDefinition, CubeSchemaProvider, Measure};
use quantatom_table_providers::metadata::{Dimension, MemberSpec, MetadataStore};

/// The last month with actuals; Forecast follows Actual up to here.
pub const LAST_CLOSED_MONTH: &str = "2025_06";

/// Cells per product in the full demo: 16 accounts × 12 entities × 78 version-months.
const CELLS_PER_PRODUCT: usize = 16 * 12 * 78;

/// Products per category in the product hierarchy.
const PRODUCTS_PER_CATEGORY: usize = 10;

/// How big a demo to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSize {
    /// Number of leaf products; the cube has `products × 14,976` cells.
    pub products: usize,
}

impl DemoSize {
    /// The size closest to `cells` cells (at least one product).
    pub fn with_cells(cells: usize) -> Self {
        let products = ((cells + CELLS_PER_PRODUCT / 2) / CELLS_PER_PRODUCT).max(1);
        Self { products }
    }

    /// The number of cells this size generates.
    pub fn cells(&self) -> usize {
        self.products * CELLS_PER_PRODUCT
    }
}

/// A member in the static hierarchies below: (code, name, parent code).
type StaticMember = (&'static str, &'static str, Option<&'static str>);

/// Accounts, with the sign and monthly base (whole currency units) of each leaf.
const ACCOUNTS: &[(&str, &str, Option<&str>, i64)] = &[
    ("PL", "Net income", None, 0),
    ("GP", "Gross profit", Some("PL"), 0),
    ("REV", "Revenue", Some("GP"), 0),
    ("REV_PRD", "Product revenue", Some("REV"), 0),
    ("4000", "Hardware sales", Some("REV_PRD"), 12_000),
    ("4010", "Software licences", Some("REV_PRD"), 8_000),
    ("4020", "Subscriptions", Some("REV_PRD"), 5_000),
    ("REV_SVC", "Service revenue", Some("REV"), 0),
    ("4100", "Consulting", Some("REV_SVC"), 4_000),
    ("4110", "Support", Some("REV_SVC"), 2_500),
    ("COGS", "Cost of sales", Some("GP"), 0),
    ("5000", "Materials", Some("COGS"), -7_000),
    ("5100", "Freight", Some("COGS"), -1_200),
    ("5200", "Direct labour", Some("COGS"), -3_500),
    ("OPEX", "Operating expenses", Some("PL"), 0),
    ("PERS", "Personnel", Some("OPEX"), 0),
    ("6000", "Salaries", Some("PERS"), -6_000),
    ("6010", "Bonuses", Some("PERS"), -900),
    ("6020", "Social charges", Some("PERS"), -1_300),
    ("GNA", "General and administrative", Some("OPEX"), 0),
    ("6100", "Rent", Some("GNA"), -1_500),
    ("6110", "IT", Some("GNA"), -800),
    ("6120", "Travel", Some("GNA"), -600),
    ("MKT", "Marketing", Some("OPEX"), 0),
    ("6200", "Advertising", Some("MKT"), -1_100),
    ("6210", "Events", Some("MKT"), -500),
];

/// The legal entities: a ragged tree, each leaf with its currency and size (percent).
const ENTITIES: &[(&str, &str, Option<&str>, &str, i64)] = &[
    ("Total", "Total company", None, "", 0),
    (
        "EMEA",
        "Europe, Middle East and Africa",
        Some("Total"),
        "",
        0,
    ),
    ("DE", "Germany", Some("EMEA"), "EUR", 140),
    ("FR", "France", Some("EMEA"), "EUR", 100),
    ("UK", "United Kingdom", Some("EMEA"), "GBP", 110),
    ("NORDICS", "Nordics", Some("EMEA"), "", 0),
    ("SE", "Sweden", Some("NORDICS"), "SEK", 60),
    ("NO", "Norway", Some("NORDICS"), "NOK", 45),
    ("AMER", "Americas", Some("Total"), "", 0),
    ("US", "United States", Some("AMER"), "", 0),
    ("US_EAST", "US East", Some("US"), "USD", 180),
    ("US_WEST", "US West", Some("US"), "USD", 160),
    ("CA", "Canada", Some("AMER"), "CAD", 70),
    ("BR", "Brazil", Some("AMER"), "BRL", 50),
    ("APAC", "Asia-Pacific", Some("Total"), "", 0),
    ("JP", "Japan", Some("APAC"), "JPY", 90),
    ("AU", "Australia", Some("APAC"), "AUD", 55),
    ("SG", "Singapore", Some("APAC"), "SGD", 40),
];

const VERSIONS: &[StaticMember] = &[
    ("Actual", "Actual", None),
    ("Budget", "Budget", None),
    ("Forecast", "Forecast", None),
];

const PRODUCT_CATEGORIES: &[(&str, &str)] = &[
    ("CAT_HW", "Hardware"),
    ("CAT_SW", "Software"),
    ("CAT_SV", "Services"),
    ("CAT_AC", "Accessories"),
    ("CAT_CL", "Cloud"),
];

const YEARS: [i32; 3] = [2023, 2024, 2025];

/// Seasonality of each calendar month, percent of the base.
pub(crate) const SEASONALITY: [i64; 12] = [92, 90, 101, 97, 99, 103, 94, 88, 104, 106, 109, 117];

pub(crate) fn spec(
    code: &str,
    name: &str,
    parent: Option<&str>,
    attributes: &[(&str, &str)],
) -> MemberSpec {
    MemberSpec {
        code: code.to_owned(),
        name: name.to_owned(),
        parent: parent.map(str::to_owned),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn account_specs() -> Vec<MemberSpec> {
    ACCOUNTS
        .iter()
        .map(|&(code, name, parent, base)| {
            let kind = match base {
                0 => "total",
                b if b > 0 => "revenue",
                _ => "expense",
            };
            spec(code, name, parent, &[("account_type", kind)])
        })
        .collect()
}

fn entity_specs() -> Vec<MemberSpec> {
    ENTITIES
        .iter()
        .map(|&(code, name, parent, currency, _)| {
            let attributes: &[(&str, &str)] = if currency.is_empty() {
                &[]
            } else {
                &[("currency", currency)]
            };
            spec(code, name, parent, attributes)
        })
        .collect()
}

/// The alternate hierarchy `entity__by_currency`: the leaf entities under their booking
/// currency, in the order of `ENTITIES`.
fn entities_by_currency() -> Vec<MemberSpec> {
    let mut specs = vec![spec("All_Currencies", "All currencies", None, &[])];
    let leaves = ENTITIES.iter().filter(|&&(code, ..)| {
        !ENTITIES
            .iter()
            .any(|&(_, _, parent, ..)| parent == Some(code))
    });
    for &(code, name, _, currency, _) in leaves {
        let group = format!("{currency}_Entities");
        if !specs.iter().any(|s| s.code == group) {
            let group_name = format!("Entities booking in {currency}");
            specs.push(spec(&group, &group_name, Some("All_Currencies"), &[]));
        }
        specs.push(spec(code, name, Some(&group), &[("currency", currency)]));
    }
    specs
}

fn product_specs(size: DemoSize) -> Vec<MemberSpec> {
    let mut specs = vec![spec("All_Products", "All products", None, &[])];
    let categories = size.products.div_ceil(PRODUCTS_PER_CATEGORY);
    for c in 0..categories {
        let (code, name) = category(c);
        specs.push(spec(&code, &name, Some("All_Products"), &[]));
    }
    for p in 0..size.products {
        let code = format!("P{:04}", p + 1);
        let name = format!("Product {}", p + 1);
        specs.push(spec(
            &code,
            &name,
            Some(&category(p / PRODUCTS_PER_CATEGORY).0),
            &[],
        ));
    }
    specs
}

/// Category `c`: the named ones first, then numbered ones for large demos.
fn category(c: usize) -> (String, String) {
    match PRODUCT_CATEGORIES.get(c) {
        Some((code, name)) => ((*code).to_owned(), (*name).to_owned()),
        None => (format!("CAT_{:03}", c + 1), format!("Category {}", c + 1)),
    }
}

/// Month codes in order, `2023_01` .. `2025_12`.
fn months() -> Vec<String> {
    YEARS
        .iter()
        .flat_map(|y| (1..=12).map(move |m| format!("{y}_{m:02}")))
        .collect()
}

/// The fiscal calendar of `years`: year > quarter > month, codes `FY2025`, `2025_Q1`, `2025_01`.
pub(crate) fn time_specs(years: &[i32]) -> Vec<MemberSpec> {
    let mut specs = Vec::new();
    for &year in years {
        let year_code = format!("FY{year}");
        specs.push(spec(&year_code, &format!("Fiscal year {year}"), None, &[]));
        for quarter in 1..=4 {
            let quarter_code = format!("{year}_Q{quarter}");
            specs.push(spec(
                &quarter_code,
                &format!("Q{quarter} {year}"),
                Some(&year_code),
                &[],
            ));
            for month in (quarter - 1) * 3 + 1..=quarter * 3 {
                let code = format!("{year}_{month:02}");
                specs.push(spec(
                    &code,
                    &code.replace('_', "-"),
                    Some(&quarter_code),
                    &[],
                ));
            }
        }
    }
    specs
}

fn currency_specs() -> Vec<MemberSpec> {
    let mut codes: Vec<&str> = ENTITIES
        .iter()
        .map(|e| e.3)
        .filter(|c| !c.is_empty())
        .collect();
    codes.sort_unstable();
    codes.dedup();
    codes.into_iter().map(|c| spec(c, c, None, &[])).collect()
}

/// A fixed 64-bit mix (SplitMix64 finaliser) of the cell's coordinates.
pub(crate) fn mix(parts: [u64; 5]) -> u64 {
    parts
        .iter()
        .fold(0x9E37_79B9_7F4A_7C15_u64, |state, &part| {
            let mut z = state ^ part.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
}

/// Deviation in basis points, uniform in `-spread..=spread`.
pub(crate) fn deviation_bp(parts: [u64; 5], spread: i64) -> i64 {
    (mix(parts) % (2 * spread as u64 + 1)) as i64 - spread
}

/// The Budget amount in cents for one leaf cell.
fn budget_cents(account_base: i64, entity_size: i64, product: usize, month_index: usize) -> i64 {
    // Product mix: a few products sell much more than the rest.
    let product_weight = 100 + 400 / (1 + (product as i64 % 17));
    let year_growth = 100 + 6 * (month_index as i64 / 12);
    let cents = account_base * 100 * entity_size / 100 * product_weight / 100;
    cents * SEASONALITY[month_index % 12] / 100 * year_growth / 100
}

/// Builds the finance cube's cells in the cube's sort order, one batch per version.
fn finance_batches(cube: &CubeDefinition, size: DemoSize) -> Result<Vec<RecordBatch>> {
    let months = months();
    let leaf_accounts: Vec<_> = ACCOUNTS.iter().filter(|a| a.3 != 0).collect();
    let leaf_entities: Vec<_> = ENTITIES.iter().filter(|e| e.4 != 0).collect();
    let closed = months
        .iter()
        .position(|m| m == LAST_CLOSED_MONTH)
        .expect("closed month is a month");
    let products: Vec<String> = (1..=size.products).map(|p| format!("P{p:04}")).collect();
    let mut batches = Vec::new();
    for (version, ..) in VERSIONS {
        let month_range = match *version {
            "Actual" => 0..=closed,
            "Budget" => 0..=months.len() - 1,
            _ => months.len() - 12..=months.len() - 1,
        };
        let rows = month_range.clone().count()
            * leaf_entities.len()
            * leaf_accounts.len()
            * products.len();
        let mut batch = CellBatch::with_capacity(cube, rows);
        for month_index in month_range {
            for (entity_index, entity) in leaf_entities.iter().enumerate() {
                for (account_index, account) in leaf_accounts.iter().enumerate() {
                    for (product_index, product) in products.iter().enumerate() {
                        let budget = budget_cents(account.3, entity.4, product_index, month_index);
                        let key = |v: usize| {
                            [
                                v as u64,
                                month_index as u64,
                                entity_index as u64,
                                account_index as u64,
                                product_index as u64,
                            ]
                        };
                        let actual = budget + budget * deviation_bp(key(0), 1_500) / 10_000;
                        let amount = match *version {
                            "Budget" => budget,
                            "Actual" => actual,
                            _ if month_index <= closed => actual,
                            _ => budget + budget * deviation_bp(key(2), 800) / 10_000,
                        };
                        batch.push(
                            [
                                version,
                                months[month_index].as_str(),
                                entity.0,
                                account.0,
                                product,
                                entity.3,
                            ],
                            amount,
                        );
                    }
                }
            }
        }
        batches.push(batch.finish()?);
    }
    Ok(batches)
}

/// The cells of one batch of a planning-shaped cube ([`planning_shaped_cube`]), appended in
/// the cube's sort order.
pub(crate) struct CellBatch<'a> {
    cube: &'a CubeDefinition,
    coordinates: Vec<StringViewBuilder>,
    amounts: Decimal128Builder,
}

impl<'a> CellBatch<'a> {
    /// An empty batch of `cube`'s cells with room for `rows`.
    pub(crate) fn with_capacity(cube: &'a CubeDefinition, rows: usize) -> Self {
        Self {
            cube,
            coordinates: (0..cube.dimensions.len())
                .map(|_| StringViewBuilder::with_capacity(rows))
                .collect(),
            amounts: Decimal128Builder::with_capacity(rows),
        }
    }

    /// Appends the cell at `coordinates` (member codes in the cube's dimension order) holding
    /// `cents`.
    pub(crate) fn push(&mut self, coordinates: [&str; 6], cents: i64) {
        for (builder, code) in self.coordinates.iter_mut().zip(coordinates) {
            builder.append_value(code);
        }
        self.amounts.append_value(i128::from(cents));
    }

    /// The record batch of the cells appended.
    pub(crate) fn finish(mut self) -> Result<RecordBatch> {
        let measure = &self.cube.measures[0];
        let mut arrays: Vec<ArrayRef> = self
            .coordinates
            .iter_mut()
            .map(|builder| Arc::new(builder.finish()) as ArrayRef)
            .collect();
        arrays.push(Arc::new(
            self.amounts
                .finish()
                .with_precision_and_scale(measure.precision, measure.scale)?,
        ));
        Ok(RecordBatch::try_new(self.cube.arrow_schema(), arrays)?)
    }
}

/// The finance cube's definition: dimensions in the files' sort order, one decimal measure.
pub fn finance_cube() -> CubeDefinition {
    planning_shaped_cube("finance")
}

/// A cube named `name` with the demo's dimensions (in the files' sort order: version, time,
/// entity, account, product, currency) and one `numeric(18,2)` measure, `amount`.
pub(crate) fn planning_shaped_cube(name: &str) -> CubeDefinition {
    CubeDefinition {
        name: name.into(),
        dimensions: [
            "version", "time", "entity", "account", "product", "currency",
        ]
        .map(String::from)
        .to_vec(),
        measures: vec![Measure {
            name: "amount".into(),
            precision: 18,
            scale: 2,
        }],
    }
}

/// Creates the demo dimensions and the `finance` cube and fills it.
pub async fn load(
    cubes: &CubeSchemaProvider,
    metadata: &dyn MetadataStore,
    size: DemoSize,
) -> Result<()> {
    let dimensions = [
        (
            "account",
            "Chart of accounts: the P&L hierarchy",
            account_specs(),
        ),
        ("entity", "Legal entities and regions", entity_specs()),
        ("product", "Products by category", product_specs(size)),
        (
            "time",
            "Fiscal calendar: year > quarter > month",
            time_specs(&YEARS),
        ),
        (
            "version",
            "Plan versions",
            VERSIONS
                .iter()
                .map(|&(c, n, p)| spec(c, n, p, &[]))
                .collect(),
        ),
        ("currency", "Booking currencies", currency_specs()),
    ];
    for (name, description, members) in dimensions {
        metadata
            .create_dimension(Dimension::new(name, description), members)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
    }
    metadata
        .create_dimension(
            Dimension::alternate_hierarchy("entity", "by_currency", "Entities by currency"),
            entities_by_currency(),
        )
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let cube = finance_cube();
    let table = cubes.create_cube(cube.clone()).await?;
    let batches = finance_batches(&cube, size)?;
    table.append(&batches).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_to_whole_products() {
        assert_eq!(DemoSize::with_cells(1_000_000).products, 67);
        assert_eq!(DemoSize::with_cells(1_000_000).cells(), 1_003_392);
        assert_eq!(DemoSize::with_cells(1).products, 1);
    }

    #[test]
    fn generates_exactly_the_announced_cells_in_sort_order() {
        let size = DemoSize { products: 2 };
        let batches = finance_batches(&finance_cube(), size).unwrap();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, size.cells());
    }

    #[test]
    fn budget_follows_base_seasonality_and_growth() {
        // Hardware sales, Germany, the best-selling product, June of the first and second year.
        assert_eq!(
            budget_cents(12_000, 140, 0, 5),
            12_000 * 100 * 140 / 100 * 500 / 100 * 103 / 100
        );
        assert_eq!(
            budget_cents(12_000, 140, 0, 17),
            12_000 * 100 * 140 / 100 * 500 / 100 * 103 / 100 * 106 / 100
        );
    }
}
