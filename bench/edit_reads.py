"""Times grid, whole-cube and point queries on the demo cube over the wire (tile cache off,
every run's text different, so every run plans and scans); prints one Markdown table row
labelled LABEL with the median of 10 runs of each, in ms. Used by bench/edits.

usage: edit_reads.py PORT LABEL
"""
import statistics
import sys
import time

import psycopg

PORT, LABEL = sys.argv[1], sys.argv[2]
QUERIES = [
    "SELECT account, sum(amount) FROM cube.finance WHERE version = 'Budget' "
    "AND time BETWEEN '2025_01' AND '2025_12' AND entity IN ('DE', 'FR', 'NO', 'SE', 'UK') "
    "GROUP BY account ORDER BY account",
    "SELECT version, sum(amount) FROM cube.finance GROUP BY version ORDER BY version",
    "SELECT amount FROM cube.finance WHERE version = 'Budget' AND time = '2025_01' "
    "AND entity = 'DE' AND account = '4000' AND product = 'P0001' AND currency = 'EUR'",
]

connection = psycopg.connect(f"host=127.0.0.1 port={PORT} user=bench dbname=quantatom", autocommit=True)
connection.execute("SET quantatom.tile_cache = false")
files = connection.execute(
    "SELECT sum(files_added) - sum(files_removed) FROM mdf_history('cube.finance')").fetchone()[0]
medians = []
for sql in QUERIES:
    times = []
    for run in range(11):
        started = time.perf_counter()
        connection.execute(f"/* run {run} {time.time()} */ {sql}").fetchall()
        times.append((time.perf_counter() - started) * 1000)
    medians.append(statistics.median(times[1:]))
print(f"| {LABEL} | {files} | " + " | ".join(f"{m:.1f}" for m in medians) + " |")
