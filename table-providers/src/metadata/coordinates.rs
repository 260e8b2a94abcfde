//! Cells written to a cube must sit on leaf members of its dimensions: the check every cube
//! write makes before anything is stored.
//!
//! The engine puts a [`CoordinateCheck`] over its metadata store into every session's
//! configuration (a DataFusion [`SessionConfig`] extension); a cube's writes look it up while
//! they run and refuse the whole statement when one coordinate is NULL (23502), names no
//! member of its dimension (23503), or names a member with children (23514: cells sit on
//! leaves, and parents add them up).
//!
//! [`SessionConfig`]: datafusion::prelude::SessionConfig

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;

use super::{MetadataError, MetadataStore};

/// Checks the coordinates of cells against the dimensions' members.
#[derive(Debug, Clone)]
pub struct CoordinateCheck {
    store: Arc<dyn MetadataStore>,
}

impl CoordinateCheck {
    /// The check over `store`'s members.
    pub fn new(store: Arc<dyn MetadataStore>) -> Self {
        Self { store }
    }

    /// Fails, naming the offending value, unless every cell of `batches` has, in each of the
    /// columns `dimensions` (a cube's coordinate columns, named after their dimensions), a leaf
    /// member of that dimension.
    pub async fn check(&self, dimensions: &[String], batches: &[RecordBatch]) -> Result<()> {
        for dimension in dimensions {
            let mut codes = BTreeSet::new();
            for batch in batches {
                let Some(column) = batch.column_by_name(dimension) else {
                    continue;
                };
                if column.null_count() > 0 {
                    return Err(MetadataError::NotNull(format!(
                        "a cell has no {dimension}: every coordinate of a cell names a member"
                    ))
                    .into());
                }
                let column = cast(column, &DataType::Utf8)?;
                codes.extend(
                    column
                        .as_string::<i32>()
                        .iter()
                        .flatten()
                        .map(str::to_owned),
                );
            }
            if codes.is_empty() {
                continue;
            }
            let codes: Vec<String> = codes.into_iter().collect();
            let members: HashMap<String, bool> = self
                .store
                .members_with_codes(dimension, &codes)
                .await?
                .into_iter()
                .map(|m| (m.code, m.is_leaf))
                .collect();
            for code in &codes {
                match members.get(code) {
                    None => {
                        return Err(MetadataError::InUse(format!(
                            "{code:?} is not a member of {dimension}"
                        ))
                        .into());
                    }
                    Some(false) => {
                        return Err(MetadataError::NotALeaf(format!(
                            "{code:?} of {dimension} has members under it: cells are written to leaf members, and parents add them up"
                        ))
                        .into());
                    }
                    Some(true) => {}
                }
            }
        }
        Ok(())
    }
}
