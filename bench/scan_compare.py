"""Times the same queries on Quantatom (over the wire, psycopg) and on DuckDB reading the
cube's Parquet files; prints Markdown table rows. Used by bench/scan.

usage: scan_compare.py PORT PARQUET_GLOB
"""
import statistics
import sys
import time

import duckdb
import psycopg

PORT, PARQUET = sys.argv[1], sys.argv[2]
REPEATS = 10

QUERIES = [
    ("subtree grid: Budget FY2025 by account, 5 EMEA entities",
     "SELECT account, sum(amount) AS amount FROM {cells} WHERE version = 'Budget' "
     "AND time BETWEEN '2025_01' AND '2025_12' AND entity IN ('DE', 'FR', 'NO', 'SE', 'UK') "
     "GROUP BY account ORDER BY account"),
    ("whole-cube aggregate: sum by version",
     "SELECT version, sum(amount) AS amount FROM {cells} GROUP BY version ORDER BY version"),
    ("point: one leaf cell",
     "SELECT amount FROM {cells} WHERE version = 'Budget' AND time = '2025_01' AND entity = 'DE' "
     "AND account = '4000' AND product = 'P0001' AND currency = 'EUR'"),
]


def timed(run):
    started = time.perf_counter()
    rows = run()
    return (time.perf_counter() - started) * 1000, rows


def measure(run):
    first, rows = timed(run)
    warm = [timed(run)[0] for _ in range(REPEATS)]
    return first, statistics.median(warm), rows


quantatom = psycopg.connect(f"host=127.0.0.1 port={PORT} user=bench dbname=quantatom", autocommit=True)
duck = duckdb.connect()
duck.execute(f"CREATE VIEW cells AS SELECT * FROM read_parquet('{PARQUET}')")

for name, sql in QUERIES:
    q_sql = sql.format(cells="cube.finance")
    d_sql = sql.format(cells="cells")
    q_first, q_warm, q_rows = measure(lambda: quantatom.execute(q_sql).fetchall())
    d_first, d_warm, d_rows = measure(lambda: duck.execute(d_sql).fetchall())
    same = [tuple(str(v) for v in r) for r in q_rows] == [tuple(str(v) for v in r) for r in d_rows]
    if not same:
        raise SystemExit(f"{name}: the answers differ\n{q_rows[:5]}\n{d_rows[:5]}")
    print(f"| {name} | {q_first:.1f} | {q_warm:.1f} | {d_first:.1f} | {d_warm:.1f} | {q_warm / d_warm:.2f} |")
