"""Times a fresh server's very first query: connects (not timed) and runs the point query of
scan_compare.py once, printing its milliseconds. Used by bench/scan, once per fresh process.

usage: first_point.py PORT
"""
import sys
import time

import psycopg

from scan_compare import POINT

connection = psycopg.connect(f"host=127.0.0.1 port={sys.argv[1]} user=bench dbname=quantatom",
                             autocommit=True)
started = time.perf_counter()
rows = connection.execute(POINT.format(cells="cube.finance")).fetchall()
elapsed = (time.perf_counter() - started) * 1000
if len(rows) != 1:
    raise SystemExit(f"the point query gave {len(rows)} rows")
print(f"{elapsed:.1f}")
