//! Marks: a sparse index of a data file by its sort order.
//!
//! A data file's rows are sorted by their coordinates, so the file is a sequence of
//! *granules* of [`GRANULE_ROWS`] rows, and the rows of a granule lie, lexicographically,
//! between the coordinate of its first row and that of the next granule's first row (the
//! file's last row for the last granule). Those coordinates, the *marks*, are kept in the
//! file's Parquet footer under [`MARKS_KEY`]. Given the filters of a query on the
//! dimensions, a granule can hold a matching cell only if some coordinate between its marks
//! passes them; the scan reads only such granules.
//!
//! This is what Parquet's own statistics cannot do: they keep a minimum and maximum per
//! column, and a row group running from one entity into the next spans every account in
//! between, so `entity = 'DE' AND account = '4000'` keeps it. The marks keep the order
//! across columns: a point query reads one granule, a subtree grid exactly the granules of
//! its months and entities.

use std::cmp::Ordering;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use datafusion::parquet::file::metadata::KeyValue;
use serde::{Deserialize, Serialize};

use super::CellBounds;

/// The footer key holding a data file's marks (JSON, see [`Marks`]).
pub(crate) const MARKS_KEY: &str = "mdf.marks";

/// Rows per granule: the same as a data page, so a granule is read as whole pages.
pub(crate) const GRANULE_ROWS: usize = 8 * 1024;

/// The marks of one data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Marks {
    /// Rows per granule.
    pub granule_rows: usize,
    /// Rows in the file.
    pub rows: usize,
    /// The coordinate (member codes in dimension order) of each granule's first row.
    pub first: Vec<Vec<String>>,
    /// The coordinate of the file's last row.
    pub last: Vec<String>,
}

impl Marks {
    /// The footer entry holding these marks.
    pub(crate) fn to_key_value(&self) -> KeyValue {
        let json = serde_json::to_string(self).expect("marks are plain strings and numbers");
        KeyValue::new(MARKS_KEY.to_owned(), json)
    }

    /// The marks in a file's footer entries, if the file has them and they are well formed
    /// (a file without them is read whole, so a malformed entry costs speed, never cells).
    pub(crate) fn from_footer(entries: Option<&Vec<KeyValue>>) -> Option<Marks> {
        let entry = entries?.iter().find(|entry| entry.key == MARKS_KEY)?;
        let marks: Marks = serde_json::from_str(entry.value.as_deref()?).ok()?;
        marks.is_consistent().then_some(marks)
    }

    /// Whether the marks describe at least one granule and one mark per granule, every mark
    /// as wide as the last row's coordinate.
    pub(crate) fn is_consistent(&self) -> bool {
        self.granule_rows > 0
            && self.first.len() == self.rows.div_ceil(self.granule_rows)
            && !self.first.is_empty()
            && (self.first.iter()).all(|mark| mark.len() == self.last.len())
    }

    /// The rows of granule `granule`.
    pub(crate) fn granule_len(&self, granule: usize) -> usize {
        self.granule_rows
            .min(self.rows - granule * self.granule_rows)
    }

    /// Per granule, whether it can hold a coordinate `allowed` admits inside one of `boxes`.
    pub(crate) fn touched(&self, allowed: &[Allowed], boxes: &[CellBounds]) -> Vec<bool> {
        let mut touched = vec![false; self.first.len()];
        for bounds in boxes {
            for granule in self.granules(&Allowed::within(allowed, bounds)) {
                touched[granule] = true;
            }
        }
        touched
    }

    /// The granules that can hold a coordinate `allowed` admits, in file order. A file holds
    /// each coordinate once, so a granule's rows come before the next granule's first row.
    pub(crate) fn granules(&self, allowed: &[Allowed]) -> Vec<usize> {
        if allowed.iter().any(Allowed::is_empty) {
            return Vec::new();
        }
        if allowed.iter().all(Allowed::is_any) {
            return (0..self.first.len()).collect();
        }
        // Every admitted coordinate starts with members no smaller than `low`'s and no
        // larger than `high`'s, so the granules that can hold one are a run, found by binary
        // search on the sorted marks (granule `g` ends before mark `g + 1`); only they are
        // tested member by member.
        let low = Allowed::leading_bounds(allowed, |(low, _)| low.as_ref(), Ordering::Less);
        let high = Allowed::leading_bounds(allowed, |(_, high)| high.as_ref(), Ordering::Greater);
        let start = self.first[1..].partition_point(|next| next[..low.len()] < low[..]);
        let end =
            start + self.first[start..].partition_point(|first| first[..high.len()] <= high[..]);
        (start..end)
            .filter(|&granule| {
                let low = &self.first[granule];
                match self.first.get(granule + 1) {
                    Some(next) => may_hold(allowed, Some(low), Some(next), true),
                    None => may_hold(allowed, Some(low), Some(&self.last), false),
                }
            })
            .collect()
    }
}

/// Collects a file's marks while its sorted rows are written.
#[derive(Debug, Default)]
pub(crate) struct MarkCollector {
    rows: usize,
    first: Vec<Vec<String>>,
    last: Vec<String>,
}

impl MarkCollector {
    /// Takes note of the next `rows` rows, whose coordinates `member(dimension, row)` gives.
    pub(crate) fn add(
        &mut self,
        rows: usize,
        dimensions: usize,
        member: impl Fn(usize, usize) -> String,
    ) {
        if rows == 0 {
            return;
        }
        let coordinate = |row: usize| (0..dimensions).map(|d| member(d, row)).collect();
        let mut row = (GRANULE_ROWS - self.rows % GRANULE_ROWS) % GRANULE_ROWS;
        while row < rows {
            self.first.push(coordinate(row));
            row += GRANULE_ROWS;
        }
        self.last = coordinate(rows - 1);
        self.rows += rows;
    }

    /// The marks of the rows noted.
    pub(crate) fn finish(self) -> Marks {
        Marks {
            granule_rows: GRANULE_ROWS,
            rows: self.rows,
            first: self.first,
            last: self.last,
        }
    }
}

/// The member codes a query's filters admit on one dimension: a union of closed ranges, a
/// `None` bound being open-ended. Strict comparisons are taken as inclusive, which can only
/// keep a granule more.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Allowed(Vec<(Option<String>, Option<String>)>);

impl Allowed {
    /// Every member.
    fn any() -> Self {
        Self(vec![(None, None)])
    }

    /// What `filters` (a conjunction) admit on each of `dimensions`.
    pub(crate) fn from_filters(dimensions: &[&str], filters: &[Expr]) -> Vec<Allowed> {
        let mut allowed = vec![Allowed::any(); dimensions.len()];
        let mut conjuncts: Vec<&Expr> = filters.iter().collect();
        while let Some(filter) = conjuncts.pop() {
            if let Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::And,
                right,
            }) = filter
            {
                conjuncts.push(left);
                conjuncts.push(right);
                continue;
            }
            if let Some((column, admitted)) = constraint(filter)
                && let Some(index) = dimensions.iter().position(|d| *d == column)
            {
                allowed[index] = allowed[index].intersect(&admitted);
            }
        }
        allowed
    }

    /// What `allowed` (one per dimension) admits inside `bounds`, dimension by dimension.
    pub(crate) fn within(allowed: &[Allowed], bounds: &CellBounds) -> Vec<Allowed> {
        (allowed.iter().zip(bounds.min.iter().zip(&bounds.max)))
            .map(|(admitted, (min, max))| {
                admitted.intersect(&Allowed(vec![(Some(min.clone()), Some(max.clone()))]))
            })
            .collect()
    }

    /// Whether some coordinate in `bounds` passes `allowed` (one per dimension).
    pub(crate) fn meets(allowed: &[Allowed], bounds: &CellBounds) -> bool {
        !Allowed::within(allowed, bounds)
            .iter()
            .any(Allowed::is_empty)
    }

    /// Per dimension from the first, the smallest (`Less`) or largest (`Greater`) member
    /// `allowed` admits, up to the first dimension it leaves unbounded that way.
    fn leading_bounds(
        allowed: &[Allowed],
        bound: impl Fn(&(Option<String>, Option<String>)) -> Option<&String>,
        keep: Ordering,
    ) -> Vec<String> {
        let mut bounds = Vec::new();
        for admitted in allowed {
            let mut members = admitted.0.iter().map(&bound);
            let Some(Some(first)) = members.next() else {
                break;
            };
            let extreme = members.try_fold(first, |best, member| {
                member.map(|member| {
                    if member.cmp(best) == keep {
                        member
                    } else {
                        best
                    }
                })
            });
            match extreme {
                Some(extreme) => bounds.push(extreme.clone()),
                None => break,
            }
        }
        bounds
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn is_any(&self) -> bool {
        matches!(self.0.as_slice(), [(None, None)])
    }

    fn intersect(&self, other: &Allowed) -> Allowed {
        let mut ranges = Vec::new();
        for (low, high) in &self.0 {
            for (other_low, other_high) in &other.0 {
                let low = bound_max(low, other_low);
                let high = bound_min(high, other_high);
                let empty = matches!((&low, &high), (Some(l), Some(h)) if l > h);
                if !empty {
                    ranges.push((low, high));
                }
            }
        }
        Allowed(ranges)
    }

    fn contains(&self, member: &str) -> bool {
        self.0.iter().any(|(low, high)| {
            low.as_deref().is_none_or(|low| low <= member)
                && high.as_deref().is_none_or(|high| member <= high)
        })
    }

    /// Whether some admitted member lies strictly between `low` and `high` (`None`: no
    /// bound), taking member codes as a continuum (which can only say yes more often).
    fn meets_between(&self, low: Option<&str>, high: Option<&str>) -> bool {
        self.0.iter().any(|(from, to)| {
            // The tighter lower bound, and whether it is inclusive (the range's own) or
            // exclusive (the open interval's).
            let lower = match (from.as_deref(), low) {
                (Some(from), Some(low)) if from > low => Some((from, true)),
                (_, Some(low)) => Some((low, false)),
                (Some(from), None) => Some((from, true)),
                (None, None) => None,
            };
            let upper = match (to.as_deref(), high) {
                (Some(to), Some(high)) if to < high => Some((to, true)),
                (_, Some(high)) => Some((high, false)),
                (Some(to), None) => Some((to, true)),
                (None, None) => None,
            };
            match (lower, upper) {
                (Some((lower, closed_below)), Some((upper, closed_above))) => {
                    match lower.cmp(upper) {
                        Ordering::Less => true,
                        Ordering::Equal => closed_below && closed_above,
                        Ordering::Greater => false,
                    }
                }
                _ => true,
            }
        })
    }
}

/// Whether some coordinate from `low` to `high` (`None`: unbounded; `high` itself excluded
/// when `high_open`), both starting at the dimension `allowed` starts at, passes `allowed`
/// on every dimension. Every `allowed` is non-empty.
fn may_hold(
    allowed: &[Allowed],
    low: Option<&[String]>,
    high: Option<&[String]>,
    high_open: bool,
) -> bool {
    let Some((first, rest)) = allowed.split_first() else {
        // The coordinate is `high` itself when every dimension followed `high`.
        return !(high_open && high.is_some());
    };
    if first.is_any() && rest.iter().all(Allowed::is_any) {
        return true;
    }
    let low_member = low.map(|k| k[0].as_str());
    let high_member = high.map(|k| k[0].as_str());
    // A member strictly between the bounds admits any continuation.
    if first.meets_between(low_member, high_member) {
        return true;
    }
    if let Some(member) = low_member
        && first.contains(member)
    {
        let rest_high = (high_member == Some(member)).then(|| &high.expect("bounded")[1..]);
        if may_hold(rest, low.map(|k| &k[1..]), rest_high, high_open) {
            return true;
        }
    }
    if let Some(member) = high_member
        && low_member != Some(member)
        && first.contains(member)
    {
        return may_hold(rest, None, high.map(|k| &k[1..]), high_open);
    }
    false
}

fn bound_max(a: &Option<String>, b: &Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b).clone()),
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    }
}

fn bound_min(a: &Option<String>, b: &Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b).clone()),
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    }
}

/// The column a filter constrains and the members it admits, for the filter shapes a grid
/// query uses: comparisons with a literal, `IN` lists of literals, `BETWEEN` literals.
fn constraint(filter: &Expr) -> Option<(&str, Allowed)> {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, op, value) = match (column_name(left), text(right)) {
                (Some(column), Some(value)) => (column, *op, value),
                _ => (column_name(right)?, op.swap()?, text(left)?),
            };
            let range = match op {
                Operator::Eq => (Some(value.clone()), Some(value)),
                Operator::Gt | Operator::GtEq => (Some(value), None),
                Operator::Lt | Operator::LtEq => (None, Some(value)),
                _ => return None,
            };
            Some((column, Allowed(vec![range])))
        }
        Expr::InList(list) if !list.negated => {
            let members = list
                .list
                .iter()
                .map(|item| text(item).map(|m| (Some(m.clone()), Some(m))))
                .collect::<Option<Vec<_>>>()?;
            Some((column_name(&list.expr)?, Allowed(members)))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => Some((
            column_name(expr)?,
            Allowed(vec![(Some(text(low)?), Some(text(high)?))]),
        )),
        _ => None,
    }
}

fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(column) => Some(column.name.as_str()),
        _ => None,
    }
}

fn text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(value))
            | ScalarValue::Utf8View(Some(value))
            | ScalarValue::LargeUtf8(Some(value)),
            _,
        ) => Some(value.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    fn key(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| p.to_string()).collect()
    }

    /// Granules of two-dimension coordinates (year, month), two rows each.
    fn marks(rows: &[[&str; 2]]) -> Marks {
        let first = rows.chunks(2).map(|chunk| key(&chunk[0])).collect();
        Marks {
            granule_rows: 2,
            rows: rows.len(),
            first,
            last: key(rows.last().unwrap()),
        }
    }

    fn selected(marks: &Marks, filters: &[Expr]) -> Vec<usize> {
        marks.granules(&Allowed::from_filters(&["year", "month"], filters))
    }

    #[test]
    fn a_point_reads_the_granules_that_can_hold_it() {
        let marks = marks(&[
            ["2024", "01"],
            ["2024", "02"],
            ["2024", "03"],
            ["2025", "01"],
            ["2025", "02"],
            ["2025", "03"],
            ["2026", "01"],
        ]);
        let point = [col("year").eq(lit("2025")), col("month").eq(lit("02"))];
        assert_eq!(selected(&marks, &point), vec![2]);
        // Granule 1 runs from (2024, 03) to (2025, 02): (2025, 01) is in it.
        let january = [col("year").eq(lit("2025")), col("month").eq(lit("01"))];
        assert_eq!(selected(&marks, &january), vec![1]);
        let march = [col("month").eq(lit("03"))];
        assert_eq!(selected(&marks, &march), vec![1, 2]);
        let missing = [col("year").eq(lit("2023"))];
        assert_eq!(selected(&marks, &missing), Vec::<usize>::new());
    }

    #[test]
    fn ranges_lists_and_unrelated_filters() {
        let marks = marks(&[
            ["2024", "01"],
            ["2024", "02"],
            ["2025", "01"],
            ["2025", "02"],
            ["2026", "01"],
            ["2026", "02"],
        ]);
        let list = [col("year").in_list(vec![lit("2024"), lit("2026")], false)];
        assert_eq!(selected(&marks, &list), vec![0, 1, 2]);
        // Granule 0 runs up to (2025, 01), exclusive: member codes are taken as a continuum,
        // so (2025, 00) could be in it.
        let between = [col("year").between(lit("2025"), lit("2025"))];
        assert_eq!(selected(&marks, &between), vec![0, 1]);
        let after = [col("year").gt(lit("2026"))];
        assert_eq!(selected(&marks, &after), vec![1, 2]);
        let before = [col("year").lt(lit("2023"))];
        assert_eq!(selected(&marks, &before), Vec::<usize>::new());
        let disjoint = [col("year").eq(lit("2024")), col("year").eq(lit("2025"))];
        assert_eq!(selected(&marks, &disjoint), Vec::<usize>::new());
        let unrelated = [col("amount").gt(lit(5)), col("year").not_eq(lit("2024"))];
        assert_eq!(selected(&marks, &unrelated), vec![0, 1, 2]);
    }

    /// The binary search finds exactly the granules testing every granule finds.
    #[test]
    fn the_granules_found_are_those_every_granule_tested_finds() {
        let years = ["2023", "2024", "2025", "2026"];
        let months = ["01", "02", "03", "04", "05"];
        let rows: Vec<[&str; 2]> = (years.iter())
            .flat_map(|year| months.iter().map(move |month| [*year, *month]))
            .collect();
        let mut filters = vec![
            vec![],
            vec![col("year").eq(lit("2025"))],
            vec![col("year").gt(lit("2024"))],
            vec![col("year").lt(lit("2025")), col("month").eq(lit("03"))],
            vec![col("month").in_list(vec![lit("01"), lit("05")], false)],
            vec![
                col("year").between(lit("2023"), lit("2024")),
                col("month").gt(lit("04")),
            ],
            vec![col("year").eq(lit("2022"))],
            vec![col("year").eq(lit("2027"))],
        ];
        for year in years {
            for month in months {
                filters.push(vec![col("year").eq(lit(year)), col("month").eq(lit(month))]);
            }
        }
        for granule_rows in [1, 2, 3, 7] {
            let marks = Marks {
                granule_rows,
                rows: rows.len(),
                first: rows.chunks(granule_rows).map(|c| key(&c[0])).collect(),
                last: key(rows.last().unwrap()),
            };
            for filter in &filters {
                let allowed = Allowed::from_filters(&["year", "month"], filter);
                let every: Vec<usize> = (0..marks.first.len())
                    .filter(|&g| match marks.first.get(g + 1) {
                        Some(next) => may_hold(&allowed, Some(&marks.first[g]), Some(next), true),
                        None => may_hold(&allowed, Some(&marks.first[g]), Some(&marks.last), false),
                    })
                    .collect();
                let found = if allowed.iter().any(Allowed::is_empty) {
                    vec![]
                } else {
                    every
                };
                assert_eq!(marks.granules(&allowed), found, "{granule_rows} {filter:?}");
            }
        }
    }

    #[test]
    fn collected_marks_survive_the_footer() {
        let mut collector = MarkCollector::default();
        let rows = GRANULE_ROWS * 2 + 3;
        let member = |d: usize, row: usize| format!("{d}:{row:08}");
        collector.add(GRANULE_ROWS + 1, 2, member);
        collector.add(rows - GRANULE_ROWS - 1, 2, |d, row| {
            member(d, row + GRANULE_ROWS + 1)
        });
        let marks = collector.finish();
        assert_eq!(marks.first.len(), 3);
        assert_eq!(marks.first[1], key(&["0:00008192", "1:00008192"]));
        assert_eq!(marks.last, key(&["0:00016386", "1:00016386"]));
        let footer = vec![marks.to_key_value()];
        assert_eq!(Marks::from_footer(Some(&footer)), Some(marks));
        let broken = vec![KeyValue::new(MARKS_KEY.to_owned(), "[".to_owned())];
        assert_eq!(Marks::from_footer(Some(&broken)), None);
    }
}
