//! Queries over planning data that DataFusion plans from the client's own SQL.
//!
//! datafusion-postgres rewrites every statement for catalog compatibility before planning it.
//! One of those rewrites replaces a correlated scalar subquery in a SELECT list with NULL (and
//! adds `LIMIT 1` to an uncorrelated one), which keeps BI tools' catalog queries running but
//! would silently answer NULL to a planner's `SELECT (SELECT e.name FROM dim.entity e WHERE
//! e.code = f.entity) FROM cube.finance f`, or to `SELECT (SELECT t.x * 2) FROM (VALUES (2))
//! t(x)` (which DataFusion cannot plan: an error). A query with a subquery in a SELECT list
//! that reads anything but the system catalogs (tables outside them, or no table at all) is
//! therefore planned by DataFusion from the SQL as written: the right answer, or a clear
//! error, never a silent NULL.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, Query, SelectItem, SetExpr, Statement, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Schemas whose tables are the system catalogs.
const CATALOG_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// The statement `sql` holds, when it is one query that must bypass the compatibility rewrite.
pub(crate) fn needs_direct_planning(sql: &str) -> Option<Statement> {
    // Cheap refusals first: most statements have no nested SELECT at all.
    let lower = sql.to_ascii_lowercase();
    if lower.matches("select").count() < 2 {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    if statements.len() != 1 || !matches!(statements[0], Statement::Query(_)) {
        return None;
    }
    let statement = statements.remove(0);
    let mut finder = Finder::default();
    let _ = statement.visit(&mut finder);
    let catalogs_only = finder.catalog_table && !finder.user_table;
    (finder.projection_subquery && !catalogs_only).then_some(statement)
}

#[derive(Default)]
struct Finder {
    projection_subquery: bool,
    user_table: bool,
    catalog_table: bool,
}

fn is_catalog_table(name: &ObjectName) -> bool {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| part.to_string().trim_matches('"').to_ascii_lowercase())
        .collect();
    match parts.as_slice() {
        [.., schema, _] => CATALOG_SCHEMAS.contains(&schema.as_str()),
        [table] => table.starts_with("pg_"),
        [] => true,
    }
}

impl Visitor for Finder {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let catalog = is_catalog_table(relation);
        self.user_table |= !catalog;
        self.catalog_table |= catalog;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_ref() {
            self.projection_subquery |= select.projection.iter().any(|item| {
                matches!(
                    item,
                    SelectItem::UnnamedExpr(Expr::Subquery(_))
                        | SelectItem::ExprWithAlias {
                            expr: Expr::Subquery(_),
                            ..
                        }
                )
            });
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_user_queries_with_projection_subqueries_bypass_the_rewrite() {
        let lookup = "SELECT f.entity, (SELECT e.name FROM dim.entity e WHERE e.code = f.entity) AS name FROM cube.finance f";
        assert!(needs_direct_planning(lookup).is_some());
        let catalog = "SELECT c.relname, (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = c.relnamespace) FROM pg_catalog.pg_class c";
        assert!(
            needs_direct_planning(catalog).is_none(),
            "catalog queries keep the compatibility rewrite"
        );
        assert!(
            needs_direct_planning(
                "SELECT code FROM dim.entity WHERE code IN (SELECT entity FROM cube.finance)"
            )
            .is_none()
        );
        assert!(needs_direct_planning("SELECT 1").is_none());
        let values = "SELECT (SELECT t.x * 2) FROM (VALUES (2)) AS t(x)";
        assert!(
            needs_direct_planning(values).is_some(),
            "no table is no catalog"
        );
    }
}
