"""The planning benchmark: one generated planning model in Quantatom, in DuckDB (over the same
Parquet files) and in PostgreSQL 15 (tables with ltree paths), the same seven queries in each,
answers checked equal, then timed interleaved. Run by bench/planning-benchmark, which builds
the server and installs the Python packages; see there for the command line.

usage: planning_benchmark.py --binary QUANTATOM --work DIR --profile ci|s|m
                             (--check --postgres-url URL | --docs docs/benchmarks.md)
       planning_benchmark.py --duckdb-worker DATABASE    (internal: one DuckDB process)
"""
import argparse
import csv
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

COLD_RUNS = 5
WARM_RUNS = 10
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DIMENSIONS = ["version", "time", "entity", "account", "product", "currency"]
MEMBER_COLUMNS = ["code", "name", "parent", "path", "level", "is_leaf", "sort_order"]
# The PostgreSQL settings of the private server: memory a team would give a 24 GiB machine.
PG_SETTINGS = {"shared_buffers": "2GB", "work_mem": "64MB", "maintenance_work_mem": "512MB",
               "effective_cache_size": "8GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min"}


def text_rows(rows):
    """Rows as tuples of strings (NULL stays None), the form answers are compared in."""
    return [tuple(None if v is None else str(v) for v in row) for row in rows]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_reset(pid):
    """Resets the process's peak resident memory (VmHWM), as far as the kernel allows."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def peak_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def drop_page_cache():
    """Empties the OS page cache (root only); False when the kernel refuses."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3")
        return True
    except OSError:
        return False


def wait_until(ready, what, log=None, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return ready()
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    detail = Path(log).read_text()[-4000:] if log and Path(log).exists() else ""
    raise SystemExit(f"planning benchmark: {what} did not start\n{detail}")


# --- the three systems --------------------------------------------------------------------

class Quantatom:
    """Our server over a generated folder, restarted for every cold run."""

    name = "Quantatom"

    def __init__(self, binary, data, work):
        self.binary, self.data, self.log = binary, data, work / "quantatom.log"
        self.port = free_port()
        self.process = None

    def start(self):
        import psycopg
        self.process = subprocess.Popen(
            [self.binary, "serve", "--data-dir", str(self.data), "--demo-cells", "0",
             "--listen", f"127.0.0.1:{self.port}", "--admin-listen", "127.0.0.1:0"],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT,
            env={**os.environ, "QUANTATOM_LOG": "warn"})
        wait_until(lambda: psycopg.connect(self.url("bench")).close(), "quantatom", self.log)

    def stop(self):
        if self.process:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
            self.process = None

    def restart(self):
        self.stop()
        self.start()

    def url(self, user):
        return f"host=127.0.0.1 port={self.port} user={user} dbname=quantatom"

    def session(self, user="bench", tile_cache=False):
        import psycopg
        connection = psycopg.connect(self.url(user), autocommit=True)
        connection.execute(f"SET quantatom.tile_cache = {'true' if tile_cache else 'false'}")
        return Session(connection, self.process.pid)


class Postgres:
    """PostgreSQL 15: a private server (initdb in the work folder) or one given by URL."""

    name = "PostgreSQL"

    def __init__(self, work, url=None):
        self.work, self.given = work, url
        self.port = free_port()
        self.database = "planning"

    def _as_postgres(self, command):
        if os.getuid() == 0:
            return subprocess.run(["su", "postgres", "-c", command], check=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        return subprocess.run(["sh", "-c", command], check=True, stdout=subprocess.DEVNULL)

    def start(self):
        import psycopg
        if self.given is None:
            folder = self.work / "pg"
            folder.mkdir()
            if os.getuid() == 0:
                shutil.chown(self.work, "postgres")
                shutil.chown(folder, "postgres")
            self._as_postgres(f"{PG_BIN}/initdb -D {folder} -A trust -U postgres >/dev/null")
            settings = " ".join(f"-c {k}={v}" for k, v in PG_SETTINGS.items())
            self.ctl = (f"{PG_BIN}/pg_ctl -D {folder} -l {self.work}/pg.log -o "
                        f"'-p {self.port} -k {folder} -c listen_addresses=127.0.0.1 {settings}'")
            self._as_postgres(f"{self.ctl} start -w")
            admin = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        else:
            admin = self.given
            self.database = f"planning_bench_{os.getpid()}"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {self.database}")
            connection.execute(f"CREATE DATABASE {self.database}")
        self.admin = admin

    def url(self):
        if self.given is None:
            return f"host=127.0.0.1 port={self.port} user=postgres dbname={self.database}"
        return psycopg_url_with_database(self.given, self.database)

    def restart(self):
        self._as_postgres(f"{self.ctl} restart -m fast -w")

    def stop(self):
        import psycopg
        if self.given is None:
            self._as_postgres(f"{self.ctl} stop -m fast -w")
        else:
            with psycopg.connect(self.admin, autocommit=True) as connection:
                connection.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def session(self):
        import psycopg
        connection = psycopg.connect(self.url(), autocommit=True)
        pid = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        return Session(connection, pid)


def psycopg_url_with_database(url, database):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    return make_conninfo(**{**conninfo_to_dict(url), "dbname": database})


class Session:
    """One connection to Quantatom or PostgreSQL, and the process that answers it."""

    def __init__(self, connection, pid):
        self.connection, self.pid = connection, pid

    def run(self, sql):
        """Milliseconds from sending the query to the last row received, and the rows."""
        peak_reset(self.pid)
        started = time.perf_counter()
        cursor = self.connection.execute(sql)
        rows = cursor.fetchall() if cursor.description else []
        return (time.perf_counter() - started) * 1000, text_rows(rows), peak_mib(self.pid)

    def close(self):
        self.connection.close()


class DuckDB:
    """DuckDB over the cube's Parquet files, in a worker process per cold run: the way a team
    would embed it (the query runs in the process that wants the rows)."""

    name = "DuckDB"

    def __init__(self, work):
        self.database = work / "duckdb" / "planning.duckdb"

    def session(self):
        return DuckSession(self.database)


class DuckSession:
    def __init__(self, database):
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--duckdb-worker", str(database)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.process.pid

    def request(self, sql):
        self.process.stdin.write(json.dumps(sql) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        if "error" in answer:
            raise RuntimeError(f"DuckDB: {answer['error']}\n{sql}")
        return answer

    def run(self, sql):
        peak_reset(self.pid)
        answer = self.request(sql)
        return answer["ms"], [tuple(r) for r in answer["rows"]], peak_mib(self.pid)

    def close(self):
        self.process.stdin.close()
        self.process.wait(30)


def duckdb_worker(database):
    """Answers one JSON-encoded SQL text per line with its rows as strings and the
    milliseconds DuckDB took to run it and hand over the rows."""
    import duckdb
    connection = duckdb.connect(database, read_only=True)
    for line in sys.stdin:
        sql = json.loads(line)
        try:
            started = time.perf_counter()
            rows = connection.execute(sql).fetchall()
            ms = (time.perf_counter() - started) * 1000
            print(json.dumps({"ms": ms, "rows": text_rows(rows)}), flush=True)
        except duckdb.Error as error:
            print(json.dumps({"error": str(error)}), flush=True)


# --- loading ------------------------------------------------------------------------------

def dimension_names(quantatom):
    rows = quantatom.connection.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'dim' "
        "ORDER BY table_name").fetchall()
    return [r[0] for r in rows]


def members_of(quantatom, dimension):
    columns = ", ".join(MEMBER_COLUMNS)
    return quantatom.connection.execute(
        f"SELECT {columns} FROM dim.{dimension} ORDER BY sort_order").fetchall()


MEMBER_TABLE = ("CREATE TABLE {name} (code text PRIMARY KEY, name text, parent text, "
                "path {path} NOT NULL, level int, is_leaf boolean, sort_order int)")


def load_postgres(postgres, quantatom, model):
    """Members with ltree paths (GiST-indexed), cells by COPY straight from Quantatom, the
    coordinate as primary key, a grant-scope table, and an audit table kept by triggers."""
    import psycopg
    started = time.perf_counter()
    with psycopg.connect(postgres.url(), autocommit=True) as pg:
        pg.execute("CREATE EXTENSION ltree")
        for dimension in dimension_names(quantatom):
            pg.execute(MEMBER_TABLE.format(name=dimension, path="ltree"))
            with pg.cursor().copy(f"COPY {dimension} ({', '.join(MEMBER_COLUMNS)}) FROM STDIN") as copy:
                for member in members_of(quantatom, dimension):
                    copy.write_row(member)
            pg.execute(f"CREATE INDEX ON {dimension} USING gist (path)")
        pg.execute("CREATE TABLE cells (version text, time text, entity text, account text, "
                   "product text, currency text, amount numeric(18,2))")
        with quantatom.connection.cursor().copy(
                "COPY (SELECT * FROM cube.planning) TO STDOUT") as source, \
                pg.cursor().copy("COPY cells FROM STDIN") as target:
            for chunk in source:
                target.write(chunk)
        pg.execute("ALTER TABLE cells ADD PRIMARY KEY (version, time, entity, account, product, currency)")
        pg.execute("CREATE TABLE grant_scope (user_name text, path ltree)")
        for path in model["scope_entity_paths"]:
            pg.execute("INSERT INTO grant_scope VALUES ('planner', %s)", (path,))
        pg.execute(POSTGRES_AUDIT)
        pg.execute("VACUUM ANALYZE")
        size = pg.execute("SELECT pg_total_relation_size('cells')").fetchone()[0]
    return time.perf_counter() - started, size


# The audit table PostgreSQL keeps a cell's history in: statement-level triggers with
# transition tables, so a 100k-cell statement costs one INSERT ... SELECT, not 100k triggers.
POSTGRES_AUDIT = """
CREATE TABLE audit (seq bigserial PRIMARY KEY, changed_at timestamptz NOT NULL DEFAULT now(),
  user_name text NOT NULL DEFAULT current_user, version text, time text, entity text,
  account text, product text, currency text, old_amount numeric(18,2), new_amount numeric(18,2));
CREATE INDEX audit_cell ON audit (version, time, entity, account, product, currency, seq);
CREATE FUNCTION audit_inserted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO audit (version, time, entity, account, product, currency, new_amount)
  SELECT version, time, entity, account, product, currency, amount FROM new_cells;
  RETURN NULL; END $$;
CREATE FUNCTION audit_updated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO audit (version, time, entity, account, product, currency, old_amount, new_amount)
  SELECT n.version, n.time, n.entity, n.account, n.product, n.currency, o.amount, n.amount
  FROM new_cells n JOIN old_cells o USING (version, time, entity, account, product, currency);
  RETURN NULL; END $$;
CREATE FUNCTION audit_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO audit (version, time, entity, account, product, currency, old_amount)
  SELECT version, time, entity, account, product, currency, amount FROM old_cells;
  RETURN NULL; END $$;
CREATE TRIGGER cells_inserted AFTER INSERT ON cells REFERENCING NEW TABLE AS new_cells
  FOR EACH STATEMENT EXECUTE FUNCTION audit_inserted();
CREATE TRIGGER cells_updated AFTER UPDATE ON cells
  REFERENCING OLD TABLE AS old_cells NEW TABLE AS new_cells
  FOR EACH STATEMENT EXECUTE FUNCTION audit_updated();
CREATE TRIGGER cells_deleted AFTER DELETE ON cells REFERENCING OLD TABLE AS old_cells
  FOR EACH STATEMENT EXECUTE FUNCTION audit_deleted();
"""


def load_duckdb(duckdb_system, quantatom, model, parquet_files):
    """A DuckDB database holding the members and grant scopes as tables, and the cells as a
    view over the cube's own Parquet files (DuckDB reads them where Quantatom does)."""
    import duckdb
    started = time.perf_counter()
    folder = duckdb_system.database.parent
    folder.mkdir()
    connection = duckdb.connect(str(duckdb_system.database))
    for dimension in dimension_names(quantatom):
        members = folder / f"{dimension}.csv"
        with open(members, "w", newline="") as out:
            csv.writer(out).writerows(members_of(quantatom, dimension))
        connection.execute(MEMBER_TABLE.format(name=dimension, path="varchar NOT NULL"))
        connection.execute(f"INSERT INTO {dimension} SELECT * FROM read_csv(?, header = false, "
                           "columns = {'code': 'VARCHAR', 'name': 'VARCHAR', 'parent': 'VARCHAR', "
                           "'path': 'VARCHAR', 'level': 'INTEGER', 'is_leaf': 'BOOLEAN', "
                           "'sort_order': 'INTEGER'})", [str(members)])
        members.unlink()
    connection.execute("CREATE TABLE grant_scope (user_name varchar, path varchar)")
    for path in model["scope_entity_paths"]:
        connection.execute("INSERT INTO grant_scope VALUES ('planner', ?)", [path])
    files = ", ".join(f"'{f}'" for f in parquet_files)
    connection.execute(f"CREATE VIEW cells AS SELECT * FROM read_parquet([{files}])")
    connection.close()
    return time.perf_counter() - started


# --- the queries --------------------------------------------------------------------------

# Each system's idiom for "the path of member path `p`'s ancestor at level n" and "path `p`
# is at or under path `q`".
IDIOMS = {
    "Quantatom": dict(cells="cube.planning", dim="dim.",
                      level=lambda p, n: f"subpath({p}, 0, {n})",
                      under=lambda p, q: f"{p} <@ {q}"),
    "PostgreSQL": dict(cells="cells", dim="",
                       level=lambda p, n: f"subpath({p}, 0, {n})::text",
                       under=lambda p, q: f"{p} <@ {q}"),
    "DuckDB": dict(cells="cells", dim="",
                   level=lambda p, n: f"array_to_string(string_split({p}, '.')[1:{n}], '.')",
                   under=lambda p, q: f"({p} = {q} OR starts_with({p}, {q} || '.'))"),
}


def literal(text):
    return "'" + text.replace("'", "''") + "'"


def cell_filter(cell, alias="c"):
    return " AND ".join(f"{alias}.{d} = {literal(cell[d])}" for d in DIMENSIONS)


def grid(idiom, model, entity_scope):
    """Accounts to level 2 x the months of one year, Actual vs Budget, entities in scope."""
    year = model["year"]
    return (f"SELECT {idiom['level']('a.path', 2)} AS account_group, c.time, c.version, "
            f"sum(c.amount) AS amount FROM {idiom['cells']} c "
            f"JOIN {idiom['dim']}account a ON a.code = c.account "
            f"JOIN {idiom['dim']}entity e ON e.code = c.entity "
            f"WHERE {entity_scope} AND c.version IN ('Actual', 'Budget') "
            f"AND c.time BETWEEN '{year}_01' AND '{year}_12' "
            f"GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")


def queries(system, model):
    """The read queries, as (key, title, SQL, user) in `system`'s dialect."""
    idiom = IDIOMS[system]
    year, closed = model["year"], model["last_closed_month"]
    region = literal(model["grid_entity_path"])
    if system == "Quantatom":
        # The grant does the scoping: user planner sees the two regions only.
        scoped, scoped_user = "true", "planner"
    else:
        scoped = (f"EXISTS (SELECT 1 FROM grant_scope g WHERE g.user_name = 'planner' "
                  f"AND {idiom['under']('e.path', 'g.path')})")
        scoped_user = None
    if system == "Quantatom":
        switchover = (f"SELECT {idiom['level']('a.path', 2)} AS account_group, c.time, "
                      f"sum(c.amount) AS amount "
                      f"FROM version_switchover('{closed}', 'Actual', 'Forecast') s "
                      f"JOIN cube.planning c ON c.time = s.period AND c.version = s.version "
                      f"JOIN dim.account a ON a.code = c.account "
                      f"WHERE c.time BETWEEN '{year}_01' AND '{year}_12' "
                      f"GROUP BY 1, 2 ORDER BY 1, 2")
    else:
        switchover = (f"SELECT {idiom['level']('a.path', 2)} AS account_group, c.time, "
                      f"sum(c.amount) AS amount FROM cells c JOIN account a ON a.code = c.account "
                      f"WHERE ((c.version = 'Actual' AND c.time <= '{closed}') "
                      f"OR (c.version = 'Forecast' AND c.time > '{closed}')) "
                      f"AND c.time BETWEEN '{year}_01' AND '{year}_12' "
                      f"GROUP BY 1, 2 ORDER BY 1, 2")
    cell = model["history_cell"]
    return [
        ("Q1", "P&L grid: account groups x 12 months x Actual/Budget, one region",
         grid(idiom, model, idiom["under"]("e.path", region)), None),
        ("Q2", "YTD by account, Budget (window function)",
         f"SELECT account, time, amount, sum(amount) OVER (PARTITION BY account, "
         f"substr(time, 1, 4) ORDER BY time) AS ytd FROM (SELECT c.account, c.time, "
         f"sum(c.amount) AS amount FROM {idiom['cells']} c WHERE c.version = 'Budget' "
         f"GROUP BY 1, 2) m ORDER BY account, time", None),
        ("Q3", "subtotals: ROLLUP over entity levels 2 and 3, Actual",
         f"SELECT {idiom['level']('e.path', 2)} AS region, {idiom['level']('e.path', 3)} AS "
         f"subregion, sum(c.amount) AS amount FROM {idiom['cells']} c "
         f"JOIN {idiom['dim']}entity e ON e.code = c.entity WHERE c.version = 'Actual' "
         f"GROUP BY ROLLUP ({idiom['level']('e.path', 2)}, {idiom['level']('e.path', 3)}) "
         f"ORDER BY 1 NULLS FIRST, 2 NULLS FIRST", None),
        ("Q4", "the Q1 grid in a user's grant scope (two regions)",
         grid(idiom, model, scoped), scoped_user),
        ("Q7", "forecast with switchover: Actual to the closed month, then Forecast",
         switchover, None),
        ("point", "one leaf cell",
         f"SELECT c.amount FROM {idiom['cells']} c WHERE {cell_filter(cell)}", None),
    ]


def spread_sql(system, model, value):
    """Q5: `value` spread over the target's leaf cells in proportion to the basis version, in
    cents, largest remainders first (ties in member order), evenly when the basis is empty:
    mdf_spread in Quantatom, one INSERT ... ON CONFLICT in PostgreSQL."""
    target, basis = model["spread_target"], model["spread_basis_version"]
    if system == "Quantatom":
        return (f"SELECT cells FROM mdf_spread('cube.planning', {literal(json.dumps(target))}, "
                f"{value}, 'proportional', '{{\"version\":\"{basis}\"}}')")
    units = int(round(value * 100))
    leaves = " AND ".join(
        f"{d}.is_leaf AND {d}.path <@ (SELECT path FROM {d} WHERE code = {literal(target[d])})"
        for d in DIMENSIONS)
    coordinate = ", ".join(f"{d}.code AS {d}" for d in DIMENSIONS)
    order = ", ".join(f"{d}.sort_order" for d in DIMENSIONS)
    basis_join = " AND ".join(
        f"b.{d} = " + (literal(basis) if d == "version" else f"t.{d}") for d in DIMENSIONS)
    columns = ", ".join(DIMENSIONS)
    return f"""
WITH targets AS (
  SELECT {coordinate}, row_number() OVER (ORDER BY {order}) AS n
  FROM {', '.join(DIMENSIONS)} WHERE {leaves}),
weights AS (
  SELECT t.*, coalesce(b.amount * 100, 0) AS weight
  FROM targets t LEFT JOIN cells b ON {basis_join}),
total AS (SELECT sum(weight) AS weights, count(*) AS cells FROM weights),
shares AS (
  SELECT w.*, floor({units}::numeric * x.weight / x.sum) AS share,
         {units}::numeric * x.weight - floor({units}::numeric * x.weight / x.sum) * x.sum AS remainder
  FROM weights w, total,
  LATERAL (SELECT CASE WHEN total.weights = 0 THEN 1 ELSE w.weight * sign(total.weights) END,
                  CASE WHEN total.weights = 0 THEN total.cells ELSE abs(total.weights) END)
          AS x(weight, sum)),
ranked AS (
  SELECT s.*, row_number() OVER (ORDER BY remainder DESC, n) AS rank,
         {units} - sum(share) OVER () AS units_left
  FROM shares s)
INSERT INTO cells ({columns}, amount)
SELECT {columns}, ((share + CASE WHEN rank <= units_left THEN 1 ELSE 0 END) / 100)::numeric(18,2)
FROM ranked
ON CONFLICT (version, time, entity, account, product, currency)
DO UPDATE SET amount = EXCLUDED.amount"""


def target_cells_sql(system, model):
    """The spread target's leaf cells with their amounts, in coordinate order."""
    target = model["spread_target"]
    idiom = IDIOMS[system]
    joins = " ".join(f"JOIN {idiom['dim']}{d} m_{d} ON m_{d}.code = c.{d}" for d in DIMENSIONS)
    scope = " AND ".join(
        f"m_{d}.path <@ (SELECT path FROM {idiom['dim']}{d} WHERE code = {literal(target[d])})"
        for d in DIMENSIONS)
    return (f"SELECT c.* FROM {idiom['cells']} c {joins} WHERE {scope} "
            f"ORDER BY {', '.join('c.' + d for d in DIMENSIONS)}")


def history_sql(system, model):
    """Q6: one cell's changes, oldest first."""
    cell = model["history_cell"]
    table = "audit.planning" if system == "Quantatom" else "audit"
    return (f"SELECT old_amount, new_amount FROM {table} c WHERE {cell_filter(cell)} "
            f"ORDER BY seq")


# --- running ------------------------------------------------------------------------------

def check_reads(sessions, model):
    """Every system gives the same answer to every read query; returns the answers' sizes."""
    sizes = {}
    for index, (key, title, _, _) in enumerate(queries("Quantatom", model)):
        answers = {}
        for system, session_for in sessions.items():
            _, sql, user = queries(system, model)[index][1:]
            session = session_for(user)
            answers[system] = session.run(sql)[1]
        first = answers["Quantatom"]
        if not first:
            raise SystemExit(f"planning benchmark: {key} ({title}) has no rows")
        for system, rows in answers.items():
            if rows != first:
                diff = next((i for i, (a, b) in enumerate(zip(first, rows)) if a != b), None)
                raise SystemExit(
                    f"planning benchmark: {key} ({title}): {system} answers differently "
                    f"({len(rows)} rows vs {len(first)}; first difference at row {diff}: "
                    f"{rows[diff] if diff is not None else '-'} vs "
                    f"{first[diff] if diff is not None else '-'})")
        sizes[key] = len(first)
    return sizes


def check_spread(ours, pg, model, value):
    """Q5 writes the same cells with the same amounts in both systems, summing to `value`."""
    written = ours.run(spread_sql("Quantatom", model, value))[1]
    pg.run(spread_sql("PostgreSQL", model, value))
    if int(written[0][0]) != model["spread_cells"]:
        raise SystemExit(f"planning benchmark: Q5 wrote {written} cells, "
                         f"expected {model['spread_cells']}")
    mine = ours.run(target_cells_sql("Quantatom", model))[1]
    theirs = pg.run(target_cells_sql("PostgreSQL", model))[1]
    if mine != theirs:
        differing = [(a, b) for a, b in zip(mine, theirs) if a != b][:3]
        raise SystemExit(f"planning benchmark: Q5 spreads differently: {len(mine)} vs "
                         f"{len(theirs)} cells; {differing}")
    total = sum(float(row[-1]) for row in mine)
    if len(mine) != model["spread_cells"] or abs(total - value) > 0.005:
        raise SystemExit(f"planning benchmark: Q5 wrote {len(mine)} cells summing to {total}")


def check_history(ours, pg, model, spreads):
    """Q6: both systems recorded the history cell's changes alike, one per spread."""
    changed = lambda rows: [r for r in rows if r[0] != r[1]]
    mine = changed(ours.run(history_sql("Quantatom", model))[1])
    theirs = changed(pg.run(history_sql("PostgreSQL", model))[1])
    if mine != theirs or len(mine) != spreads:
        raise SystemExit(f"planning benchmark: Q6 histories differ or miss spreads "
                         f"({spreads} spreads): {mine[:3]} vs {theirs[:3]}")


def nearest_rank(values, percent):
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * percent // 100) - 1)]


class Timings:
    """Per query and system: cold and warm times, and the peak memory seen."""

    def __init__(self):
        self.times, self.peaks = {}, {}

    def add(self, key, system, kind, ms, peak):
        self.times.setdefault((key, system, kind), []).append(ms)
        self.peaks[(key, system)] = max(self.peaks.get((key, system), 0), peak)

    def median(self, key, system, kind):
        values = self.times.get((key, system, kind))
        return statistics.median(values) if values else None

    def p95(self, key, system, kind):
        values = self.times.get((key, system, kind))
        return nearest_rank(values, 95) if values else None


def rotated(items, turn):
    turn %= len(items)
    return items[turn:] + items[:turn]


def time_reads(quantatom, postgres, duck, model, timings, cold_page_cache):
    """Cold runs (a fresh process of each system, the OS page cache dropped when allowed),
    then warm runs in one session each, then Quantatom with the tile cache; each run of a
    query goes through the systems in turn, starting with a different one each time."""
    systems = ["Quantatom", "PostgreSQL", "DuckDB"]
    keys = [q[0] for q in queries("Quantatom", model)]
    for index, key in enumerate(keys):
        for run in range(COLD_RUNS):
            for system in rotated(systems, run):
                _, _, sql, user = queries(system, model)[index]
                if system == "Quantatom":
                    quantatom.restart()
                elif system == "PostgreSQL":
                    postgres.restart()
                if cold_page_cache:
                    drop_page_cache()
                session = (quantatom.session(user or "bench") if system == "Quantatom"
                           else postgres.session() if system == "PostgreSQL"
                           else duck.session())
                ms, _, peak = session.run(sql)
                timings.add(key, system, "cold", ms, peak)
                session.close()
        print(f"  {key} cold done", file=sys.stderr, flush=True)
    sessions = {"Quantatom": {}, "PostgreSQL": postgres.session(), "DuckDB": duck.session()}
    for user in ("bench", "planner"):
        sessions["Quantatom"][user] = quantatom.session(user)
    tiles = {user: quantatom.session(user, tile_cache=True) for user in ("bench", "planner")}
    for index, key in enumerate(keys):
        statements = {s: queries(s, model)[index] for s in systems}
        session = lambda s: (sessions[s][statements[s][3] or "bench"] if s == "Quantatom"
                             else sessions[s])
        for system in systems:
            session(system).run(statements[system][2])  # warm-up
        tile = tiles[statements["Quantatom"][3] or "bench"]
        tile.run(statements["Quantatom"][2])  # stores the tile
        for run in range(WARM_RUNS):
            for system in rotated(systems, run):
                ms, _, peak = session(system).run(statements[system][2])
                timings.add(key, system, "warm", ms, peak)
            ms, _, peak = tile.run(statements["Quantatom"][2])
            timings.add(key, "Quantatom", "tile", ms, peak)
    for s in [sessions["PostgreSQL"], sessions["DuckDB"], *sessions["Quantatom"].values(),
              *tiles.values()]:
        s.close()


def time_writes(quantatom, postgres, model, timings, cold_page_cache, spreads_done):
    """Q5 (a spread of a different value each run) and Q6 (the history cell's ledger or
    audit rows), cold then warm, interleaved. Returns the number of spreads run."""
    systems = ["Quantatom", "PostgreSQL"]
    spreads = spreads_done
    value = lambda n: 1_000_000 + n * 1_000.25
    for key, statement in (("Q5", None), ("Q6", history_sql)):
        for run in range(COLD_RUNS):
            for system in rotated(systems, run):
                if system == "Quantatom":
                    quantatom.restart()
                else:
                    postgres.restart()
                if cold_page_cache:
                    drop_page_cache()
                session = quantatom.session() if system == "Quantatom" else postgres.session()
                sql = (statement(system, model) if statement
                       else spread_sql(system, model, value(spreads)))
                ms, _, peak = session.run(sql)
                timings.add(key, system, "cold", ms, peak)
                session.close()
            if statement is None:
                spreads += 1
        sessions = {"Quantatom": quantatom.session(), "PostgreSQL": postgres.session()}
        for run in range(WARM_RUNS):
            for system in rotated(systems, run):
                sql = (statement(system, model) if statement
                       else spread_sql(system, model, value(spreads)))
                ms, _, peak = sessions[system].run(sql)
                timings.add(key, system, "warm", ms, peak)
            if statement is None:
                spreads += 1
        for s in sessions.values():
            s.close()
        print(f"  {key} done", file=sys.stderr, flush=True)
    return spreads


# --- the report ---------------------------------------------------------------------------

def machine():
    memory = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    return f"{os.cpu_count()} cores ({cpu}), {memory / 1048576:.0f} GiB"


def milliseconds(value):
    if value is None:
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def ratio(mine, theirs):
    return "–" if mine is None or theirs is None else f"{mine / theirs:.2f}"


def report(model, timings, facts, titles):
    systems = ["Quantatom", "DuckDB", "PostgreSQL"]
    lines = [
        "| query | system | cold median | cold p95 | warm median | warm p95 | peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, _ in titles:
        for system in systems:
            if timings.median(key, system, "cold") is None:
                continue
            lines.append(
                f"| {key} | {system} | "
                f"{milliseconds(timings.median(key, system, 'cold'))} | "
                f"{milliseconds(timings.p95(key, system, 'cold'))} | "
                f"{milliseconds(timings.median(key, system, 'warm'))} | "
                f"{milliseconds(timings.p95(key, system, 'warm'))} | "
                f"{timings.peaks[(key, system)]:.0f} |")
            if system == "Quantatom" and timings.median(key, system, "tile"):
                lines.append(
                    f"| {key} | Quantatom, tile cache hit | | | "
                    f"{milliseconds(timings.median(key, system, 'tile'))} | "
                    f"{milliseconds(timings.p95(key, system, 'tile'))} | |")
    lines += [
        "",
        "Ratios of medians (below 1: Quantatom is faster):",
        "",
        "| query | Quantatom / DuckDB, cold | warm | Quantatom / PostgreSQL, cold | warm | "
        "tile hit / PostgreSQL warm |",
        "|---|---|---|---|---|---|",
    ]
    for key, _ in titles:
        m = lambda system, kind: timings.median(key, system, kind)
        lines.append(
            f"| {key} | {ratio(m('Quantatom', 'cold'), m('DuckDB', 'cold'))} | "
            f"{ratio(m('Quantatom', 'warm'), m('DuckDB', 'warm'))} | "
            f"{ratio(m('Quantatom', 'cold'), m('PostgreSQL', 'cold'))} | "
            f"{ratio(m('Quantatom', 'warm'), m('PostgreSQL', 'warm'))} | "
            f"{ratio(m('Quantatom', 'tile'), m('PostgreSQL', 'warm'))} |")
    members = ", ".join(f"`{d}` {n:,}" for d, n in model["members"].items())
    cold = ("a fresh process of the system (Quantatom and PostgreSQL restarted, a new DuckDB "
            "process) and the OS page cache dropped" if facts["page_cache_dropped"] else
            "a fresh process of the system (the OS page cache could not be dropped here)")
    return f"""<!-- bench/planning-benchmark:start -->
## The planning benchmark: Quantatom, DuckDB and PostgreSQL on one planning model

Produced by `bench/planning-benchmark` on {time.strftime('%Y-%m-%d', time.gmtime())}
(commit {facts['commit']}): {machine()}; Quantatom release build, DuckDB {facts['duckdb']}
(PyPI), PostgreSQL {facts['postgres']} (initdb'ed here, {', '.join(f'{k}={v}' for k, v in PG_SETTINGS.items())}).

**Data**: `quantatom bench generate --profile {facts['profile']}` ({facts['generate_s']:.0f} s):
{model['cells']:,} cells of `cube.planning` (6 dimensions, `amount numeric(18,2)`); members:
{members}. Quantatom serves the generated folder ({facts['mdf_mib']:.0f} MiB of Parquet, one
file per version); DuckDB reads the same Parquet files through a view, with the members in
tables of its own ({facts['duckdb_s']:.1f} s to set up); PostgreSQL holds the cells in a
table with the coordinate as primary key ({facts['pg_mib']:.0f} MiB with the index), the
members with `ltree` paths (GiST-indexed), loaded by `COPY` from Quantatom in
{facts['pg_s']:.0f} s. The grant scope of Q4 is a `GRANT ... WHERE entity <@ ...` in
Quantatom and a `grant_scope` table joined with `EXISTS` in the others; Q6 reads Quantatom's
ledger (`audit.planning`) and a PostgreSQL audit table filled by statement-level triggers.

**Method**: before any timing, every system's answer to Q1–Q4, Q7 and the point query is
checked equal (row by row, as text), and Q5's cells are checked equal between Quantatom and
PostgreSQL (after timing, so are Q6's histories). Times are milliseconds from sending the query
to the last row received (psycopg for Quantatom and PostgreSQL; DuckDB in the process that
asks, as it is used); runs of one query go through the systems in turn, each run starting with
another system. Cold: {COLD_RUNS} runs, each the first query in {cold}. Warm: {WARM_RUNS} runs
in one session after one unmeasured run; Quantatom's warm runs have the hot-tile cache off
(`SET quantatom.tile_cache = false`), its "tile cache hit" rows are the same query in a session
with the cache on. p95 is the nearest-rank 95th percentile. Peak MiB is the resident peak of
the process that answered (Quantatom's server, the PostgreSQL backend, DuckDB's process)
during the query's runs. Q5 spreads a different value each run, so every run writes.

The queries (their SQL in each dialect is in `bench/planning_benchmark.py`):

{chr(10).join(f"- **{key}**: {title}" for key, title in titles)}

Milliseconds:

{chr(10).join(lines)}
<!-- bench/planning-benchmark:end -->"""


def write_section(path, section):
    text = Path(path).read_text()
    pattern = re.compile(r"<!-- bench/planning-benchmark:start -->.*?"
                         r"<!-- bench/planning-benchmark:end -->", re.S)
    text = (pattern.sub(lambda _: section, text) if pattern.search(text)
            else text.rstrip("\n") + "\n\n" + section + "\n")
    Path(path).write_text(text)


# --- main ---------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duckdb-worker")
    parser.add_argument("--binary")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--profile", default="s", choices=["ci", "s", "m"])
    parser.add_argument("--check", action="store_true",
                        help="answers only (CI): no timing, no report")
    parser.add_argument("--postgres-url", help="a PostgreSQL 15 with ltree to use instead of "
                        "starting one (a database is created in it and dropped)")
    parser.add_argument("--docs", help="the Markdown file whose section to write")
    args = parser.parse_args()
    if args.duckdb_worker:
        return duckdb_worker(args.duckdb_worker)
    import duckdb
    work = args.work
    say = lambda text: print(f"planning benchmark: {text}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    subprocess.run([args.binary, "bench", "generate", "--profile", args.profile,
                    "--out", str(work / "model")], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    generate_s = time.perf_counter() - started
    model = json.loads((work / "model" / "bench.json").read_text())
    parquet_files = sorted((work / "model" / "data" / "cubes" / "planning" / "data").glob("*.parquet"))
    say(f"generated {model['cells']:,} cells in {generate_s:.1f} s")

    quantatom = Quantatom(args.binary, work / "model" / "data", work)
    postgres = Postgres(work, args.postgres_url)
    duck = DuckDB(work)
    quantatom.start()
    try:
        postgres.start()
        try:
            return run(args, quantatom, postgres, duck, model, parquet_files,
                       dict(generate_s=generate_s, profile=args.profile, duckdb=duckdb.__version__))
        finally:
            postgres.stop()
    finally:
        quantatom.stop()


def run(args, quantatom, postgres, duck, model, parquet_files, facts):
    say = lambda text: print(f"planning benchmark: {text}", file=sys.stderr, flush=True)
    admin = quantatom.session()
    scopes = " OR ".join(f"entity <@ {literal(p)}" for p in model["scope_entity_paths"])
    admin.connection.execute("CREATE USER planner")
    admin.connection.execute(f"GRANT SELECT ON cube.planning TO planner WHERE {scopes}")
    admin.connection.execute("GRANT SELECT ON dim.account, dim.entity TO planner")
    facts["pg_s"], pg_bytes = load_postgres(postgres, admin, model)
    say(f"PostgreSQL loaded in {facts['pg_s']:.1f} s")
    facts["duckdb_s"] = load_duckdb(duck, admin, model, parquet_files)
    admin.close()

    ours = {user: quantatom.session(user) for user in ("bench", "planner")}
    pg, duckdb_session = postgres.session(), duck.session()
    sizes = check_reads({"Quantatom": lambda user: ours[user or "bench"],
                         "PostgreSQL": lambda user: pg,
                         "DuckDB": lambda user: duckdb_session}, model)
    say(f"Q1-Q4, Q7 and the point query answer alike in all three systems (rows: {sizes})")
    duckdb_session.close()
    if args.check:
        check_spread(ours["bench"], pg, model, 1_000_000.0)
        check_spread(ours["bench"], pg, model, 1_234_567.89)
        check_history(ours["bench"], pg, model, 2)
        say(f"Q5 writes the same {model['spread_cells']:,} cells in Quantatom and PostgreSQL, "
            "and Q6 shows both spreads alike")
        return 0
    for session in [*ours.values(), pg]:
        session.close()

    timings = Timings()
    cold_page_cache = drop_page_cache()
    time_reads(quantatom, postgres, duck, model, timings, cold_page_cache)
    ours_bench, pg = quantatom.session(), postgres.session()
    check_spread(ours_bench, pg, model, 999_999.99)
    ours_bench.close()
    pg.close()
    spreads = time_writes(quantatom, postgres, model, timings, cold_page_cache, 1)
    ours_bench, pg = quantatom.session(), postgres.session()
    check_history(ours_bench, pg, model, spreads)
    facts.update(
        page_cache_dropped=cold_page_cache,
        postgres=pg.connection.execute("SHOW server_version").fetchone()[0],
        commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip(),
        mdf_mib=sum(f.stat().st_size for f in parquet_files) / 1048576,
        pg_mib=pg_bytes / 1048576)
    ours_bench.close()
    pg.close()
    titles = [(key, title) for key, title, _, _ in queries("Quantatom", model)]
    titles.insert(4, ("Q5", f"proportional spread over {model['spread_cells']:,} leaf cells"))
    titles.insert(5, ("Q6", "one cell's history"))
    section = report(model, timings, facts, titles)
    write_section(args.docs, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
