"""Fetches every row of a query with psycopg's binary protocol; prints the rows fetched."""
import sys

import psycopg

with psycopg.connect(sys.argv[1]) as connection:
    with connection.cursor(binary=True) as cursor:
        cursor.execute(sys.argv[2])
        rows = 0
        while batch := cursor.fetchmany(10_000):
            rows += len(batch)
print(rows)
