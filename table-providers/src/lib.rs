//! Quantatom's table providers and the storage under them.
//!
//! - [`mdf`]: cubes as immutable Parquet files plus a transaction log (`cube.<name>`).
//! - [`metadata`]: dimensions and members behind the [`metadata::MetadataStore`] trait
//!   (`dim.<dimension>`), with the embedded implementation.
//! - [`ledger`]: the entropy ledger of every committed change (`audit.*`).
//! - [`storage`]: the object store everything is kept in.
//! - [`settings`]: Quantatom's own session settings (`SET quantatom.<name>`).
//! - [`memory`]: the memory pools sessions run under.
//!
//! This crate knows nothing of the wire protocol; the engine wires these into sessions.

pub mod access_target;
pub mod cache_counters;
pub mod computed;
mod fail_point;
pub mod ledger;
pub mod mdf;
pub mod memory;
pub mod metadata;
pub mod settings;
pub mod storage;
mod write_target;

use datafusion::catalog::TableProvider;

/// The version of what a scan of `provider` reads now, for tables whose contents change only
/// by committing a new version (cubes, dimensions, and the calendar tables computed from the
/// `time` dimension, whose version also names the table: `version_switchover`'s arguments);
/// `None` for any other table, whose contents may change without notice.
///
/// A physical plan keeps what its scans read (a cube's file list, a dimension's members), so
/// it may be run again only while the versions of its tables are the ones it was planned at.
pub async fn table_version(
    provider: &dyn TableProvider,
) -> Option<datafusion::common::Result<String>> {
    let cube = (provider.downcast_ref::<mdf::MdfTable>()).or_else(|| {
        let summaries = provider.downcast_ref::<mdf::CubeSummaries>();
        summaries.map(mdf::CubeSummaries::cube)
    });
    if let Some(cube) = cube {
        return Some(
            cube.version()
                .await
                .map(|version| version.0.to_string())
                .map_err(Into::into),
        );
    }
    if let Some(dimension) = provider.downcast_ref::<metadata::DimensionTable>() {
        return Some(dimension.version().await.map(|version| version.to_string()));
    }
    metadata::calendar_version(provider).await
}
