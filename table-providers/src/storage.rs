//! Where Quantatom keeps its files: one object store and the URL DataFusion knows it by.
//!
//! Every table reads and writes through a [`Storage`]; DataFusion's Parquet scan finds the same
//! store through [`Storage::register`], so the engine never opens files behind its back.

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

/// The URL under which the engine registers its store with DataFusion. A scheme of our own
/// keeps it apart from DataFusion's default `file://` store.
const STORAGE_URL: &str = "quantatom://data/";

/// An object store rooted at Quantatom's data folder (or bucket prefix).
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    url: ObjectStoreUrl,
}

impl Storage {
    /// Storage in a local folder, created if missing.
    pub fn local(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            DataFusionError::External(
                format!("cannot create data folder {}: {e}", dir.display()).into(),
            )
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self::new(Arc::new(store)))
    }

    /// Storage over any object store whose paths are relative to the data root.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            url: ObjectStoreUrl::parse(STORAGE_URL).expect("storage URL is valid"),
        }
    }

    /// The object store itself.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The URL DataFusion resolves this store by; file paths in scans are relative to it.
    pub fn url(&self) -> &ObjectStoreUrl {
        &self.url
    }

    /// A path below the data root from its parts (`["cubes", "finance", "_log"]`).
    pub fn path(&self, parts: &[&str]) -> Path {
        Path::from_iter(parts.iter().copied())
    }

    /// Makes the store reachable from DataFusion scans in `runtime`.
    pub fn register(&self, runtime: &RuntimeEnv) {
        runtime.register_object_store(self.url.as_ref(), Arc::clone(&self.store));
    }
}
