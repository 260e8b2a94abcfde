//! Result columns named as PostgreSQL names them.
//!
//! PostgreSQL names an output column that has no alias after what it computes (its
//! `FigureColname`): a column by the column's name, a function call by the function (`count`,
//! `upper`, `now`), a cast by what it casts or else by the type (`int4`), a scalar subquery by
//! its own column, `CASE` by its `ELSE` or as `case`, and anything else (a constant, an
//! operator) as `?column?`. DataFusion names it after the whole expression (`count(*)`,
//! `Int64(1) + Int64(1)`). Clients read columns by name (node-postgres's `rows[0].count`,
//! psycopg's dictionary rows, a BI tool's headers), so the wire must give PostgreSQL's.
//!
//! DataFusion's names stay in the plan: what sits above the output (`ORDER BY`) refers to
//! them, and PostgreSQL's may repeat (`SELECT 1, 2` has two `?column?`), which a DataFusion
//! schema refuses. [`OutputNames::apply`] therefore records PostgreSQL's name in the output
//! field's metadata, and the wire reports [`postgres_column_name`].

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::Field;
use datafusion::common::Result;
use datafusion::logical_expr::expr::{Alias, FieldMetadata};
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};
use datafusion::sql::sqlparser::ast::{
    self, AccessExpr, ArrayElemTypeDef, DataType, ExactNumberInfo, Ident, ObjectName,
    ObjectNamePart, OrderBy, OrderByKind, Query, SelectItem, SetExpr, Statement, TimezoneInfo,
    TrimWhereField,
};

use crate::output_projection::rewrite_output_projection;

/// The output field metadata key holding the column's PostgreSQL name, where it differs from
/// DataFusion's.
pub const POSTGRES_NAME: &str = "quantatom.postgres_name";

/// PostgreSQL's name for a column nothing names (a constant, an operator).
const UNNAMED: &str = "?column?";

/// The name a client is told for `field`, an output column of a plan named by
/// [`OutputNames::apply`].
pub fn postgres_column_name(field: &Field) -> &str {
    field
        .metadata()
        .get(POSTGRES_NAME)
        .map_or(field.name().as_str(), String::as_str)
}

/// PostgreSQL's names for a query's output columns, as its SELECT list gives them; taken from
/// the statement as the client wrote it, before any rewrite.
#[derive(Clone, Debug, Default)]
pub struct OutputNames {
    /// One per SELECT item (`None`: not a query, or a body without a SELECT list).
    items: Option<Vec<ItemName>>,
}

/// What one SELECT item tells of its columns' names.
#[derive(Clone, Debug)]
enum ItemName {
    /// Its one column's PostgreSQL name.
    Named(String),
    /// A wildcard: as many columns as it expands to, named as DataFusion names them.
    Expanded,
    /// Named by the plan (`AS (a, b)`).
    AsPlanned,
}

impl OutputNames {
    /// The output names `statement` gives, if it is a query.
    pub fn of(statement: &Statement) -> Self {
        let Statement::Query(query) = statement else {
            return Self::default();
        };
        Self {
            items: select_list(query).map(|items| items.iter().map(ItemName::of).collect()),
        }
    }

    /// `plan`, planned from the statement, with PostgreSQL's name recorded on every output
    /// column whose DataFusion name differs. A plan whose output cannot be matched to the
    /// SELECT list is returned as it is.
    pub fn apply(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let Some(items) = &self.items else {
            return Ok(plan);
        };
        let names = output_names(items, plan.schema().fields().len());
        let renames: Vec<Option<String>> = names
            .into_iter()
            .zip(plan.schema().fields())
            .map(|(name, field)| name.filter(|name| name != field.name()))
            .collect();
        if renames.iter().all(Option::is_none) {
            return Ok(plan);
        }
        with_names(plan, &renames)
    }
}

/// Gives each SELECT item of `statement`'s output lists (every branch of a set operation) that
/// would repeat an earlier item's DataFusion name an alias of its own (`count#2`), since
/// DataFusion refuses a projection whose names repeat and PostgreSQL does not (`SELECT 1, 1`,
/// `SELECT code, code`, `SELECT x::text, x`). Call it after taking [`OutputNames::of`] the
/// statement as written: the client is told PostgreSQL's names, not these aliases.
pub fn distinguish_repeated_items(statement: &mut Statement) {
    if let Statement::Query(query) = statement {
        for_each_select_list(&mut query.body, &mut |list| {
            distinguish_in_select_list(list)
        });
    }
}

/// Gives each unaliased computed item of the queries nested in `statement`'s FROM clauses
/// (derived tables) and `WITH` lists the alias PostgreSQL names it by, so that the query
/// around refers to it as in PostgreSQL (`SELECT s.count FROM (SELECT count(*) FROM t) s`) and
/// a wildcard over it gives PostgreSQL's names (`SELECT * FROM (...) s`, the wrapping BI tools
/// put around a custom query). An item is left as it is when PostgreSQL does not name it
/// (`?column?`) or when its name would not be the only one of its SELECT list, whose wildcards
/// then hide what other names there are: DataFusion refuses repeated names in a projection.
pub fn name_nested_columns(statement: &mut Statement) {
    struct Nested;
    impl ast::VisitorMut for Nested {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            for table in query.with.iter_mut().flat_map(|with| &mut with.cte_tables) {
                for_each_select_list(&mut table.query.body, &mut |list| name_in_select_list(list));
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, table: &mut ast::TableFactor) -> ControlFlow<()> {
            if let ast::TableFactor::Derived { subquery, .. } = table {
                for_each_select_list(&mut subquery.body, &mut |list| name_in_select_list(list));
            }
            ControlFlow::Continue(())
        }
    }
    let _ = ast::VisitMut::visit(statement, &mut Nested);
}

/// [`name_nested_columns`] over one SELECT list.
fn name_in_select_list(projection: &mut [SelectItem]) {
    let items: Vec<ItemName> = projection.iter().map(ItemName::of).collect();
    if items.iter().any(|item| matches!(item, ItemName::Expanded)) {
        return;
    }
    let names: Vec<Option<String>> = items.iter().map(ItemName::name).collect();
    for (item, name) in projection.iter_mut().zip(&names) {
        let SelectItem::UnnamedExpr(expr) = item else {
            continue;
        };
        let Some(name) = name.as_deref().filter(|name| *name != UNNAMED) else {
            continue;
        };
        let names_a_column = matches!(
            expr,
            ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)
        );
        let repeated = names
            .iter()
            .flatten()
            .filter(|other| *other == name)
            .count()
            > 1;
        if names_a_column || repeated {
            continue;
        }
        let expr = std::mem::replace(expr, ast::Expr::value(ast::Value::Null));
        *item = SelectItem::ExprWithAlias {
            expr,
            alias: Ident::with_quote('"', name),
        };
    }
}

/// Calls `each` with every SELECT list of a query body: each branch of a set operation is a
/// projection of its own.
fn for_each_select_list(body: &mut SetExpr, each: &mut impl FnMut(&mut Vec<SelectItem>)) {
    match body {
        SetExpr::Select(select) => each(&mut select.projection),
        SetExpr::Query(inner) => for_each_select_list(&mut inner.body, each),
        SetExpr::SetOperation { left, right, .. } => {
            for_each_select_list(left, each);
            for_each_select_list(right, each);
        }
        _ => {}
    }
}

/// Writes each `ORDER BY` key of `statement` that names a computed output column of its
/// SELECT list, by position (`ORDER BY 1`) or by the name PostgreSQL gives an unaliased
/// expression (`ORDER BY count` after `SELECT count(*)`), as that column's expression, which
/// DataFusion then matches to the column. DataFusion knows only its own names, and refuses a
/// position whose expression is computed from a grouped column (`SELECT upper(code) ...
/// GROUP BY code ORDER BY 1`).
///
/// Only where the expression means the same in `ORDER BY`: a plain SELECT without wildcards,
/// not `DISTINCT` (DataFusion checks its keys against the input), with no aliases (DataFusion
/// looks names in `ORDER BY` up among them first), and an expression that is not a constant
/// (which would read as a position there) and holds no window function (a named window is
/// known only in the SELECT list). A position on an aliased item becomes the alias, when no
/// other column has that name. Every other key is left as written; a name two output columns
/// share is left for DataFusion to refuse, as PostgreSQL refuses it.
pub fn resolve_order_by_keys(statement: &mut Statement) {
    let Statement::Query(query) = statement else {
        return;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return;
    };
    let items = &select.projection;
    // Positions after a wildcard are known only to the plan.
    let expanded = items
        .iter()
        .any(|item| matches!(ItemName::of(item), ItemName::Expanded));
    if select.distinct.is_some() || expanded {
        return;
    }
    let aliased = items
        .iter()
        .any(|item| !matches!(item, SelectItem::UnnamedExpr(_)));
    let Some(OrderBy {
        kind: OrderByKind::Expressions(keys),
        ..
    }) = &query.order_by
    else {
        return;
    };
    let names: Vec<Option<String>> = items.iter().map(|item| ItemName::of(item).name()).collect();
    let unique = |name: String| {
        let mut matching = names
            .iter()
            .enumerate()
            .filter(|(_, named)| named.as_deref() == Some(name.as_str()));
        let (position, _) = matching.next()?;
        matching.next().is_none().then_some(position)
    };
    let resolved: Vec<Option<ast::Expr>> = keys
        .iter()
        .map(|key| {
            let (position, by_position) = match &key.expr {
                ast::Expr::Value(value) => match &value.value {
                    ast::Value::Number(number, _) => {
                        (number.parse::<usize>().ok()?.checked_sub(1)?, true)
                    }
                    _ => return None,
                },
                ast::Expr::Identifier(ident) => (unique(identifier(ident))?, false),
                _ => return None,
            };
            match items.get(position)? {
                SelectItem::UnnamedExpr(expr) if !aliased && means_the_same_in_order_by(expr) => {
                    Some(expr.clone())
                }
                // A position on an alias no other column shares: the alias.
                SelectItem::ExprWithAlias { alias, .. }
                    if by_position && unique(identifier(alias)).is_some() =>
                {
                    Some(ast::Expr::Identifier(alias.clone()))
                }
                _ => None,
            }
        })
        .collect();
    let Some(OrderBy {
        kind: OrderByKind::Expressions(keys),
        ..
    }) = &mut query.order_by
    else {
        return;
    };
    for (key, resolved) in keys.iter_mut().zip(resolved) {
        if let Some(expr) = resolved {
            key.expr = expr;
        }
    }
}

/// Whether a SELECT item's expression, written in `ORDER BY`, sorts by that item: a computed
/// expression (not a bare column, which DataFusion resolves itself) that reads a column or
/// calls a function (a constant would read as a position) and holds no window function.
fn means_the_same_in_order_by(expr: &ast::Expr) -> bool {
    use ast::Expr as E;
    if matches!(expr, E::Identifier(_) | E::CompoundIdentifier(_)) {
        return false;
    }
    let mut computes = false;
    let windowless = ast::visit_expressions(expr, |inner| {
        match inner {
            E::Function(function) if function.over.is_some() => return ControlFlow::Break(()),
            E::Identifier(_) | E::CompoundIdentifier(_) | E::Function(_) => computes = true,
            _ => {}
        }
        ControlFlow::Continue(())
    })
    .is_continue();
    computes && windowless
}

/// [`distinguish_repeated_items`] over one SELECT list.
fn distinguish_in_select_list(projection: &mut [SelectItem]) {
    let mut seen = HashSet::new();
    for (position, item) in projection.iter_mut().enumerate() {
        let key = match &*item {
            SelectItem::UnnamedExpr(expr) => planned_name_key(expr),
            SelectItem::ExprWithAlias { alias, .. } => identifier(alias),
            _ => continue,
        };
        if seen.insert(key) {
            continue;
        }
        let name = ItemName::of(item).name().unwrap_or_default();
        let alias = Ident::with_quote('"', format!("{name}#{}", position + 1));
        let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item else {
            continue;
        };
        let expr = std::mem::replace(expr, ast::Expr::value(ast::Value::Null));
        *item = SelectItem::ExprWithAlias { expr, alias };
    }
}

/// What DataFusion's name for an unaliased item depends on, folded so that items it names
/// alike compare equal: a cast, at any depth, is named as what it casts (`abs(1::int2)` and
/// `abs(1::int4)` are both `abs(Int64(1))`), and so is a typed literal (`DATE '2025-01-01'`
/// is named as `'2025-01-01'::date`), a subquery as any other (`EXISTS (SELECT 1)` and
/// `EXISTS (SELECT 2)` are both `EXISTS (<subquery>)`), a column by its name (whatever
/// qualifies it), the rest by its text.
fn planned_name_key(expr: &ast::Expr) -> String {
    use ast::Expr as E;
    let mut folded = expr.clone();
    let _ = ast::visit_expressions_mut(&mut folded, |expr| {
        while let E::Cast { expr: inner, .. } | E::Nested(inner) = expr {
            *expr = std::mem::replace(inner.as_mut(), E::value(ast::Value::Null));
        }
        if let E::TypedString(typed) = expr {
            *expr = E::Value(typed.value.clone());
        }
        // DataFusion names every subquery `(<subquery>)`, whatever it holds.
        match expr {
            E::Subquery(_) => *expr = E::Identifier(Ident::new("(<subquery>)")),
            E::Exists { negated, .. } => {
                let name = format!("{}EXISTS (<subquery>)", if *negated { "NOT " } else { "" });
                *expr = E::Identifier(Ident::new(name));
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    match &folded {
        E::Identifier(ident) => ident.value.to_ascii_lowercase(),
        E::CompoundIdentifier(idents) => idents
            .last()
            .map(|ident| ident.value.to_ascii_lowercase())
            .unwrap_or_default(),
        other => other.to_string().to_ascii_lowercase(),
    }
}

/// `plan` with `renames[i]` recorded on output column `i`: on the output projection when the
/// plan has one below any `ORDER BY` and `LIMIT`, else on a projection of its columns added
/// on top.
fn with_names(plan: LogicalPlan, renames: &[Option<String>]) -> Result<LogicalPlan> {
    let renamed = |exprs: &[Expr]| -> Vec<Expr> {
        exprs
            .iter()
            .zip(renames)
            .map(|(expr, rename)| match rename {
                Some(name) => named(expr.clone(), name),
                None => expr.clone(),
            })
            .collect()
    };
    if let Some(named) = rewrite_output_projection(&plan, &|exprs| Some(renamed(exprs)))? {
        return Ok(named);
    }
    let columns: Vec<Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    Ok(LogicalPlan::Projection(Projection::try_new(
        renamed(&columns),
        Arc::new(plan),
    )?))
}

/// `expr`, an output expression, keeping its DataFusion name and carrying `name` as its
/// PostgreSQL name.
fn named(expr: Expr, name: &str) -> Expr {
    let metadata = FieldMetadata::new(BTreeMap::from([(
        POSTGRES_NAME.to_owned(),
        name.to_owned(),
    )]));
    match expr {
        Expr::Alias(alias) => {
            let merged = match alias.metadata.clone() {
                Some(mut kept) => {
                    kept.extend(metadata);
                    kept
                }
                None => metadata,
            };
            Expr::Alias(alias.with_metadata(Some(merged)))
        }
        Expr::Column(column) => {
            let name_as_planned = column.name.clone();
            let relation = column.relation.clone();
            Expr::Alias(
                Alias::new(Expr::Column(column), relation, name_as_planned)
                    .with_metadata(Some(metadata)),
            )
        }
        other => {
            let name_as_planned = other.schema_name().to_string();
            other.alias_with_metadata(name_as_planned, Some(metadata))
        }
    }
}

/// The SELECT list whose items name a query's output: a set operation's first (leftmost)
/// query's. `None` for `VALUES` (DataFusion already names its columns `column1`, ... as
/// PostgreSQL does) and other bodies.
fn select_list(query: &Query) -> Option<&[SelectItem]> {
    let mut body = query.body.as_ref();
    loop {
        match body {
            SetExpr::Select(select) => return Some(&select.projection),
            SetExpr::Query(inner) => body = inner.body.as_ref(),
            SetExpr::SetOperation { left, .. } => body = left.as_ref(),
            _ => return None,
        }
    }
}

/// PostgreSQL's name for each of `columns` output columns planned from `items`, where the
/// SELECT list says it (`None` for columns a wildcard expands to, and for every column when
/// the list cannot account for `columns`).
fn output_names(items: &[ItemName], columns: usize) -> Vec<Option<String>> {
    let is_wildcard = |item: &&ItemName| matches!(item, ItemName::Expanded);
    let wildcards = items.iter().filter(is_wildcard).count();
    let mut names = vec![None; columns];
    if wildcards == 0 && items.len() != columns || items.len() - wildcards > columns {
        return names;
    }
    // Items before the first wildcard name the first columns; items after the last name the
    // last columns (what a wildcard expands to is known only to the plan).
    let leading = items.iter().take_while(|item| !is_wildcard(item));
    for (slot, item) in names.iter_mut().zip(leading) {
        *slot = item.name();
    }
    if wildcards > 0 {
        let trailing = items.iter().rev().take_while(|item| !is_wildcard(item));
        for (slot, item) in names.iter_mut().rev().zip(trailing) {
            *slot = item.name();
        }
    }
    names
}

impl ItemName {
    /// What `item` tells of its columns' names.
    fn of(item: &SelectItem) -> Self {
        match item {
            SelectItem::UnnamedExpr(expr) => Self::Named(
                expr_name(expr)
                    .map(|name| name.text)
                    .unwrap_or_else(|| UNNAMED.to_owned()),
            ),
            SelectItem::ExprWithAlias { alias, .. } => Self::Named(identifier(alias)),
            SelectItem::ExprWithAliases { .. } => Self::AsPlanned,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => Self::Expanded,
        }
    }

    /// The one column's name, when the item names it.
    fn name(&self) -> Option<String> {
        match self {
            Self::Named(name) => Some(name.clone()),
            Self::Expanded | Self::AsPlanned => None,
        }
    }
}

/// A name PostgreSQL figures for an expression, and whether it is strong: a weak one (a
/// cast's type, `case`) gives way to a strong one found inside a cast or a
/// `CASE`'s `ELSE`.
struct FiguredName {
    text: String,
    strong: bool,
}

impl FiguredName {
    fn strong(text: impl Into<String>) -> Option<Self> {
        Some(Self {
            text: text.into(),
            strong: true,
        })
    }

    fn weak(text: impl Into<String>) -> Option<Self> {
        Some(Self {
            text: text.into(),
            strong: false,
        })
    }
}

/// PostgreSQL's `FigureColnameInternal` over sqlparser's tree (`None`: `?column?`).
fn expr_name(expr: &ast::Expr) -> Option<FiguredName> {
    use ast::Expr as E;
    match expr {
        E::Identifier(ident) => FiguredName::strong(identifier(ident)),
        E::CompoundIdentifier(idents) => FiguredName::strong(identifier(idents.last()?)),
        E::CompoundFieldAccess { root, access_chain } => match access_chain.last() {
            Some(AccessExpr::Dot(E::Identifier(field))) => FiguredName::strong(identifier(field)),
            Some(AccessExpr::Subscript(_)) => expr_name(root),
            _ => None,
        },
        E::Nested(inner) | E::Collate { expr: inner, .. } => expr_name(inner),
        E::Function(function) => FiguredName::strong(object_name(&function.name)?),
        E::Cast {
            expr, data_type, ..
        } => match expr_name(expr) {
            Some(name) if name.strong => Some(name),
            _ => FiguredName::weak(type_name(data_type)),
        },
        E::TypedString(typed) => FiguredName::weak(type_name(&typed.data_type)),
        E::Interval(_) => FiguredName::weak("interval"),
        E::Case { else_result, .. } => match else_result.as_deref().and_then(expr_name) {
            Some(name) if name.strong => Some(name),
            _ => FiguredName::weak("case"),
        },
        E::Array(_) => FiguredName::strong("array"),
        E::Tuple(_) => FiguredName::strong("row"),
        E::Exists { negated: false, .. } => FiguredName::strong("exists"),
        E::Subquery(query) => {
            let first = select_list(query)?.first()?;
            FiguredName::strong(ItemName::of(first).name()?)
        }
        E::Extract { .. } => FiguredName::strong("extract"),
        E::Position { .. } => FiguredName::strong("position"),
        E::Substring { .. } => FiguredName::strong("substring"),
        E::Overlay { .. } => FiguredName::strong("overlay"),
        E::Ceil { .. } => FiguredName::strong("ceil"),
        E::Floor { .. } => FiguredName::strong("floor"),
        E::AtTimeZone { .. } => FiguredName::strong("timezone"),
        E::Trim { trim_where, .. } => FiguredName::strong(match trim_where {
            Some(TrimWhereField::Leading) => "ltrim",
            Some(TrimWhereField::Trailing) => "rtrim",
            Some(TrimWhereField::Both) | None => "btrim",
        }),
        _ => None,
    }
}

/// An identifier as PostgreSQL folds it: unquoted ones in lower case.
fn identifier(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

/// The last part of a (possibly schema-qualified) name, folded.
fn object_name(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(identifier(ident)),
        ObjectNamePart::Function(_) => None,
    }
}

/// A type's name as PostgreSQL spells it internally (`integer` is `int4`), which names a
/// cast's column; an array type is named by its element type.
fn type_name(data_type: &DataType) -> String {
    use DataType as T;
    let name = match data_type {
        T::SmallInt(_) | T::Int2(_) => "int2",
        T::Int(_) | T::Integer(_) | T::Int4(_) => "int4",
        T::BigInt(_) | T::Int8(_) => "int8",
        T::Real | T::Float4 => "float4",
        T::Float(ExactNumberInfo::Precision(bits)) if *bits <= 24 => "float4",
        T::Float(_) | T::Double(_) | T::DoublePrecision | T::Float8 => "float8",
        T::Numeric(_) | T::Decimal(_) | T::Dec(_) => "numeric",
        T::Varchar(_) | T::CharacterVarying(_) | T::CharVarying(_) => "varchar",
        T::Char(_) | T::Character(_) => "bpchar",
        T::Text => "text",
        T::Bool | T::Boolean => "bool",
        T::Date => "date",
        T::Time(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timetz",
        T::Time(..) => "time",
        T::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timestamptz",
        T::Timestamp(..) => "timestamp",
        T::Interval { .. } => "interval",
        T::Bytea => "bytea",
        T::Uuid => "uuid",
        T::JSON => "json",
        T::JSONB => "jsonb",
        T::Regclass => "regclass",
        T::Array(
            ArrayElemTypeDef::SquareBracket(element, _)
            | ArrayElemTypeDef::AngleBracket(element)
            | ArrayElemTypeDef::Parenthesis(element),
        ) => return type_name(element),
        T::Custom(name, _) => return object_name(name).unwrap_or_else(|| UNNAMED.to_owned()),
        other => return other.to_string().to_ascii_lowercase(),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use datafusion::sql::parser::Statement as DfStatement;

    use super::{
        OutputNames, distinguish_repeated_items, name_nested_columns, postgres_column_name,
        resolve_order_by_keys,
    };

    /// The names a client is told for `sql`'s columns.
    async fn names(sql: &str) -> Vec<String> {
        let written = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        let mut statement = written.clone();
        name_nested_columns(&mut statement);
        resolve_order_by_keys(&mut statement);
        distinguish_repeated_items(&mut statement);
        let context = SessionContext::new();
        context
            .sql("CREATE TABLE t (a INT, b TEXT) AS VALUES (1, 'x')")
            .await
            .unwrap();
        let plan = context
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(statement)))
            .await
            .unwrap();
        let named = OutputNames::of(&written).apply(plan).unwrap();
        named
            .schema()
            .fields()
            .iter()
            .map(|field| postgres_column_name(field).to_owned())
            .collect()
    }

    #[tokio::test]
    async fn expressions_are_named_as_postgresql_names_them() {
        assert_eq!(
            names("SELECT 1, 1 + 1, 'x', -a, a IS NULL FROM t").await,
            ["?column?"; 5]
        );
        assert_eq!(
            names("SELECT count(*), SUM(a), min(b) FROM t").await,
            ["count", "sum", "min"]
        );
        assert_eq!(
            names("SELECT upper(b), now(), CURRENT_DATE FROM t").await,
            ["upper", "now", "current_date"]
        );
        assert_eq!(
            names("SELECT a::bigint, 1::int, CAST('1' AS double precision), '{1}'::int[] FROM t")
                .await,
            ["a", "int4", "float8", "int4"]
        );
        assert_eq!(
            names("SELECT CASE WHEN a > 0 THEN 1 END, CASE WHEN a > 0 THEN 1 ELSE a END FROM t")
                .await,
            ["case", "a"]
        );
        assert_eq!(
            names("SELECT (SELECT max(a) FROM t), EXISTS (SELECT 1), coalesce(a, 0), t.b FROM t")
                .await,
            ["max", "exists", "coalesce", "b"]
        );
        assert_eq!(
            names("SELECT trim(b), extract(year FROM DATE '2025-01-01'), DATE '2025-01-01' FROM t")
                .await,
            ["btrim", "extract", "date"]
        );
    }

    #[tokio::test]
    async fn nested_queries_name_their_columns_as_postgresql_does() {
        assert_eq!(
            names("SELECT * FROM (SELECT count(*), upper(b), a::text FROM t GROUP BY a, b) s")
                .await,
            ["count", "upper", "a"]
        );
        assert_eq!(
            names("SELECT s.count + 1 AS n, max FROM (SELECT count(*), max(b) FROM t) s").await,
            ["n", "max"]
        );
        assert_eq!(
            names("WITH m AS (SELECT min(a) FROM t) SELECT x.min FROM (SELECT * FROM m) x").await,
            ["min"]
        );
        // Unnamed items, and names a SELECT list would repeat, keep DataFusion's.
        assert_eq!(
            names("SELECT * FROM (SELECT a + 1, max(a), max(b) FROM t GROUP BY a) s").await,
            ["t.a + Int64(1)", "max(t.a)", "max(t.b)"]
        );
    }

    /// `ORDER BY` a name PostgreSQL gives an output column, or a position, sorts by that
    /// column, also when it is computed from a grouped column.
    #[tokio::test]
    async fn order_by_takes_output_names_and_positions() {
        let context = SessionContext::new();
        let sql = "SELECT upper(b), count(*) FROM (VALUES ('a'), ('b'), ('b'), ('c')) AS t(b) \
                   GROUP BY b ORDER BY count DESC, 1 DESC";
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        resolve_order_by_keys(&mut statement);
        let rows = context
            .execute_logical_plan(
                context
                    .state()
                    .statement_to_plan(DfStatement::Statement(Box::new(statement)))
                    .await
                    .unwrap(),
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let shown = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
            .unwrap()
            .to_string();
        let sorted: Vec<String> = shown
            .lines()
            .skip(3)
            .filter(|line| line.starts_with("| "))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(sorted, ["| B | 2 |", "| C | 1 |", "| A | 1 |"], "{shown}");
    }

    /// Keys whose SELECT item would mean something else in `ORDER BY` are left as written.
    #[test]
    fn order_by_keys_that_would_change_meaning_are_kept() {
        let resolved = |sql: &str| {
            let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .unwrap()
                .remove(0);
            resolve_order_by_keys(&mut statement);
            statement.to_string()
        };
        for kept in [
            "SELECT b, 1, c FROM t ORDER BY 2, 3",
            "SELECT x AS y, y + 0 FROM v ORDER BY 2",
            "SELECT a AS x, b AS x FROM t ORDER BY 2",
            "SELECT DISTINCT upper(b) FROM t ORDER BY 1",
            "SELECT a, sum(a) OVER w FROM t WINDOW w AS (ORDER BY a) ORDER BY 2",
            "SELECT a + 1 FROM t UNION SELECT 2 ORDER BY 1",
            "SELECT upper(b), lower(b) AS upper FROM t ORDER BY upper",
        ] {
            assert_eq!(resolved(kept), kept);
        }
        assert_eq!(
            resolved("SELECT upper(b) AS u, b AS x, a AS x FROM t GROUP BY b ORDER BY 1, 2"),
            "SELECT upper(b) AS u, b AS x, a AS x FROM t GROUP BY b ORDER BY u, 2"
        );
        assert_eq!(
            resolved("SELECT upper(b), count(*) FROM t GROUP BY b ORDER BY count, 1 DESC"),
            "SELECT upper(b), count(*) FROM t GROUP BY b ORDER BY count(*), upper(b) DESC"
        );
    }

    #[tokio::test]
    async fn aliases_wildcards_and_orderings_keep_their_names() {
        assert_eq!(
            names(
                "SELECT count(*) AS Total, \"Mixed\".a FROM t AS \"Mixed\" \
                 GROUP BY \"Mixed\".a ORDER BY count(*)"
            )
            .await,
            ["total", "a"]
        );
        assert_eq!(
            names("SELECT *, a + 1 FROM t").await,
            ["a", "b", "?column?"]
        );
        assert_eq!(
            names("SELECT 1, 2 UNION SELECT 3, 4 ORDER BY 1 LIMIT 1").await,
            ["?column?", "?column?"]
        );
        assert_eq!(names("SELECT DISTINCT upper(b) FROM t").await, ["upper"]);
        assert_eq!(names("VALUES (1, 2)").await, ["column1", "column2"]);
        assert_eq!(
            names("SELECT 1, 1, count(*), COUNT(*), a, t.a, a::text, b AS x, a AS x FROM t GROUP BY a, b")
                .await,
            ["?column?", "?column?", "count", "count", "a", "a", "a", "x", "x"]
        );
        assert_eq!(
            names("SELECT a, a FROM t UNION ALL SELECT 1, 1 ORDER BY 1").await,
            ["a", "a"]
        );
        // DataFusion names a cast as what it casts, inside a call too.
        assert_eq!(
            names("SELECT abs(a::int2), abs(a::int4), abs((a)::int8) FROM t").await,
            ["abs", "abs", "abs"]
        );
        assert_eq!(
            names("SELECT '2025-01-01'::date, DATE '2025-01-01'").await,
            ["date", "date"]
        );
        // DataFusion names every subquery alike.
        assert_eq!(
            names("SELECT EXISTS (SELECT 1), EXISTS (SELECT a FROM t), NOT EXISTS (SELECT 2)")
                .await,
            ["exists", "exists", "?column?"]
        );
    }
}
