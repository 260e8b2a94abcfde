"""Times the same queries on Quantatom (over the wire, psycopg) and on DuckDB reading the
cube's Parquet files; prints Markdown table rows. Used by bench/scan.

usage: scan_compare.py PORT PARQUET_GLOB
"""
import statistics
import sys
import time

import duckdb
import psycopg

REPEATS = 10
# One leaf cell: also the query bench/first_point.py gives a fresh server first.
POINT = ("SELECT amount FROM {cells} WHERE version = 'Budget' AND time = '2025_01' AND entity = 'DE' "
         "AND account = '4000' AND product = 'P0001' AND currency = 'EUR'")

# Each query in its Quantatom and its DuckDB form ({cells}: the cube; {subtree}: the entity
# dimension's members under Total.EMEA, by the dimension's path in each system's idiom).
QUERIES = [
    ("subtree grid: Budget FY2025 by account, 5 EMEA entities",
     "SELECT account, sum(amount) AS amount FROM {cells} WHERE version = 'Budget' "
     "AND time BETWEEN '2025_01' AND '2025_12' AND entity IN ('DE', 'FR', 'NO', 'SE', 'UK') "
     "GROUP BY account ORDER BY account"),
    ("subtree grid through the hierarchy: the same, joined to the entity dimension",
     "SELECT c.account, sum(c.amount) AS amount FROM {cells} c JOIN {entity} e ON c.entity = e.code "
     "WHERE {subtree} AND c.version = 'Budget' AND c.time BETWEEN '2025_01' AND '2025_12' "
     "GROUP BY c.account ORDER BY c.account"),
    ("whole-cube aggregate: sum by version",
     "SELECT version, sum(amount) AS amount FROM {cells} GROUP BY version ORDER BY version"),
    ("point: one leaf cell", POINT),
]


def timed(run, run_number):
    started = time.perf_counter()
    rows = run(run_number)
    return (time.perf_counter() - started) * 1000, rows


def measure(run):
    first, rows = timed(run, 0)
    warm = [timed(run, number)[0] for number in range(1, REPEATS + 1)]
    return first, statistics.median(warm), rows


def connect(port, *settings):
    connection = psycopg.connect(f"host=127.0.0.1 port={port} user=bench dbname=quantatom",
                                 autocommit=True)
    # Every Quantatom run plans and scans: the hot-tile cache is off, and each run's text
    # differs (a comment), so no answer a session keeps beside a reused plan is sent again.
    for setting in ("SET quantatom.tile_cache = false",) + settings:
        connection.execute(setting)
    return connection


def main(port, parquet):
    quantatom = connect(port)
    # The same server reading every cell, not the data files' summaries.
    cells_only = connect(port, "SET quantatom.summaries = false")
    duck = duckdb.connect()
    duck.execute(f"CREATE VIEW cells AS SELECT * FROM read_parquet('{parquet}')")
    # DuckDB gets the entity dimension as a table with its paths, as a team would load it.
    duck.execute("CREATE TABLE entity (code VARCHAR, path VARCHAR)")
    duck.executemany("INSERT INTO entity VALUES (?, ?)",
                     quantatom.execute("SELECT code, path FROM dim.entity").fetchall())
    forms = {
        "quantatom": dict(cells="cube.finance", entity="dim.entity", subtree="e.path <@ 'Total.EMEA'"),
        "duckdb": dict(cells="cells", entity="entity",
                       subtree="(e.path = 'Total.EMEA' OR starts_with(e.path, 'Total.EMEA.'))"),
    }

    for name, sql in QUERIES:
        q_sql = sql.format(**forms["quantatom"])
        d_sql = sql.format(**forms["duckdb"])
        q_first, q_warm, q_rows = measure(lambda n: quantatom.execute(f"/* run {n} */ {q_sql}").fetchall())
        _, c_warm, c_rows = measure(lambda n: cells_only.execute(f"/* run {n} */ {q_sql}").fetchall())
        d_first, d_warm, d_rows = measure(lambda n: duck.execute(d_sql).fetchall())
        shown = [[tuple(str(v) for v in r) for r in rows] for rows in (q_rows, c_rows, d_rows)]
        if shown[0] != shown[2] or shown[1] != shown[2]:
            raise SystemExit(f"{name}: the answers differ\n{q_rows[:5]}\n{c_rows[:5]}\n{d_rows[:5]}")
        print(f"| {name} | {q_first:.1f} | {q_warm:.1f} | {c_warm:.1f} | {d_first:.1f} | {d_warm:.1f} "
              f"| {q_warm / d_warm:.2f} | {c_warm / d_warm:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
