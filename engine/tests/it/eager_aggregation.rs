//! Grids sum their cells before joining them to dimensions (engine/src/eager_aggregation.rs),
//! answer as the plain plan does, and still narrow the cube's scan to the members joined.

use crate::support::{CELLS_ONLY, demo_engine, shown, shown_after};

/// A grid over two dimensions with a subtree filter, every kind of aggregate the rewrite
/// handles, and subtotals; `{join}` is the kind of join to the dimensions.
const GRID: &str = "SELECT subpath(e.path, 0, 2) AS region, subpath(a.path, 0, 2) AS account_group, \
     c.time, sum(c.amount) AS amount, count(*) AS cells, count(c.amount) AS valued, \
     min(c.amount) AS low, max(c.amount) AS high \
     FROM cube.finance c {join} dim.entity e ON e.code = c.entity \
     {join} dim.account a ON a.code = c.account \
     WHERE e.path <@ 'Total.EMEA' AND c.version = 'Budget' AND c.time BETWEEN '2025_01' AND '2025_03' \
     GROUP BY ROLLUP (subpath(e.path, 0, 2), subpath(a.path, 0, 2), c.time) \
     ORDER BY 1 NULLS FIRST, 2 NULLS FIRST, 3 NULLS FIRST";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grids_sum_cells_before_the_join_with_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(dir.path(), 200_000).await;
    let inner = GRID.replace("{join}", "JOIN");
    // A left join (every cell has its members) is left as it is: the plain plan's answer.
    let left = GRID.replace("{join}", "LEFT JOIN");

    let plan = shown(&engine, &format!("EXPLAIN {inner}")).await;
    let logical = plan.split("physical_plan").next().unwrap();
    let first_join = logical.find("Inner Join").expect("a join");
    let summed = logical[first_join..]
        .find("Aggregate: groupBy=[[c.account, c.entity, c.time]]")
        .map(|at| at + first_join);
    assert!(
        summed.is_some(),
        "the cells are summed by the members they join, below the joins:\n{plan}"
    );
    assert!(
        !shown(&engine, &format!("EXPLAIN {left}"))
            .await
            .contains("Aggregate: groupBy=[[c.account, c.entity, c.time]]"),
        "a left join is not rewritten"
    );
    let counted = shown_after(
        &engine,
        &[CELLS_ONLY],
        "EXPLAIN SELECT e.path, count(*) FROM cube.finance c JOIN dim.entity e ON e.code = c.entity GROUP BY e.path",
    )
    .await;
    assert!(
        counted.contains("Aggregate: groupBy=[[c.entity]], aggr=[[count(Int64(1))"),
        "a count of rows is summed before the join too:\n{counted}"
    );
    let analyzed = shown(&engine, &format!("EXPLAIN ANALYZE {inner}")).await;
    assert!(
        analyzed.contains("predicate=entity@2 IN (SET)"),
        "the cube's scan is still narrowed to the joined entities:\n{analyzed}"
    );

    let answer = shown(&engine, &inner).await;
    assert_eq!(answer, shown(&engine, &left).await);
    // The total, the region's subtotal, two account groups with their three months each.
    assert_eq!(answer.lines().count(), 4 + 10, "{answer}");
    assert!(
        answer.contains("| Total.EMEA | PL.GP         | 2025_01 | 2384770.20  | 520   | 520 "),
        "{answer}"
    );
}
