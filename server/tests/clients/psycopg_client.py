"""psycopg 3 against Quantatom: every value type in text and binary, parameters both ways,
executemany, pipeline mode, server-side prepared statements, cursors, session settings.

Usage: python psycopg_client.py "host=... port=... dbname=quantatom user=..."
Exits non-zero, naming the check, on the first wrong answer.
"""
import datetime
import decimal
import sys
import uuid

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Json, Jsonb

from checks import check, report

URL = sys.argv[1]
ZONE = datetime.timezone(datetime.timedelta(hours=2))
VALUES = [
    ("int2", 12),
    ("int4", -123456),
    ("int8", 2**40),
    ("float4", 1.5),
    ("float8", 2.25),
    ("numeric", decimal.Decimal("12345.67")),
    ("text", "héllo, wörld"),
    ("varchar", "abc"),
    ("bool", True),
    ("date", datetime.date(2025, 3, 1)),
    ("time", datetime.time(13, 45, 1, 250)),
    ("timestamp", datetime.datetime(2025, 3, 1, 13, 45, 1, 500)),
    ("timestamptz", datetime.datetime(2025, 3, 1, 13, 45, 1, tzinfo=ZONE)),
    ("interval", datetime.timedelta(days=3, seconds=5)),
    ("bytea", b"\x00\x01ab\xff"),
    ("int4[]", [1, 2, 3]),
    ("text[]", ["a", "b"]),
    ("uuid", uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
]
# JSON goes in wrapped (psycopg's Json/Jsonb dumpers) and comes back parsed.
DOCUMENT = {"accounts": ["Revenue", "COGS"], "level": 2, "leaf": None}
JSON_VALUES = [("json", Json(DOCUMENT)), ("jsonb", Jsonb(DOCUMENT))]

with psycopg.connect(URL, autocommit=True) as conn:
    # Every type, parameters sent as text (%t) and binary (%b), results in text and binary.
    for sql_type, value in VALUES:
        for parameter_format in ("t", "b"):
            for binary in (False, True):
                row = conn.execute(f"SELECT %{parameter_format}::{sql_type}", [value], binary=binary).fetchone()
                check(f"{sql_type} parameter {parameter_format} binary={binary}", row[0], value)
    for sql_type, wrapped in JSON_VALUES:
        for parameter_format in ("t", "b"):
            for binary in (False, True):
                row = conn.execute(f"SELECT %{parameter_format}::{sql_type}", [wrapped], binary=binary).fetchone()
                check(f"{sql_type} parameter {parameter_format} binary={binary}", row[0], DOCUMENT)
    # JSON operators on a document parameter (psycopg sends Jsonb typed as jsonb), prepared too.
    for prepare in (False, True):
        row = conn.execute(
            "SELECT %s::jsonb ->> 'level', %s::jsonb -> 'accounts', %s::jsonb @> %s::jsonb",
            [Jsonb(DOCUMENT)] * 3 + [Jsonb({"accounts": ["COGS"]})],
            prepare=prepare,
        ).fetchone()
        check(f"jsonb operators prepare={prepare}", row, ("2", ["Revenue", "COGS"], True))
    check("NULL round trip", conn.execute("SELECT %s::int4", [None]).fetchone()[0], None)
    for bad in ("SELECT 'not-a-uuid'::uuid", "SELECT '{oops'::jsonb"):
        try:
            conn.execute(bad)
            sys.exit(f"FAILED {bad} was accepted")
        except psycopg.errors.InvalidTextRepresentation:
            check(f"{bad} refused with 22P02", True, True)

    # A point lookup on a dimension, with a parameter, binary results.
    row = conn.execute("SELECT code, level, is_leaf FROM dim.entity WHERE code = %s", ["DE"], binary=True).fetchone()
    check("dimension lookup", row, ("DE", 3, True))

    # Server-side prepared statement: psycopg prepares after prepare_threshold uses; force it.
    cur = conn.cursor()
    for code, level in [("EMEA", 2), ("Total", 1), ("DE", 3)]:
        cur.execute("SELECT level FROM dim.entity WHERE code = %s", [code], prepare=True)
        check(f"prepared lookup {code}", cur.fetchone()[0], level)

    # Numbers written with a point are numerics, and a parameter meeting one holds whatever
    # number is sent (PostgreSQL types it numeric): a decimal, a float or an integer, prepared
    # or not. An amount compared with a float parameter too.
    D = decimal.Decimal
    for prepare in (False, True):
        row = conn.execute(
            "SELECT 0.1 + 0.2, %s * 1.05, coalesce(%s, 0.0), %s > 1.5, %s BETWEEN 1.5 AND 2.55",
            [D("12345.678"), 12345.678, 12345, 2.0],
            prepare=prepare,
        ).fetchone()
        check(f"numbers meeting parameters prepare={prepare}", row,
              (D("0.3"), D("12962.96190"), D("12345.678"), True, True))
        # A plan run once (now()) binds the float as the decimal too, in binary results.
        row = conn.execute("SELECT %s * 1.5, now() IS NOT NULL", [12345.678], binary=True, prepare=prepare).fetchone()
        check(f"float parameter meeting a written number, run once, prepare={prepare}", row, (D("18518.517"), True))
        counts = [
            conn.execute("SELECT count(*) FROM cube.finance WHERE amount > %s", [limit], prepare=prepare).fetchone()[0]
            for limit in (D("1000.5"), 1000.5, 1000)
        ]
        check(f"amounts against decimal, float and integer parameters prepare={prepare}",
              counts[0] > 0 and counts[0] == counts[1] <= counts[2], True)

    # After an error in a transaction psycopg forgets its prepared statements with DEALLOCATE
    # ALL, then prepares them again.
    for attempt in range(2):
        try:
            with conn.transaction():
                conn.execute("SELECT %s::int4 / 0", [attempt], prepare=True)
        except psycopg.errors.DivisionByZero:
            pass
    check("prepared again after DEALLOCATE ALL",
          conn.execute("SELECT %s::int4 + 1", [1], prepare=True).fetchone()[0], 2)

    # psycopg deallocates its oldest prepared statement by name when it holds prepared_max.
    conn.prepared_max = 2
    sums = [conn.execute(f"SELECT %s::int4 + {n}", [1], prepare=True).fetchone()[0] for n in range(4)]
    check("prepared statements deallocated by name", sums, [1, 2, 3, 4])
    conn.prepared_max = 100

    # A prepared data change answers with its tag alone, also to a Describe (rolled back).
    # Before the checks below: psycopg deallocates all after an error once it has prepared.
    with conn.transaction(force_rollback=True):
        conn.execute("PREPARE sql_insert (numeric) AS INSERT INTO cube.finance VALUES ('Actual', '2023_01', 'AU', '4000', 'P0001', 'AUD', $1)")
        inserted = conn.execute("EXECUTE sql_insert(2.5)", binary=True)
        check("extended EXECUTE of an INSERT", (inserted.description, inserted.rowcount), (None, 1))
        conn.execute("PREPARE sql_update AS UPDATE cube.finance SET amount = amount * 2 WHERE entity = 'SG' AND time = '2024_01'")
        updated = conn.execute("EXECUTE sql_update")
        check("EXECUTE of an UPDATE is tagged UPDATE", updated.statusmessage.split()[0], "UPDATE")

    # An interval times a parameter: the parameter is a double, NULL included.
    scaled = [conn.execute("SELECT interval '1 day' * %s", [factor]).fetchone()[0] for factor in (2, 1.5, None)]
    check("interval times a parameter", scaled,
          [datetime.timedelta(days=2), datetime.timedelta(days=1, hours=12), None])
    # Interval parameters sent as text in PostgreSQL's forms, what it sends among them.
    read = [conn.execute("SELECT %s::interval", [text]).fetchone()[0]
            for text in ("-1 days +02:00:00", "02:30", "1 day 04:05:06.5", "3 hrs")]
    check("interval text parameters in PostgreSQL's forms", read,
          [datetime.timedelta(days=-1, hours=2), datetime.timedelta(hours=2, minutes=30),
           datetime.timedelta(days=1, hours=4, minutes=5, seconds=6.5), datetime.timedelta(hours=3)])

    # The extended protocol (binary results, pipeline mode, pgJDBC) runs DEALLOCATE, PREPARE
    # and EXECUTE as the simple one does; a statement closed by a Close message is gone.
    pq = conn.pgconn
    missing = psycopg.pq.DiagnosticField.SQLSTATE
    pq.prepare(b"closed_one", b"SELECT 1")
    pq.close_prepared(b"closed_one")
    try:
        conn.execute("DEALLOCATE closed_one")
        sys.exit("FAILED DEALLOCATE of a closed statement was accepted")
    except psycopg.errors.InvalidSqlStatementName:
        check("DEALLOCATE of a closed statement refused with 26000", True, True)
    pq.prepare(b"protocol_one", b"SELECT 1")
    conn.execute("DEALLOCATE protocol_one", binary=True)
    check("extended DEALLOCATE of a protocol statement",
          pq.exec_prepared(b"protocol_one", []).error_field(missing), b"26000")
    conn.execute("PREPARE sql_one AS SELECT 42::int4 AS answer", binary=True)
    executed = conn.execute("EXECUTE sql_one", binary=True)
    check("extended EXECUTE described", (executed.fetchall(), executed.description[0].name, executed.description[0].type_code), ([(42,)], "answer", 23))
    pq.prepare(b"protocol_two", b"SELECT 2")
    with conn.pipeline():
        conn.execute("DEALLOCATE ALL")
    check("pipelined DEALLOCATE ALL forgets protocol statements",
          pq.exec_prepared(b"protocol_two", []).error_field(missing), b"26000")
    try:
        conn.execute("EXECUTE sql_one", binary=True)
        sys.exit("FAILED a statement was executed after DEALLOCATE ALL")
    except psycopg.errors.InvalidSqlStatementName:
        check("pipelined DEALLOCATE ALL forgets SQL statements", True, True)

    # A parameter nothing in the query types takes the type psycopg declares for it (text for
    # a str, which psycopg leaves unknown), in text and binary results, prepared or not.
    declared = [5, 2**40, 1.5, True, "s", datetime.date(2024, 1, 2),
                datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.timedelta(hours=1, microseconds=5)]
    for binary in (False, True):
        for prepare in (False, True):
            answered = [conn.execute("SELECT %s", [value], binary=binary, prepare=prepare).fetchone()[0]
                        for value in declared]
            check(f"SELECT of a declared parameter binary={binary} prepare={prepare}", answered, declared)
    aware = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    check("SELECT of a timestamptz parameter", conn.execute("SELECT %s", [aware]).fetchone()[0], aware)

    # A parameter meeting a written number in a VALUES list makes its column numeric.
    row = conn.execute("SELECT column1 FROM (VALUES (%s * 1.5)) AS v WHERE column1 > 200",
                       [D("12345.678")]).fetchone()
    check("VALUES of a parameter and a written number", row, (D("18518.517"),))

    # executemany and pipeline mode.
    cur.executemany("SELECT %s::int8 * 2", [(i,) for i in range(5)], returning=True)
    results = []
    while True:
        results.append(cur.fetchone()[0])
        if not cur.nextset():
            break
    check("executemany returning", results, [0, 2, 4, 6, 8])
    with conn.pipeline():
        cursors = [conn.execute("SELECT %s::text || 'x'", [str(i)]) for i in range(3)]
    check("pipeline", [c.fetchone()[0] for c in cursors], ["0x", "1x", "2x"])

    # A server-side (named) cursor: DECLARE ... CURSOR, FETCH FORWARD n, CLOSE inside a
    # transaction, as BI tools stream large results.
    cells = conn.execute("SELECT count(*) FROM cube.finance").fetchone()[0]
    with conn.transaction():
        with conn.cursor(name="cells") as named:
            named.itersize = 1000
            named.execute("SELECT entity, amount FROM cube.finance")
            check("named cursor first row", len(named.fetchone()), 2)
            check("named cursor fetchmany", len(named.fetchmany(10)), 10)
            check("named cursor streams every row", 11 + sum(1 for _ in named), cells)
    # A cursor's columns are named as the query's own: dictionary rows read them by name.
    with conn.transaction():
        with conn.cursor(name="counted", row_factory=dict_row) as named:
            named.execute("SELECT upper(code), count(*) FROM dim.entity GROUP BY code ORDER BY 1 LIMIT 1")
            check("named cursor column names", list(named.fetchone().keys()), ["upper", "count"])
    with conn.transaction():
        conn.execute("DECLARE leaves CURSOR FOR SELECT code FROM dim.entity WHERE is_leaf ORDER BY code")
        first = conn.execute("FETCH 2 FROM leaves").fetchall()
        rest = conn.execute("FETCH ALL FROM leaves").fetchall()
        conn.execute("CLOSE leaves")
    expected_leaves = conn.execute("SELECT code FROM dim.entity WHERE is_leaf ORDER BY code").fetchall()
    check("DECLARE / FETCH / CLOSE", first + rest, expected_leaves)

    # Session settings: SET is reported back (ParameterStatus) and read by current_setting().
    check("server_version reported", conn.info.parameter_status("server_version").split(" ")[0], "16.6")
    conn.execute("SET DateStyle = 'ISO, DMY'")
    check("DateStyle reported", conn.info.parameter_status("DateStyle"), "ISO, DMY")
    check("current_setting", conn.execute("SELECT current_setting('datestyle')").fetchone()[0], "ISO, DMY")
    conn.execute("SET TIME ZONE 'Europe/Berlin'")
    check("TimeZone reported", conn.info.parameter_status("TimeZone"), "Europe/Berlin")
    got = conn.execute("SELECT '2025-01-15 12:00:00+00'::timestamptz").fetchone()[0]
    check("timestamptz in the session zone", (got.utcoffset(), got.astimezone(datetime.timezone.utc).hour),
          (datetime.timedelta(hours=1), 12))
    try:
        conn.execute("SET no_such_parameter = 1")
        sys.exit("FAILED unknown parameter was accepted")
    except psycopg.errors.UndefinedObject as error:
        check("unknown parameter message", str(error).strip(), 'unrecognized configuration parameter "no_such_parameter"')
    check("connection usable after error", conn.execute("SELECT 1").fetchone()[0], 1)
    check("version() parses as PostgreSQL", conn.execute("SELECT version()").fetchone()[0].split(" ")[:2],
          ["PostgreSQL", "16.6"])

report("psycopg")
