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

/// The tour's P&L grid (bench/grid.sql): quarters as `FILTER` clauses on the time dimension's
/// parent, account subtotals through a join on `a.path <@ p.path`; `{join}` is the kind of
/// join to the dimensions (the subtotals' level filter is in the last join's condition, so a
/// left join keeps the same rows: every account has an ancestor at level 3 or above).
const TOUR_GRID: &str = "SELECT p.code AS account, p.name, \
     sum(f.amount) FILTER (WHERE m.parent = '2025_Q1') AS q1, \
     sum(f.amount) FILTER (WHERE m.parent = '2025_Q2') AS q2, \
     count(f.amount) FILTER (WHERE m.parent = '2025_Q3') AS q3_cells, \
     max(f.amount) FILTER (WHERE m.parent = '2025_Q4' AND p.level = 2) AS q4_high \
     FROM cube.finance f \
     {join} dim.entity e ON e.code = f.entity \
     {join} dim.time m ON m.code = f.time \
     {join} dim.account a ON a.code = f.account \
     {join} dim.account p ON a.path <@ p.path AND p.level <= 3 \
     WHERE f.version = 'Budget' AND e.path <@ 'Total.EMEA' AND m.path <@ 'FY2025' \
     GROUP BY p.code, p.name, p.sort_order ORDER BY p.sort_order";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_aggregates_over_a_condition_join_sum_cells_first_with_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(dir.path(), 200_000).await;
    let inner = TOUR_GRID.replace("{join}", "JOIN");
    let left = TOUR_GRID.replace("{join}", "LEFT JOIN");

    let plan = shown_after(&engine, &[CELLS_ONLY], &format!("EXPLAIN {inner}")).await;
    let logical = plan.split("physical_plan").next().unwrap();
    assert!(
        logical.contains("sum(__quantatom_eager_0) FILTER (WHERE m.parent = Utf8(\"2025_Q1\"))"),
        "the filters stay above the join:\n{plan}"
    );
    let condition_join =
        (logical.find("Filter: ltree_risparent(a.path, p.path)")).expect("the <@ join");
    assert!(
        logical[condition_join..].contains("Aggregate: groupBy=[[f.account, f.entity, f.time]]"),
        "the cells are summed by the members they join, below the <@ join:\n{plan}"
    );

    let left_plan = shown_after(&engine, &[CELLS_ONLY], &format!("EXPLAIN {left}")).await;
    assert!(
        !left_plan.contains("__quantatom_eager"),
        "the left joins are not rewritten, so they give the plain plan's answer:\n{left_plan}"
    );

    let answer = shown(&engine, &inner).await;
    assert_eq!(answer, shown(&engine, &left).await);
    assert_eq!(answer, shown_after(&engine, &[CELLS_ONLY], &inner).await);
    assert_eq!(
        answer.lines().count(),
        4 + 8,
        "eight subtotal rows:\n{answer}"
    );

    // A filter on the measure summed would group the cells by their values: not rewritten.
    let on_values = inner.replace("m.parent = '2025_Q2'", "f.amount > 0");
    let plan = shown_after(&engine, &[CELLS_ONLY], &format!("EXPLAIN {on_values}")).await;
    assert!(!plan.contains("__quantatom_eager"), "{plan}");
    let on_values_left = left.replace("m.parent = '2025_Q2'", "f.amount > 0");
    assert_eq!(
        shown(&engine, &on_values).await,
        shown(&engine, &on_values_left).await
    );
}
