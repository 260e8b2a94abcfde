//! Time intelligence: the `calendar` schema, tables derived from the `time` dimension's
//! hierarchy (years > quarters > months, or any calendar of the same shape) that planning
//! queries join to.
//!
//! - `calendar.periods`: one row per period (member of `time`) with its `level`, its
//!   `position` among the periods of its level in model order, the `prior_period`,
//!   `next_period` and `same_period_last_year` (the period at the same place in the previous
//!   top-level period), and its `year` and `quarter` (its ancestors at levels 1 and 2).
//! - `calendar.to_date`: for each period and `to_date` (`'year'`, `'quarter'`), the periods of
//!   its level from the start of its year (quarter) up to it: join cells on `member` and
//!   group by `period` for year-to-date and quarter-to-date figures.
//! - `version_switchover(cutoff, before, after)`: for each leaf period, the version to read:
//!   `before` up to and including `cutoff`, `after` later (Actual, then Forecast).
//!
//! Every scan reads the dimension's members from the store, so the tables follow member
//! changes.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::Expr;

use super::{Member, MetadataError, MetadataStore};
use crate::computed::{ComputedRows, ComputedTable};

/// The dimension the calendar is derived from.
pub const TIME_DIMENSION: &str = "time";

/// Which calendar table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CalendarKind {
    Periods,
    ToDate,
    Switchover {
        cutoff: String,
        before: String,
        after: String,
    },
}

/// A calendar table, computed from the `time` members at every scan.
#[derive(Debug)]
struct CalendarTable {
    store: Arc<dyn MetadataStore>,
    kind: CalendarKind,
    schema: SchemaRef,
}

fn text_field(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// The version of a calendar table `provider` is: the `time` dimension's, with what the table
/// computes (for `version_switchover`, its arguments); `None` for any other table.
pub(crate) async fn calendar_version(provider: &dyn TableProvider) -> Option<Result<String>> {
    let calendar = &provider.downcast_ref::<ComputedTable<CalendarTable>>()?.0;
    let version = calendar.store.dimension_version(TIME_DIMENSION).await;
    Some(
        version
            .map(|version| format!("{version}:{:?}", calendar.kind))
            .map_err(Into::into),
    )
}

impl CalendarTable {
    fn new(store: Arc<dyn MetadataStore>, kind: CalendarKind) -> Self {
        let fields = match kind {
            CalendarKind::Periods => vec![
                text_field("period", false),
                text_field("name", false),
                Field::new("level", DataType::Int32, false),
                Field::new("position", DataType::Int32, false),
                text_field("prior_period", true),
                text_field("next_period", true),
                text_field("same_period_last_year", true),
                text_field("year", false),
                text_field("quarter", true),
            ],
            CalendarKind::ToDate => vec![
                text_field("period", false),
                text_field("to_date", false),
                text_field("member", false),
            ],
            CalendarKind::Switchover { .. } => {
                vec![text_field("period", false), text_field("version", false)]
            }
        };
        Self {
            store,
            kind,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    fn batch(&self, calendar: &Calendar) -> Result<RecordBatch> {
        let text = |values: Vec<Option<&str>>| Arc::new(StringArray::from(values)) as ArrayRef;
        let columns: Vec<ArrayRef> = match &self.kind {
            CalendarKind::Periods => {
                let periods = &calendar.members;
                let code = |i: Option<usize>| i.map(|i| periods[i].code.as_str());
                vec![
                    text(periods.iter().map(|m| Some(m.code.as_str())).collect()),
                    text(periods.iter().map(|m| Some(m.name.as_str())).collect()),
                    Arc::new(Int32Array::from_iter_values(
                        periods.iter().map(|m| m.level),
                    )),
                    Arc::new(Int32Array::from_iter_values(
                        (0..periods.len()).map(|i| calendar.position(i) as i32),
                    )),
                    text(
                        (0..periods.len())
                            .map(|i| code(calendar.offset(i, -1)))
                            .collect(),
                    ),
                    text(
                        (0..periods.len())
                            .map(|i| code(calendar.offset(i, 1)))
                            .collect(),
                    ),
                    text(
                        (0..periods.len())
                            .map(|i| code(calendar.same_period_last_year(i)))
                            .collect(),
                    ),
                    text(
                        (0..periods.len())
                            .map(|i| code(calendar.ancestor(i, 1)))
                            .collect(),
                    ),
                    text(
                        (0..periods.len())
                            .map(|i| code(calendar.ancestor(i, 2)))
                            .collect(),
                    ),
                ]
            }
            CalendarKind::ToDate => {
                let mut rows: Vec<(&str, &str, &str)> = Vec::new();
                for (i, period) in calendar.members.iter().enumerate() {
                    for (to_date, level) in [("year", 1), ("quarter", 2)] {
                        if period.level <= level {
                            continue;
                        }
                        for member in calendar.to_date(i, level) {
                            rows.push((&period.code, to_date, &calendar.members[member].code));
                        }
                    }
                }
                vec![
                    text(rows.iter().map(|r| Some(r.0)).collect()),
                    text(rows.iter().map(|r| Some(r.1)).collect()),
                    text(rows.iter().map(|r| Some(r.2)).collect()),
                ]
            }
            CalendarKind::Switchover {
                cutoff,
                before,
                after,
            } => {
                let Some(cutoff) = calendar
                    .index(cutoff)
                    .filter(|i| calendar.members[*i].is_leaf)
                else {
                    return Err(MetadataError::InUse(format!(
                        "{cutoff:?} is not a leaf member of {TIME_DIMENSION}"
                    ))
                    .into());
                };
                let leaves: Vec<usize> = (0..calendar.members.len())
                    .filter(|i| calendar.members[*i].is_leaf)
                    .collect();
                let cutoff_position = calendar.position(cutoff);
                vec![
                    text(
                        leaves
                            .iter()
                            .map(|i| Some(calendar.members[*i].code.as_str()))
                            .collect(),
                    ),
                    text(
                        leaves
                            .iter()
                            .map(|i| match calendar.position(*i) <= cutoff_position {
                                true => Some(before.as_str()),
                                false => Some(after.as_str()),
                            })
                            .collect(),
                    ),
                ]
            }
        };
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

#[async_trait]
impl ComputedRows for CalendarTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn rows(&self) -> Result<RecordBatch> {
        let calendar = Calendar::new(self.store.members(TIME_DIMENSION).await?);
        self.batch(&calendar)
    }
}

/// The `time` members with what the calendar asks of them.
struct Calendar {
    /// In model order.
    members: Vec<Member>,
    /// Per level, the indices of its members in model order.
    by_level: HashMap<i32, Vec<usize>>,
    /// Per member, where it stands among the members of its level.
    positions: Vec<usize>,
    by_code: HashMap<String, usize>,
}

impl Calendar {
    fn new(members: Vec<Member>) -> Self {
        let mut by_level: HashMap<i32, Vec<usize>> = HashMap::new();
        let mut positions = Vec::with_capacity(members.len());
        for (i, member) in members.iter().enumerate() {
            let level = by_level.entry(member.level).or_default();
            positions.push(level.len());
            level.push(i);
        }
        let by_code = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.code.clone(), i))
            .collect();
        Self {
            members,
            by_level,
            positions,
            by_code,
        }
    }

    fn index(&self, code: &str) -> Option<usize> {
        self.by_code.get(code).copied()
    }

    /// Where member `i` stands among the members of its level.
    fn position(&self, i: usize) -> usize {
        self.positions[i]
    }

    /// The member `n` places after member `i` at its level, if there is one.
    fn offset(&self, i: usize, n: isize) -> Option<usize> {
        let level = &self.by_level[&self.members[i].level];
        let at = self.position(i).checked_add_signed(n)?;
        level.get(at).copied()
    }

    /// The ancestor of member `i` at `level` (itself at its own level).
    fn ancestor(&self, i: usize, level: i32) -> Option<usize> {
        let labels = self.members[i].path.labels();
        let code = labels.get(usize::try_from(level).ok()?.checked_sub(1)?)?;
        self.index(code)
    }

    /// The members of `i`'s level under `i`'s ancestor at `level`, in model order.
    fn under(&self, i: usize, level: i32) -> Vec<usize> {
        let Some(top) = self.ancestor(i, level) else {
            return Vec::new();
        };
        let top = &self.members[top].path;
        self.by_level[&self.members[i].level]
            .iter()
            .copied()
            .filter(|&j| self.members[j].path.is_descendant_of(top))
            .collect()
    }

    /// The members of `i`'s level from the start of its ancestor at `level` up to `i`.
    fn to_date(&self, i: usize, level: i32) -> Vec<usize> {
        let under = self.under(i, level);
        let end = under.iter().position(|&j| j == i).map_or(0, |p| p + 1);
        under[..end].to_vec()
    }

    /// The member at the same place as `i` under the previous top-level member (year).
    fn same_period_last_year(&self, i: usize) -> Option<usize> {
        let year = self.ancestor(i, 1)?;
        let place = self.under(i, 1).iter().position(|&j| j == i)?;
        let last_year = self.offset(year, -1)?;
        if self.members[i].level == 1 {
            return Some(last_year);
        }
        let last_year_path = &self.members[last_year].path;
        self.by_level[&self.members[i].level]
            .iter()
            .copied()
            .filter(|&j| self.members[j].path.is_descendant_of(last_year_path))
            .nth(place)
    }
}

/// The `calendar` schema: `periods` and `to_date`.
#[derive(Debug)]
pub struct CalendarSchemaProvider {
    store: Arc<dyn MetadataStore>,
}

impl CalendarSchemaProvider {
    /// The calendar of `store`'s `time` dimension.
    pub fn new(store: Arc<dyn MetadataStore>) -> Self {
        Self { store }
    }
}

const CALENDAR_TABLES: [&str; 2] = ["periods", "to_date"];

#[async_trait]
impl SchemaProvider for CalendarSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        CALENDAR_TABLES.iter().map(|t| (*t).to_owned()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let kind = match name {
            "periods" => CalendarKind::Periods,
            "to_date" => CalendarKind::ToDate,
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(ComputedTable(CalendarTable::new(
            Arc::clone(&self.store),
            kind,
        )))))
    }

    fn table_exist(&self, name: &str) -> bool {
        CALENDAR_TABLES.contains(&name)
    }
}

/// `version_switchover(cutoff, before, after)`.
#[derive(Debug)]
pub struct VersionSwitchoverFunction {
    store: Arc<dyn MetadataStore>,
}

impl VersionSwitchoverFunction {
    /// The function over `store`'s `time` dimension.
    pub fn new(store: Arc<dyn MetadataStore>) -> Self {
        Self { store }
    }
}

impl TableFunctionImpl for VersionSwitchoverFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let text = |expr: &Expr| match expr {
            Expr::Literal(ScalarValue::Utf8(Some(t)) | ScalarValue::Utf8View(Some(t)), _) => {
                Some(t.clone())
            }
            _ => None,
        };
        let texts: Option<Vec<String>> = args.exprs().iter().map(text).collect();
        let Some([cutoff, before, after]) = texts.as_deref() else {
            return plan_err!(
                "version_switchover takes three texts: the last period of the first version, and the two versions: version_switchover('2025_06', 'Actual', 'Forecast')"
            );
        };
        Ok(Arc::new(ComputedTable(CalendarTable::new(
            Arc::clone(&self.store),
            CalendarKind::Switchover {
                cutoff: cutoff.clone(),
                before: before.clone(),
                after: after.clone(),
            },
        ))))
    }
}
