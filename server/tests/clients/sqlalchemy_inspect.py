"""SQLAlchemy's PostgreSQL dialect (over psycopg 3) against Quantatom: the reflection Superset
runs when a database is added and a dataset is created (`inspect()`: schemas, tables, views,
columns, keys, indexes, constraints, comments; `Table(autoload_with=...)`), then a query built
on the reflected table.

Usage: python sqlalchemy_inspect.py "postgresql+psycopg://user@host:port/quantatom"
Exits non-zero, naming the check, on the first wrong answer.
"""
import sys

import sqlalchemy as sa

from checks import check, report

engine = sa.create_engine(sys.argv[1])
inspector = sa.inspect(engine)

check("server version parsed from version()", engine.dialect.server_version_info[:2], (16, 6))
check("default schema", inspector.default_schema_name, "public")
schemas = inspector.get_schema_names()
check("schemas", {"cube", "dim", "public"} <= set(schemas) and not any(s.startswith("pg_") for s in schemas), True)
check("dimension tables", sorted(inspector.get_table_names(schema="dim")),
      ["account", "currency", "entity", "entity__by_currency", "product", "time", "version"])
check("cube tables", inspector.get_table_names(schema="cube"), ["finance"])
check("views", inspector.get_view_names(schema="dim"), [])
check("materialized views", inspector.get_materialized_view_names(schema="dim"), [])
check("has_table", (inspector.has_table("entity", schema="dim"), inspector.has_table("nope", schema="dim")),
      (True, False))

columns = inspector.get_columns("entity", schema="dim")
check("entity columns", [(c["name"], str(c["type"]), c["nullable"]) for c in columns][:3],
      [("code", "TEXT", False), ("name", "TEXT", False), ("parent", "TEXT", True)])
check("column defaults and comments", {(c["default"], c.get("comment"), c["autoincrement"]) for c in columns},
      {(None, None, False)})
finance = {c["name"]: str(c["type"]) for c in inspector.get_columns("finance", schema="cube")}
check("cube measure type", finance["amount"], "NUMERIC(18, 2)")

for table, schema in [("entity", "dim"), ("finance", "cube")]:
    check(f"{table} primary key", inspector.get_pk_constraint(table, schema=schema),
          {"constrained_columns": [], "name": None})
    check(f"{table} foreign keys", inspector.get_foreign_keys(table, schema=schema), [])
    check(f"{table} indexes", inspector.get_indexes(table, schema=schema), [])
    check(f"{table} unique constraints", inspector.get_unique_constraints(table, schema=schema), [])
    check(f"{table} check constraints", inspector.get_check_constraints(table, schema=schema), [])
    check(f"{table} comment", inspector.get_table_comment(table, schema=schema), {"text": None})

# A dataset: the reflected table queried through SQLAlchemy Core with a bound parameter.
entity = sa.Table("entity", sa.MetaData(), schema="dim", autoload_with=engine)
with engine.connect() as connection:
    level = connection.execute(sa.select(entity.c.level).where(entity.c.code == "DE")).scalar_one()
    check("query on the reflected table", level, 3)
    leaves = connection.execute(sa.select(sa.func.count()).select_from(entity).where(entity.c.is_leaf)).scalar_one()
    check("aggregate on the reflected table", leaves > 0, True)

report("SQLAlchemy")
