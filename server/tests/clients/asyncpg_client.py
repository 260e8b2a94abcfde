"""asyncpg (binary protocol, prepared statements) against Quantatom.

Usage: python asyncpg_client.py postgresql://user@host:port/quantatom
"""
import asyncio
import datetime
import decimal
import sys
import uuid

import asyncpg

from checks import check, report

async def main(url):
    conn = await asyncpg.connect(url)
    version = conn.get_server_version()
    # asyncpg reads PostgreSQL 10+ versions as major.0.minor.
    check("server version", (version.major, version.micro), (16, 6))
    check("current_setting", await conn.fetchval("SELECT current_setting('server_version_num')"), "160006")
    check("parameter", await conn.fetchval("SELECT $1::int4 + 1", 41), 42)
    row = await conn.fetchrow("SELECT code, name, level, is_leaf FROM dim.entity WHERE code = $1", "DE")
    check("dimension row", (row["code"], row["level"], row["is_leaf"]), ("DE", 3, True))

    lookup = await conn.prepare("SELECT parent FROM dim.entity WHERE code = $1")
    check("prepared 1", await lookup.fetchval("DE"), "EMEA")
    check("prepared 2", await lookup.fetchval("EMEA"), "Total")

    total = await conn.fetchval(
        "SELECT sum(amount) FROM cube.finance WHERE version = $1 AND time = $2 AND account = $3",
        "Budget", "2025_01", "4000")
    check("cube sum is numeric", (type(total), total > 0), (decimal.Decimal, True))
    typed = await conn.fetchrow(
        "SELECT $1::float8 AS f, $2::date AS d, $3::timestamptz AS t, $4::text[] AS a, $5::bytea AS b",
        2.5, datetime.date(2025, 1, 31),
        datetime.datetime(2025, 1, 31, 8, 0, tzinfo=datetime.timezone.utc), ["x", "y"], b"\x00z")
    check("binary types", tuple(typed), (2.5, datetime.date(2025, 1, 31),
          datetime.datetime(2025, 1, 31, 8, 0, tzinfo=datetime.timezone.utc), ["x", "y"], b"\x00z"))
    # uuid and json parameters are described as such, so asyncpg encodes them by type (a UUID
    # in binary); json comes back as its text, as asyncpg returns it from PostgreSQL.
    key = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    check("uuid parameter and result", await conn.fetchval("SELECT $1::uuid", key), key)
    check("jsonb parameter and result", await conn.fetchval("SELECT $1::jsonb", '{"a": [1, 2]}'), '{"a": [1, 2]}')

    try:
        await conn.fetch("SELECT * FROM cube.no_such_cube")
        sqlstate = None
    except asyncpg.exceptions.PostgresError as error:
        sqlstate = error.sqlstate
    check("undefined table", sqlstate, "42P01")
    check("usable after error", await conn.fetchval("SELECT 2"), 2)
    await conn.close()


asyncio.run(main(sys.argv[1]))
report("asyncpg")
