//! SQLSTATEs of Quantatom's own errors, wherever DataFusion carried them.

use datafusion::common::DataFusionError;
use quantatom_table_providers::mdf::MdfError;
use quantatom_table_providers::metadata::MetadataError;
use quantatom_udfs::interval_text::InvalidIntervalText;
use quantatom_udfs::json::JsonError;
use quantatom_udfs::uuid::UuidError;
use quantatom_udfs::{IntervalOutOfRange, LtreeError};

use crate::postgres_settings::SettingError;
use crate::scalar_subqueries::MoreThanOneRow;

/// The SQLSTATE of the Quantatom error (ltree, JSON, MDF, metadata) at the root of `error`, or
/// `None` when the root is DataFusion's own.
pub fn sqlstate(error: &DataFusionError) -> Option<&'static str> {
    let DataFusionError::External(inner) = error.find_root() else {
        return None;
    };
    if let Some(e) = inner.downcast_ref::<LtreeError>() {
        Some(e.sqlstate())
    } else if let Some(e) = inner.downcast_ref::<JsonError>() {
        Some(e.sqlstate())
    } else if let Some(e) = inner.downcast_ref::<UuidError>() {
        Some(e.sqlstate())
    } else if let Some(e) = inner.downcast_ref::<IntervalOutOfRange>() {
        Some(e.sqlstate())
    } else if let Some(e) = inner.downcast_ref::<InvalidIntervalText>() {
        Some(e.sqlstate())
    } else if let Some(e) = inner.downcast_ref::<MoreThanOneRow>() {
        Some(e.sqlstate())
    } else if let Some(e) = inner.downcast_ref::<SettingError>() {
        Some(e.sqlstate())
    } else if let Some(e) = inner.downcast_ref::<MdfError>() {
        Some(e.sqlstate())
    } else {
        inner
            .downcast_ref::<MetadataError>()
            .map(MetadataError::sqlstate)
    }
}
