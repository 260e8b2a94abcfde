//! Integration tests of the Postgres-wire server with real clients: tokio-postgres, the `psql`
//! binary and pgJDBC.

mod jdbc;
mod protocol;
mod psql;
mod support;
