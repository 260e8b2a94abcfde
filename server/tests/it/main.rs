//! Integration tests of the Postgres-wire server with real clients: tokio-postgres, the `psql`
//! binary, pgJDBC, psycopg, asyncpg, SQLAlchemy and node-postgres.

mod admin;
mod catalog;
mod clients;
mod crash;
mod jdbc;
mod ledger;
mod lifecycle;
mod maintenance;
mod observability;
mod plan_reuse;
mod protocol;
mod psql;
mod security;
mod support;
mod transactions;
mod writes;
