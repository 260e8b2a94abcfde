//! Quantatom's server: the Postgres-wire endpoint over the engine, and the `quantatom` binary's
//! configuration.
//!
//! Data flows one way: this crate speaks the protocol and hands SQL to per-connection
//! DataFusion sessions from [`quantatom_engine`]; it never reads storage itself.

pub mod admin;
pub mod config;
pub mod telemetry;
pub mod wire;

pub use wire::Server;
