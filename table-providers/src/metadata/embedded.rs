//! The embedded metadata store: dimensions as JSON documents in the data folder, held in memory.
//!
//! Each dimension is one immutable object, `metadata/dimensions/<name>.json`, written with
//! put-if-absent so two processes can never both create the same dimension. It is the default
//! for one-machine use; the PostgreSQL store implements the same trait for production.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::{Dimension, Member, MemberSpec, MetadataError, MetadataStore, new_dimension_members};
use crate::storage::Storage;

/// One dimension as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DimensionDocument {
    dimension: Dimension,
    members: Vec<Member>,
}

/// Metadata kept in the data folder (or any object store) and served from memory.
#[derive(Debug)]
pub struct EmbeddedMetadataStore {
    storage: Storage,
    dimensions: RwLock<BTreeMap<String, Arc<DimensionDocument>>>,
}

impl EmbeddedMetadataStore {
    /// Opens the store, loading every dimension document under `metadata/dimensions/`.
    pub async fn open(storage: Storage) -> Result<Self, MetadataError> {
        let prefix = storage.path(&["metadata", "dimensions"]);
        let objects: Vec<_> = storage
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(storage_error)?;
        let mut dimensions = BTreeMap::new();
        for object in objects {
            let bytes = storage
                .store()
                .get(&object.location)
                .await
                .map_err(storage_error)?
                .bytes()
                .await
                .map_err(storage_error)?;
            let document: DimensionDocument = serde_json::from_slice(&bytes).map_err(|e| {
                MetadataError::Storage(format!(
                    "{} is not a dimension document: {e}",
                    object.location
                ))
            })?;
            dimensions.insert(document.dimension.name.clone(), Arc::new(document));
        }
        Ok(Self {
            storage,
            dimensions: RwLock::new(dimensions),
        })
    }

    fn document_path(&self, dimension: &str) -> Path {
        self.storage
            .path(&["metadata", "dimensions", &format!("{dimension}.json")])
    }

    fn document(&self, dimension: &str) -> Result<Arc<DimensionDocument>, MetadataError> {
        self.dimensions
            .read()
            .expect("metadata lock poisoned")
            .get(dimension)
            .cloned()
            .ok_or_else(|| MetadataError::NotFound(format!("dimension {dimension:?}")))
    }
}

fn storage_error(error: object_store::Error) -> MetadataError {
    MetadataError::Storage(error.to_string())
}

#[async_trait]
impl MetadataStore for EmbeddedMetadataStore {
    async fn dimensions(&self) -> Result<Vec<Dimension>, MetadataError> {
        let dimensions = self.dimensions.read().expect("metadata lock poisoned");
        Ok(dimensions.values().map(|d| d.dimension.clone()).collect())
    }

    async fn members(&self, dimension: &str) -> Result<Vec<Member>, MetadataError> {
        Ok(self.document(dimension)?.members.clone())
    }

    /// Dimension documents are written once (a second create fails), so the version of an
    /// existing dimension never moves.
    async fn dimension_version(&self, dimension: &str) -> Result<u64, MetadataError> {
        self.document(dimension).map(|_| 0)
    }

    async fn create_dimension(
        &self,
        dimension: Dimension,
        members: Vec<MemberSpec>,
    ) -> Result<(), MetadataError> {
        let document = DimensionDocument {
            members: new_dimension_members(&dimension, members)?,
            dimension,
        };
        let name = document.dimension.name.clone();
        let json =
            serde_json::to_vec(&document).map_err(|e| MetadataError::Storage(e.to_string()))?;
        match self
            .storage
            .put_if_absent(&self.document_path(&name), json)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(MetadataError::AlreadyExists(format!("dimension {name:?}")));
            }
            Err(e) => return Err(storage_error(e)),
        }
        self.dimensions
            .write()
            .expect("metadata lock poisoned")
            .insert(name, Arc::new(document));
        Ok(())
    }
}
