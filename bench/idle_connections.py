"""Opens N connections, runs one query on each, and holds them until stdin closes."""
import sys

import psycopg

connections = [psycopg.connect(sys.argv[1], autocommit=True) for _ in range(int(sys.argv[2]))]
for connection in connections:
    assert connection.execute("SELECT 1").fetchone() == (1,)
print(len(connections), flush=True)
sys.stdin.read()
