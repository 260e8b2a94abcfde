//! The planning benchmark's model (`quantatom bench generate`, `bench/planning-benchmark`):
//! synthetic planning data at a fixed seed, in three sizes ([`Profile`]).
//!
//! Dimensions: `account` (a ragged tree, leaves at depth 4–6), `entity` (ragged, depth 3–6;
//! each entity books in its region's currency), `product` (category > family > product, and
//! the alternate hierarchy `product__promotions` holding about 5% of the products as shared
//! members), `time` (year > quarter > month), `version` and `currency`. The `planning` cube
//! holds one `amount` per leaf cell for a fixed set of (entity, account, product)
//! combinations drawn with a Zipf-skewed entity and product mix: `Actual` for the closed
//! months, `Forecast` equal to Actual there and budget-based after the switchover month, every
//! other version for every month.
//!
//! The same profile gives the same members and cells on every machine: every choice comes
//! from integer hashing ([`mix`]) of fixed seeds, and the Zipf draws compare floats built from
//! those hashes only.

use std::collections::{BTreeMap, HashMap, HashSet};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use quantatom_table_providers::mdf::{CubeDefinition, CubeSchemaProvider};
use quantatom_table_providers::metadata::{Dimension, MemberSpec, MetadataStore};
use serde::Serialize;

use crate::demo::{
    CellBatch, SEASONALITY, deviation_bp, mix, planning_shaped_cube, spec, time_specs,
};

/// The benchmark cube's name: `cube.planning`.
pub const CUBE: &str = "planning";

/// Versions in the order profiles take them; the first three are the ones the queries read.
const VERSIONS: [&str; 6] = [
    "Actual",
    "Budget",
    "Forecast",
    "Prior_Budget",
    "Scenario_Up",
    "Scenario_Down",
];

/// Currencies in the order profiles take them.
const CURRENCIES: [&str; 10] = [
    "EUR", "USD", "GBP", "JPY", "CHF", "SEK", "CAD", "AUD", "BRL", "SGD",
];

/// Months of the last year that are closed (have actuals); the switchover follows them.
const CLOSED_MONTHS_OF_LAST_YEAR: usize = 6;

/// Groups of the alternate product hierarchy.
const PROMOTIONS: usize = 5;

/// Cells the spread of query Q5 should write, about.
const SPREAD_CELLS: f64 = 100_000.0;

/// How big a benchmark model to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Profile {
    /// About 1M cells: the correctness check that runs in CI.
    Ci,
    /// About 10M cells.
    S,
    /// About 70M cells (fits a 24 GiB machine).
    M,
}

/// Members wanted in a generated hierarchy, and the fan-out of its groups.
struct TreeShape {
    members: usize,
    fanout: usize,
    min_depth: usize,
    max_depth: usize,
}

/// A profile's sizes.
struct Shape {
    accounts: TreeShape,
    entities: TreeShape,
    products: TreeShape,
    years: &'static [i32],
    versions: usize,
    currencies: usize,
    cells: usize,
}

impl Profile {
    fn shape(self) -> Shape {
        let tree = |members, fanout, min_depth, max_depth| TreeShape {
            members,
            fanout,
            min_depth,
            max_depth,
        };
        match self {
            Profile::Ci => Shape {
                accounts: tree(120, 3, 4, 6),
                entities: tree(60, 2, 3, 6),
                products: tree(200, 6, 4, 4),
                years: &[2024, 2025],
                versions: 4,
                currencies: 5,
                cells: 1_000_000,
            },
            Profile::S => Shape {
                accounts: tree(500, 3, 4, 6),
                entities: tree(200, 2, 3, 6),
                products: tree(1_000, 10, 4, 4),
                years: &[2023, 2024, 2025],
                versions: 4,
                currencies: 5,
                cells: 10_000_000,
            },
            Profile::M => Shape {
                accounts: tree(2_000, 4, 4, 6),
                entities: tree(1_000, 3, 3, 6),
                products: tree(10_000, 22, 4, 4),
                years: &[2021, 2022, 2023, 2024, 2025],
                versions: 6,
                currencies: 10,
                cells: 70_000_000,
            },
        }
    }
}

/// A generated hierarchy: its members parents first, and for each leaf (in code order) the
/// codes from the root down to the leaf.
struct Tree {
    members: Vec<MemberSpec>,
    leaf_paths: Vec<Vec<String>>,
}

impl Tree {
    /// Builds a ragged tree with about `shape.members` members under `root`. Leaf `i`'s
    /// ancestor at level `k` is group `i / fanout^(max_depth - k)`; the leaves under one group
    /// of level `min_depth - 1` share a depth, chosen by hash, so the tree is ragged by region.
    /// `attributes` gives each member's attributes from its path.
    fn generate(
        root: (&str, &str),
        prefix: &str,
        kind: &str,
        shape: &TreeShape,
        attributes: &dyn Fn(&[String]) -> Vec<(&'static str, String)>,
    ) -> Self {
        // The most leaves whose tree stays within the wanted member count.
        let (mut low, mut high) = (1, shape.members);
        while low < high {
            let leaves = (low + high).div_ceil(2);
            if Self::with_leaves(root, prefix, kind, shape, leaves, attributes)
                .members
                .len()
                <= shape.members
            {
                low = leaves;
            } else {
                high = leaves - 1;
            }
        }
        Self::with_leaves(root, prefix, kind, shape, low, attributes)
    }

    fn with_leaves(
        root: (&str, &str),
        prefix: &str,
        kind: &str,
        shape: &TreeShape,
        leaves: usize,
        attributes: &dyn Fn(&[String]) -> Vec<(&'static str, String)>,
    ) -> Self {
        let group_size = |level: usize| shape.fanout.pow((shape.max_depth - level) as u32);
        let member = |path: &[String], name: String| {
            let attributes = attributes(path);
            let attributes: Vec<(&str, &str)> =
                attributes.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
            spec(&path[path.len() - 1], &name, parent, &attributes)
        };
        let root_path = vec![root.0.to_owned()];
        let mut members = vec![member(&root_path, root.1.to_owned())];
        let mut emitted: HashSet<String> = HashSet::new();
        let mut leaf_paths = Vec::with_capacity(leaves);
        for i in 0..leaves {
            let region = i / group_size(shape.min_depth - 1);
            let depth = shape.min_depth
                + (mix([prefix.len() as u64, region as u64, 7, 0, 0])
                    % (shape.max_depth - shape.min_depth + 1) as u64) as usize;
            let mut path = root_path.clone();
            for level in 2..depth {
                let group = i / group_size(level);
                path.push(format!("{prefix}{level}_{group:05}"));
                if emitted.insert(path[level - 1].clone()) {
                    members.push(member(&path, format!("{kind} group {level}.{group}")));
                }
            }
            path.push(format!("{prefix}{:05}", i + 1));
            members.push(member(&path, format!("{kind} {}", i + 1)));
            leaf_paths.push(path);
        }
        Self {
            members,
            leaf_paths,
        }
    }

    fn leaf_code(&self, leaf: usize) -> &str {
        self.leaf_paths[leaf].last().expect("a leaf has a code")
    }

    /// Every group (path as labels joined by dots) with the leaves under it, in member order.
    fn groups(&self) -> Vec<(String, Vec<usize>)> {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (leaf, path) in self.leaf_paths.iter().enumerate() {
            for depth in 1..path.len() {
                let group = path[..depth].join(".");
                let at = *index.entry(group.clone()).or_insert_with(|| {
                    groups.push((group, Vec::new()));
                    groups.len() - 1
                });
                groups[at].1.push(leaf);
            }
        }
        groups
    }
}

/// Draws indexes `0..n` with Zipf weights (exponent 1) over a fixed shuffle of them.
struct Zipf {
    cumulative: Vec<f64>,
    by_rank: Vec<u32>,
}

impl Zipf {
    fn new(n: usize, seed: u64) -> Self {
        let mut by_rank: Vec<u32> = (0..n as u32).collect();
        by_rank.sort_by_key(|&i| mix([seed, u64::from(i), 0, 0, 0]));
        let total: f64 = (1..=n).map(|r| 1.0 / r as f64).sum();
        let mut sum = 0.0;
        let cumulative = (1..=n)
            .map(|r| {
                sum += 1.0 / r as f64;
                sum / total
            })
            .collect();
        Self {
            cumulative,
            by_rank,
        }
    }

    /// The index drawn by the uniform number `u` in `[0, 1)`.
    fn draw(&self, u: f64) -> usize {
        let rank = self.cumulative.partition_point(|&c| c <= u);
        self.by_rank[rank.min(self.by_rank.len() - 1)] as usize
    }
}

/// A uniform number in `[0, 1)` from a hash.
fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// One coordinate, member codes by dimension name.
pub type Coordinate = BTreeMap<String, String>;

/// What the generator made and the members the benchmark's queries name, written next to the
/// data as `bench.json` for the benchmark runner.
#[derive(Debug, Clone, Serialize)]
pub struct BenchModel {
    /// The profile generated.
    pub profile: Profile,
    /// The cube (`cube.<name>`).
    pub cube: String,
    /// Cells written.
    pub cells: usize,
    /// Members of each dimension and alternate hierarchy.
    pub members: BTreeMap<String, usize>,
    /// The (entity, account, product) combinations that have cells.
    pub combinations: usize,
    /// The last year: the grids' year.
    pub year: i32,
    /// The last closed month: Actual up to here, Forecast after.
    pub last_closed_month: String,
    /// Q1's entity subtree: the region with the most cells.
    pub grid_entity_path: String,
    /// Q4's grant scope: the next two regions by cells.
    pub scope_entity_paths: Vec<String>,
    /// Q5's spread: the target (a member of every dimension), the version whose cells give the
    /// proportions, and the number of leaf cells it writes.
    pub spread_target: Coordinate,
    /// The basis version of Q5's spread.
    pub spread_basis_version: String,
    /// Leaf cells Q5's spread writes.
    pub spread_cells: usize,
    /// Q6's cell: a leaf cell under the spread's target.
    pub history_cell: Coordinate,
}

/// Everything generated before cells are written.
struct Generated {
    accounts: Tree,
    entities: Tree,
    products: Tree,
    promotions: Vec<MemberSpec>,
    time: Vec<MemberSpec>,
    months: Vec<String>,
    versions: Vec<&'static str>,
    currencies: Vec<&'static str>,
    /// Sorted (entity, account, product) leaf indexes.
    combinations: Vec<(u32, u32, u32)>,
    /// Each leaf entity's currency.
    entity_currency: Vec<&'static str>,
    /// Whether each leaf account is an expense (negative amounts).
    expense: Vec<bool>,
    profile: Profile,
}

/// The level-2 ancestor (a region, or an account class) of a leaf path.
fn level_two(path: &[String]) -> usize {
    path[1]
        .rsplit('_')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or(0)
}

fn generate(profile: Profile) -> Result<Generated> {
    let shape = profile.shape();
    let currencies: Vec<&'static str> = CURRENCIES[..shape.currencies].to_vec();
    let currency_of = |path: &[String]| currencies[level_two(path) % currencies.len()];
    let accounts = Tree::generate(
        ("PL", "Net income"),
        "A",
        "Account",
        &shape.accounts,
        &|path| match path.len() {
            1 => vec![("account_type", "total".to_owned())],
            _ if level_two(path) % 2 == 0 => vec![("account_type", "revenue".to_owned())],
            _ => vec![("account_type", "expense".to_owned())],
        },
    );
    let entities = Tree::generate(
        ("Total", "Total company"),
        "E",
        "Entity",
        &shape.entities,
        &|path| match path.len() {
            1 => Vec::new(),
            _ => vec![("currency", currency_of(path).to_owned())],
        },
    );
    let products = Tree::generate(
        ("All_Products", "All products"),
        "P",
        "Product",
        &shape.products,
        &|_| Vec::new(),
    );
    let mut promotions = vec![spec("All_Promotions", "Products on promotion", None, &[])];
    for group in 1..=PROMOTIONS {
        promotions.push(spec(
            &format!("PROMO_{group}"),
            &format!("Promotion {group}"),
            Some("All_Promotions"),
            &[],
        ));
    }
    for leaf in 0..products.leaf_paths.len() {
        if mix([3, leaf as u64, 0, 0, 0]) % 20 == 0 {
            let group = format!("PROMO_{}", leaf % PROMOTIONS + 1);
            let code = products.leaf_code(leaf);
            promotions.push(spec(code, code, Some(&group), &[]));
        }
    }
    let time = time_specs(shape.years);
    let months: Vec<String> = shape
        .years
        .iter()
        .flat_map(|y| (1..=12).map(move |m| format!("{y}_{m:02}")))
        .collect();
    let versions: Vec<&'static str> = VERSIONS[..shape.versions].to_vec();
    let version_months =
        months.len() - 12 + CLOSED_MONTHS_OF_LAST_YEAR + (versions.len() - 1) * months.len();
    let wanted = shape.cells / version_months;
    let (e_count, a_count, p_count) = (
        entities.leaf_paths.len(),
        accounts.leaf_paths.len(),
        products.leaf_paths.len(),
    );
    if wanted > e_count * a_count * p_count / 4 {
        return Err(DataFusionError::Plan(format!(
            "profile {profile:?} asks for {wanted} combinations of {e_count} entities, {a_count} accounts and {p_count} products"
        )));
    }
    let entity_mix = Zipf::new(e_count, 11);
    let product_mix = Zipf::new(p_count, 13);
    let mut drawn: HashSet<(u32, u32, u32)> = HashSet::with_capacity(wanted);
    let mut draw = 0u64;
    while drawn.len() < wanted {
        let hash = |part| mix([17, draw, part, 0, 0]);
        let entity = entity_mix.draw(unit(hash(0)));
        let product = product_mix.draw(unit(hash(1)));
        let account = (hash(2) % a_count as u64) as usize;
        drawn.insert((entity as u32, account as u32, product as u32));
        draw += 1;
    }
    let mut combinations: Vec<_> = drawn.into_iter().collect();
    combinations.sort_unstable();
    let entity_currency = entities.leaf_paths.iter().map(|p| currency_of(p)).collect();
    let expense = accounts
        .leaf_paths
        .iter()
        .map(|p| level_two(p) % 2 == 1)
        .collect();
    Ok(Generated {
        accounts,
        entities,
        products,
        promotions,
        time,
        months,
        versions,
        currencies,
        combinations,
        entity_currency,
        expense,
        profile,
    })
}

impl Generated {
    fn closed_month(&self) -> usize {
        self.months.len() - 13 + CLOSED_MONTHS_OF_LAST_YEAR
    }

    /// The months `version` has cells for.
    fn month_range(&self, version: &str) -> std::ops::Range<usize> {
        match version {
            "Actual" => 0..self.closed_month() + 1,
            _ => 0..self.months.len(),
        }
    }

    fn cells(&self) -> usize {
        self.versions
            .iter()
            .map(|v| self.month_range(v).len())
            .sum::<usize>()
            * self.combinations.len()
    }

    /// The amount in cents of one cell.
    fn amount(&self, version: &str, month: usize, combination: usize) -> i64 {
        let (entity, account, product) = self.combinations[combination];
        let key = |part: u64| {
            [
                part,
                month as u64,
                u64::from(entity),
                u64::from(account),
                u64::from(product),
            ]
        };
        let base = 5_000 + (mix(key(100)) % 95_000) as i64;
        let signed = if self.expense[account as usize] {
            -base
        } else {
            base
        };
        let growth = 100 + 5 * (month as i64 / 12);
        let budget = signed * SEASONALITY[month % 12] / 100 * growth / 100;
        let actual = budget + budget * deviation_bp(key(0), 1_500) / 10_000;
        match version {
            "Budget" => budget,
            "Actual" => actual,
            "Forecast" if month <= self.closed_month() => actual,
            "Forecast" => budget + budget * deviation_bp(key(2), 800) / 10_000,
            "Prior_Budget" => budget * 97 / 100 + budget * deviation_bp(key(3), 300) / 10_000,
            "Scenario_Up" => budget * 110 / 100,
            _ => budget * 90 / 100,
        }
    }

    /// One version's cells, in the cube's sort order.
    fn version_batch(&self, cube: &CubeDefinition, version: &str) -> Result<RecordBatch> {
        let months = self.month_range(version);
        let rows = months.len() * self.combinations.len();
        let mut batch = CellBatch::with_capacity(cube, rows);
        for month in months {
            for (index, &(entity, account, product)) in self.combinations.iter().enumerate() {
                batch.push(
                    [
                        version,
                        self.months[month].as_str(),
                        self.entities.leaf_code(entity as usize),
                        self.accounts.leaf_code(account as usize),
                        self.products.leaf_code(product as usize),
                        self.entity_currency[entity as usize],
                    ],
                    self.amount(version, month, index),
                );
            }
        }
        batch.finish()
    }

    /// Level-2 entity groups (regions) by the combinations under them, most first.
    fn regions_by_weight(&self) -> Vec<(String, Vec<usize>)> {
        let mut weight: HashMap<usize, usize> = HashMap::new();
        for &(entity, ..) in &self.combinations {
            *weight.entry(entity as usize).or_default() += 1;
        }
        let mut regions: Vec<(String, Vec<usize>)> = self
            .entities
            .groups()
            .into_iter()
            .filter(|(path, _)| path.matches('.').count() == 1)
            .collect();
        let total = |leaves: &Vec<usize>| -> usize {
            leaves
                .iter()
                .map(|l| weight.get(l).copied().unwrap_or(0))
                .sum()
        };
        regions.sort_by_key(|(path, leaves)| (std::cmp::Reverse(total(leaves)), path.clone()));
        regions
    }

    fn summary(&self) -> BenchModel {
        let regions = self.regions_by_weight();
        let last_year = &self.months[self.months.len() - 12][..4];
        let (grid_region, grid_leaves) = regions[0].clone();
        // Q5: the grid's region, and the account and product groups whose leaves, with it and
        // the three months of a closed quarter, come nearest to SPREAD_CELLS cells.
        // Below the root, so that every account of the target has the same sign.
        let account_groups: Vec<_> = self
            .accounts
            .groups()
            .into_iter()
            .filter(|(path, _)| path.contains('.'))
            .collect();
        let product_groups: Vec<_> = self
            .products
            .groups()
            .into_iter()
            .filter(|(path, _)| path.contains('.'))
            .collect();
        // Only pairs holding cells of the region, so that the spread has a basis (and Q6 a
        // cell that every spread changes).
        let groups_of = |groups: &[(String, Vec<usize>)]| {
            let mut of_leaf: HashMap<usize, Vec<usize>> = HashMap::new();
            for (index, (_, leaves)) in groups.iter().enumerate() {
                for &leaf in leaves {
                    of_leaf.entry(leaf).or_default().push(index);
                }
            }
            of_leaf
        };
        let (account_groups_of, product_groups_of) =
            (groups_of(&account_groups), groups_of(&product_groups));
        let mut held: HashSet<(usize, usize)> = HashSet::new();
        for &(entity, account, product) in &self.combinations {
            if !grid_leaves.contains(&(entity as usize)) {
                continue;
            }
            let products = product_groups_of.get(&(product as usize));
            for &a in account_groups_of
                .get(&(account as usize))
                .into_iter()
                .flatten()
            {
                for &p in products.into_iter().flatten() {
                    held.insert((a, p));
                }
            }
        }
        let mut best: Option<(f64, usize, usize)> = None;
        for (a, (_, account_leaves)) in account_groups.iter().enumerate() {
            for (p, (_, product_leaves)) in product_groups.iter().enumerate() {
                if !held.contains(&(a, p)) {
                    continue;
                }
                let cells =
                    (grid_leaves.len() * account_leaves.len() * product_leaves.len() * 3) as f64;
                let distance = (cells / SPREAD_CELLS).ln().abs();
                if best.is_none_or(|(d, ..)| distance < d) {
                    best = Some((distance, a, p));
                }
            }
        }
        let (_, a, p) = best.expect("every tree has a group");
        let (account_path, account_leaves) = &account_groups[a];
        let (product_path, product_leaves) = &product_groups[p];
        let last_label = |path: &str| path.rsplit('.').next().unwrap_or(path).to_owned();
        // Q6: a cell of the spread with a Budget value and an Actual basis, so that every
        // spread changes it (the region's largest entity books in the target's currency).
        let (entity, account, product) = self
            .combinations
            .iter()
            .map(|&(e, a, p)| (e as usize, a as usize, p as usize))
            .find(|(e, a, p)| {
                grid_leaves.contains(e) && account_leaves.contains(a) && product_leaves.contains(p)
            })
            .expect("the spread target holds cells");
        let currency = self.entity_currency[grid_leaves[0]];
        let coordinate = |pairs: [(&str, String); 6]| -> Coordinate {
            pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
        };
        let spread_target = coordinate([
            ("version", "Budget".to_owned()),
            ("time", format!("{last_year}_Q1")),
            ("entity", last_label(&grid_region)),
            ("account", last_label(account_path)),
            ("product", last_label(product_path)),
            ("currency", currency.to_owned()),
        ]);
        let history_cell = coordinate([
            ("version", "Budget".to_owned()),
            ("time", format!("{last_year}_01")),
            ("entity", self.entities.leaf_code(entity).to_owned()),
            ("account", self.accounts.leaf_code(account).to_owned()),
            ("product", self.products.leaf_code(product).to_owned()),
            ("currency", currency.to_owned()),
        ]);
        let members = [
            ("account", self.accounts.members.len()),
            ("entity", self.entities.members.len()),
            ("product", self.products.members.len()),
            ("product__promotions", self.promotions.len()),
            ("time", self.time.len()),
            ("version", self.versions.len()),
            ("currency", self.currencies.len()),
        ]
        .into_iter()
        .map(|(name, count)| (name.to_owned(), count))
        .collect();
        BenchModel {
            profile: self.profile,
            cube: CUBE.to_owned(),
            cells: self.cells(),
            members,
            combinations: self.combinations.len(),
            year: last_year.parse().expect("a year"),
            last_closed_month: self.months[self.closed_month()].clone(),
            grid_entity_path: grid_region,
            scope_entity_paths: regions[1..3].iter().map(|(p, _)| p.clone()).collect(),
            spread_target,
            spread_basis_version: "Actual".to_owned(),
            spread_cells: grid_leaves.len() * account_leaves.len() * product_leaves.len() * 3,
            history_cell,
        }
    }
}

/// The cube's definition: the demo's dimensions and measure ([`crate::demo::finance_cube`]).
pub fn planning_cube() -> CubeDefinition {
    planning_shaped_cube(CUBE)
}

/// Creates the benchmark's dimensions and its cube and fills it, one file (and commit) per
/// version; `progress` is told the cells written so far and the total.
pub async fn load(
    cubes: &CubeSchemaProvider,
    metadata: &dyn MetadataStore,
    profile: Profile,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<BenchModel> {
    let model = generate(profile)?;
    let summary = model.summary();
    let flat = |codes: &[&str]| -> Vec<MemberSpec> {
        codes.iter().map(|&c| spec(c, c, None, &[])).collect()
    };
    let dimensions = [
        (
            Dimension::new("account", "Chart of accounts"),
            model.accounts.members.clone(),
        ),
        (
            Dimension::new("entity", "Legal entities by region"),
            model.entities.members.clone(),
        ),
        (
            Dimension::new("product", "Products: category > family > product"),
            model.products.members.clone(),
        ),
        (
            Dimension::alternate_hierarchy("product", "promotions", "Products on promotion"),
            model.promotions.clone(),
        ),
        (
            Dimension::new("time", "Fiscal calendar: year > quarter > month"),
            model.time.clone(),
        ),
        (
            Dimension::new("version", "Plan versions"),
            flat(&model.versions),
        ),
        (
            Dimension::new("currency", "Booking currencies"),
            flat(&model.currencies),
        ),
    ];
    for (dimension, members) in dimensions {
        metadata
            .create_dimension(dimension, members)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
    }
    let cube = planning_cube();
    let table = cubes.create_cube(cube.clone()).await?;
    let total = summary.cells;
    let mut written = 0;
    progress(written, total);
    for version in &model.versions {
        let batch = model.version_batch(&cube, version)?;
        written += batch.num_rows();
        table.append(&[batch]).await?;
        progress(written, total);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_have_the_announced_sizes() {
        for (profile, cells, accounts, entities, products) in [
            (Profile::Ci, 1_000_000, 120, 60, 200),
            (Profile::S, 10_000_000, 500, 200, 1_000),
        ] {
            let model = generate(profile).unwrap();
            let within = |got: usize, wanted: usize| got <= wanted && got * 10 >= wanted * 9;
            assert!(
                within(model.cells(), cells),
                "{profile:?}: {} cells",
                model.cells()
            );
            assert!(within(model.accounts.members.len(), accounts));
            assert!(within(model.entities.members.len(), entities));
            assert!(within(model.products.members.len(), products));
        }
    }

    #[test]
    fn trees_are_ragged_within_their_depths() {
        let model = generate(Profile::S).unwrap();
        let depths = |tree: &Tree| -> (usize, usize) {
            let depths = tree.leaf_paths.iter().map(Vec::len);
            (depths.clone().min().unwrap(), depths.max().unwrap())
        };
        assert_eq!(depths(&model.accounts), (4, 6));
        assert_eq!(depths(&model.entities), (3, 6));
        assert_eq!(depths(&model.products), (4, 4));
        let shared = model.promotions.len() - PROMOTIONS - 1;
        let share = shared as f64 / model.products.leaf_paths.len() as f64;
        assert!((0.03..0.07).contains(&share), "{share}");
    }

    #[test]
    fn forecast_is_actual_until_the_switchover() {
        let model = generate(Profile::Ci).unwrap();
        let closed = model.closed_month();
        assert_eq!(model.months[closed], "2025_06");
        for combination in [0, 17, model.combinations.len() - 1] {
            for month in 0..model.months.len() {
                let (actual, forecast) = (
                    model.amount("Actual", month, combination),
                    model.amount("Forecast", month, combination),
                );
                assert_eq!(actual == forecast, month <= closed, "month {month}");
            }
        }
    }

    #[test]
    fn the_entity_mix_is_skewed() {
        let model = generate(Profile::S).unwrap();
        let mut per_entity = vec![0usize; model.entities.leaf_paths.len()];
        for &(entity, ..) in &model.combinations {
            per_entity[entity as usize] += 1;
        }
        per_entity.sort_unstable();
        let top_tenth: usize = per_entity.iter().rev().take(per_entity.len() / 10).sum();
        assert!(top_tenth * 3 > model.combinations.len(), "{top_tenth}");
    }

    #[test]
    fn the_spread_writes_between_10k_and_500k_cells() {
        for profile in [Profile::Ci, Profile::S, Profile::M] {
            let summary = generate(profile).unwrap().summary();
            assert!(
                (10_000..=500_000).contains(&summary.spread_cells),
                "{profile:?}: {}",
                summary.spread_cells
            );
        }
    }
}
