//! The embedded metadata store: dimensions as JSON documents in the data folder, held in memory.
//!
//! Each version of a dimension is one immutable object: `metadata/dimensions/<name>.json` when
//! it is created (version 0), `metadata/dimensions/<name>/<version>.json` for every change after,
//! the version zero-padded to 20 digits. Each is written with put-if-absent, so two processes can
//! never both create a dimension or both write the same version: the second fails and nothing
//! is lost. Opening reads the newest version of each dimension. Roles, memberships and grants
//! are kept the same way, the whole access model per version: `metadata/access/<version>.json`
//! (none yet: no roles, version 0). It is the default for
//! one-machine use; the PostgreSQL store implements the same trait for production.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::{
    AccessModel, ChangeAuthor, Dimension, Member, MemberCommit, MemberSpec, MetadataError,
    MetadataStore, member_differences, new_dimension_members,
};
use crate::mdf::StatementRef;
use crate::mdf::log::now_ms;
use crate::storage::Storage;

/// One version of a dimension as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DimensionDocument {
    dimension: Dimension,
    /// 0 when created, one more at every change.
    #[serde(default)]
    version: u64,
    members: Vec<Member>,
    /// When the change that wrote this version was committed (milliseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    committed_at_ms: Option<u64>,
    /// Who made that change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    /// The statement that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    statement: Option<StatementRef>,
}

/// Metadata kept in the data folder (or any object store) and served from memory.
#[derive(Debug)]
pub struct EmbeddedMetadataStore {
    storage: Storage,
    dimensions: RwLock<BTreeMap<String, Arc<DimensionDocument>>>,
    /// The access model and its version.
    access: RwLock<(Arc<AccessModel>, u64)>,
    /// Held while a change is written, so that this process's changes apply one at a time.
    committing: tokio::sync::Mutex<()>,
    /// Member and access changes this handle committed (see
    /// [`MetadataStore::committed_changes`]).
    committed: AtomicU64,
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
            let document: DimensionDocument = read_document(&storage, &object.location).await?;
            let newer = dimensions
                .get(&document.dimension.name)
                .is_none_or(|known: &Arc<DimensionDocument>| known.version < document.version);
            if newer {
                dimensions.insert(document.dimension.name.clone(), Arc::new(document));
            }
        }
        let access_prefix = storage.path(&["metadata", "access"]);
        let newest_access = storage
            .store()
            .list(Some(&access_prefix))
            .try_collect::<Vec<_>>()
            .await
            .map_err(storage_error)?
            .into_iter()
            .filter_map(|object| {
                let version = object
                    .location
                    .filename()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()?;
                Some((version, object.location))
            })
            .max_by_key(|(version, _)| *version);
        let access = match newest_access {
            Some((version, location)) => (read_document(&storage, &location).await?, version),
            None => (AccessModel::default(), 0),
        };
        Ok(Self {
            storage,
            dimensions: RwLock::new(dimensions),
            access: RwLock::new((Arc::new(access.0), access.1)),
            committing: tokio::sync::Mutex::new(()),
            committed: AtomicU64::new(0),
        })
    }

    fn document_path(&self, dimension: &str, version: u64) -> Path {
        match version {
            0 => self
                .storage
                .path(&["metadata", "dimensions", &format!("{dimension}.json")]),
            _ => self.storage.path(&[
                "metadata",
                "dimensions",
                dimension,
                &format!("{version:020}.json"),
            ]),
        }
    }

    /// Writes `document` as a new object; `Ok(false)` when its version exists already.
    async fn write_new(&self, document: &DimensionDocument) -> Result<bool, MetadataError> {
        let path = self.document_path(&document.dimension.name, document.version);
        self.write_new_object(&path, document).await
    }

    /// Writes `value` as JSON at `path` unless something is there (then `Ok(false)`).
    async fn write_new_object(
        &self,
        path: &Path,
        value: &impl Serialize,
    ) -> Result<bool, MetadataError> {
        let json = serde_json::to_vec(value).map_err(|e| MetadataError::Storage(e.to_string()))?;
        match self.storage.put_if_absent(path, json).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(storage_error(e)),
        }
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

/// Reads and parses the JSON document at `location`.
async fn read_document<T: serde::de::DeserializeOwned>(
    storage: &Storage,
    location: &Path,
) -> Result<T, MetadataError> {
    let bytes = storage
        .store()
        .get(location)
        .await
        .map_err(storage_error)?
        .bytes()
        .await
        .map_err(storage_error)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| MetadataError::Storage(format!("{location} is not a metadata document: {e}")))
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

    /// Picks the members from memory without copying the whole dimension first (every cube
    /// `INSERT` asks this of each dimension).
    async fn members_with_codes(
        &self,
        dimension: &str,
        codes: &[String],
    ) -> Result<Vec<Member>, MetadataError> {
        let wanted: std::collections::HashSet<&String> = codes.iter().collect();
        let document = self.document(dimension)?;
        Ok(document
            .members
            .iter()
            .filter(|m| wanted.contains(&m.code))
            .cloned()
            .collect())
    }

    async fn dimension_version(&self, dimension: &str) -> Result<u64, MetadataError> {
        self.document(dimension).map(|d| d.version)
    }

    async fn commit_members(
        &self,
        dimension: &str,
        read_version: u64,
        members: Vec<Member>,
        author: &ChangeAuthor,
    ) -> Result<u64, MetadataError> {
        let _committing = self.committing.lock().await;
        let current = self.document(dimension)?;
        let conflict = || {
            MetadataError::Conflict(format!(
                "dimension {dimension:?} changed since version {read_version}"
            ))
        };
        if current.version != read_version {
            return Err(conflict());
        }
        let document = DimensionDocument {
            dimension: current.dimension.clone(),
            version: read_version + 1,
            members,
            committed_at_ms: Some(now_ms()),
            user: author.user.clone(),
            statement: author.statement.clone(),
        };
        if !self.write_new(&document).await? {
            // Another process wrote this version.
            return Err(conflict());
        }
        let version = document.version;
        self.dimensions
            .write()
            .expect("metadata lock poisoned")
            .insert(dimension.to_owned(), Arc::new(document));
        self.committed.fetch_add(1, Ordering::AcqRel);
        Ok(version)
    }

    async fn member_history(
        &self,
        dimension: &str,
        after: u64,
    ) -> Result<Vec<MemberCommit>, MetadataError> {
        let current = self.document(dimension)?.version;
        let mut history = Vec::new();
        if after >= current {
            return Ok(history);
        }
        let first = self.document_path(dimension, after);
        let mut before: DimensionDocument = read_document(&self.storage, &first).await?;
        for version in after + 1..=current {
            let path = self.document_path(dimension, version);
            let document: DimensionDocument = read_document(&self.storage, &path).await?;
            history.push(MemberCommit {
                version,
                committed_at_ms: document.committed_at_ms.unwrap_or(0),
                author: ChangeAuthor {
                    user: document.user.clone(),
                    statement: document.statement.clone(),
                },
                changes: member_differences(&before.members, &document.members),
            });
            before = document;
        }
        Ok(history)
    }

    async fn access(&self) -> Result<(AccessModel, u64), MetadataError> {
        let access = self.access.read().expect("metadata lock poisoned");
        Ok((access.0.as_ref().clone(), access.1))
    }

    async fn commit_access(
        &self,
        read_version: u64,
        model: AccessModel,
    ) -> Result<u64, MetadataError> {
        let _committing = self.committing.lock().await;
        let conflict = || {
            MetadataError::Conflict(format!(
                "roles and grants changed since version {read_version}"
            ))
        };
        if self.access.read().expect("metadata lock poisoned").1 != read_version {
            return Err(conflict());
        }
        let version = read_version + 1;
        let path = self
            .storage
            .path(&["metadata", "access", &format!("{version:020}.json")]);
        if !self.write_new_object(&path, &model).await? {
            return Err(conflict());
        }
        *self.access.write().expect("metadata lock poisoned") = (Arc::new(model), version);
        self.committed.fetch_add(1, Ordering::AcqRel);
        Ok(version)
    }

    fn committed_changes(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    async fn create_dimension(
        &self,
        dimension: Dimension,
        members: Vec<MemberSpec>,
    ) -> Result<(), MetadataError> {
        let document = DimensionDocument {
            members: new_dimension_members(self, &dimension, members).await?,
            version: 0,
            dimension,
            committed_at_ms: Some(now_ms()),
            user: None,
            statement: None,
        };
        let name = document.dimension.name.clone();
        if !self.write_new(&document).await? {
            return Err(MetadataError::AlreadyExists(format!("dimension {name:?}")));
        }
        self.dimensions
            .write()
            .expect("metadata lock poisoned")
            .insert(name, Arc::new(document));
        Ok(())
    }
}
