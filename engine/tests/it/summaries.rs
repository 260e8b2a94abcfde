//! Aggregates over a cube read its data files' summaries (engine/src/summary_aggregation.rs)
//! and answer as the cells do: on a freshly written cube, with pending updates, deletes and
//! inserts (granules merging reads as cells), and after compaction.

use quantatom_engine::Engine;

use crate::support::{demo_engine, run, shown, shown_after};

/// Aggregates the rewrite applies to (every kind, grouped and not, through a join, over no
/// rows) and two it does not (by a measure; an average).
const QUERIES: &[&str] = &[
    "SELECT version, sum(amount), count(*), count(amount), min(amount), max(amount) \
     FROM cube.finance GROUP BY version ORDER BY version",
    "SELECT entity, sum(amount) AS amount FROM cube.finance WHERE version = 'Budget' \
     AND time BETWEEN '2025_01' AND '2025_03' GROUP BY entity ORDER BY entity",
    "SELECT sum(amount), count(*), max(amount) FROM cube.finance",
    "SELECT sum(amount), count(*), count(amount), min(amount) FROM cube.finance WHERE version = 'Nothing'",
    "SELECT substr(f.time, 1, 4) AS year, sum(f.amount) FROM cube.finance f \
     WHERE f.entity IN ('DE', 'FR') GROUP BY 1 ORDER BY 1",
    "SELECT e.path, sum(c.amount), count(*) FROM cube.finance c JOIN dim.entity e ON e.code = c.entity \
     WHERE e.path <@ 'Total.EMEA' AND c.version = 'Budget' GROUP BY e.path ORDER BY 1",
    "SELECT time, count(*) FROM cube.finance WHERE version = 'Actual' GROUP BY time \
     HAVING count(*) > 400 ORDER BY time",
    "SELECT version, sum(amount) FROM cube.finance WHERE amount > 1000 GROUP BY version ORDER BY 1",
    "SELECT version, avg(amount) FROM cube.finance GROUP BY version ORDER BY 1",
    // A join through a renamed dimension: the scan is narrowed by the column's own name, or
    // not at all (it once filtered a cube column of the new name, or failed to find one).
    "SELECT e.path, sum(c.amount) AS amount FROM (SELECT entity AS region, version, amount      FROM cube.finance) c JOIN dim.entity e ON e.code = c.region WHERE c.version = 'Budget'      GROUP BY e.path ORDER BY 1",
    "SELECT e.path, sum(c.amount) AS amount FROM cube.finance c JOIN dim.entity e      ON e.code = c.entity WHERE c.version = 'Budget' GROUP BY e.path ORDER BY 1",
];

/// `sql`'s rows as a table, in a session without the hot-tile cache (so that every query is
/// planned and run) reading summaries or not.
async fn shown_in(engine: &Engine, summaries: bool, sql: &str) -> String {
    let summaries = format!("SET quantatom.summaries = {summaries}");
    let settings = ["SET quantatom.tile_cache = false", summaries.as_str()];
    let shown = shown_after(engine, &settings, sql).await;
    format!("{sql}\n{shown}")
}

/// Each of [`QUERIES`]' answers, with summaries read or not.
async fn answers(engine: &Engine, summaries: bool) -> Vec<String> {
    let mut answers = Vec::new();
    for query in QUERIES {
        answers.push(shown_in(engine, summaries, query).await);
    }
    answers
}

/// Asserts every query answers alike from summaries and from cells; returns the answers.
async fn same_answers(engine: &Engine, when: &str) -> Vec<String> {
    let summarised = answers(engine, true).await;
    let cells = answers(engine, false).await;
    for (from_summaries, from_cells) in summarised.iter().zip(&cells) {
        assert_eq!(from_summaries, from_cells, "{when}");
    }
    summarised
}

/// Whether `query`'s plan reads summary files.
async fn reads_summaries(engine: &Engine, query: &str) -> bool {
    shown_in(engine, true, &format!("EXPLAIN {query}"))
        .await
        .contains("/summaries/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_read_summaries_and_answer_as_the_cells_do() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(dir.path(), 200_000).await;
    // The demo cube's one file has a summary by version, time and entity. (The query over no
    // version reads no file at all.)
    for index in [0, 1, 2, 4, 5, 6] {
        assert!(
            reads_summaries(&engine, QUERIES[index]).await,
            "{}",
            QUERIES[index]
        );
    }
    let by_product = "SELECT product, sum(amount) FROM cube.finance GROUP BY product";
    assert!(!reads_summaries(&engine, by_product).await);
    assert!(
        !reads_summaries(&engine, QUERIES[7]).await,
        "a filter on a measure"
    );
    assert!(!reads_summaries(&engine, QUERIES[8]).await, "avg");
    // The grid through the hierarchy sums the summary rows before its join, its scan narrowed
    // to the entities joined.
    let grid = shown_in(&engine, true, &format!("EXPLAIN ANALYZE {}", QUERIES[5])).await;
    assert!(grid.contains("/summaries/"), "{grid}");
    assert!(
        grid.contains("predicate=version@1 = Budget AND entity@3 IN (SET)"),
        "{grid}"
    );
    let before = same_answers(&engine, "as written").await;
    let rows = |answer: &str| answer.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(
        rows(&before[9]),
        rows(&before[10]),
        "renamed or not, one answer"
    );
    assert!(
        before[0].contains("| Actual   | 62787606.59 "),
        "{}",
        before[0]
    );
    assert!(
        before[3].contains("|                          | 0 "),
        "{}",
        before[3]
    );

    // Pending writes: an update of a block of cells, a delete, new cells.
    for write in [
        "UPDATE cube.finance SET amount = amount + 1 WHERE version = 'Budget' AND time = '2025_02' AND entity = 'DE'",
        "DELETE FROM cube.finance WHERE version = 'Actual' AND time = '2025_03' AND entity = 'FR' AND account = '4000'",
        "INSERT INTO cube.finance VALUES ('Budget', '2025_01', 'NO', '4000', 'P0001', 'EUR', 12.34), \
         ('Forecast', '2025_12', 'UK', '4000', 'P0002', 'USD', 5)",
    ] {
        run(&engine, write).await;
        let after = same_answers(&engine, write).await;
        // The granules no write touched are still read from the summary.
        assert!(reads_summaries(&engine, QUERIES[0]).await, "after {write}");
        assert_ne!(after, before, "{write} changed an answer");
    }
    let pending = same_answers(&engine, "pending writes").await;

    // Compacted: the new file has a summary of its own, and the answers stay.
    run(&engine, "SELECT * FROM mdf_compact('cube.finance')").await;
    let history = shown(&engine, "SELECT operation FROM mdf_history('cube.finance')").await;
    assert!(history.contains("compact"), "{history}");
    assert!(reads_summaries(&engine, QUERIES[1]).await);
    assert!(reads_summaries(&engine, QUERIES[5]).await);
    assert_eq!(same_answers(&engine, "compacted").await, pending);
}
