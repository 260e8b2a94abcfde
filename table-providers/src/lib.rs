//! Quantatom's table providers and the storage under them.
//!
//! - [`mdf`]: cubes as immutable Parquet files plus a transaction log (`cube.<name>`).
//! - [`metadata`]: dimensions and members behind the [`metadata::MetadataStore`] trait
//!   (`dim.<dimension>`), with the embedded implementation.
//! - [`storage`]: the object store everything is kept in.
//!
//! This crate knows nothing of the wire protocol; the engine wires these into sessions.

pub mod mdf;
pub mod metadata;
pub mod storage;
