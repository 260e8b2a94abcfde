//! The memory pools sessions run under: each runtime built here shares its object stores,
//! caches and spill files with the runtime it comes from, and has a pool of its own.

use std::sync::Arc;

use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::runtime_env::RuntimeEnv;

/// `shared`'s object stores, caches and spill files, with `pool` for the memory of what runs
/// in it.
pub fn runtime_with_pool(shared: &RuntimeEnv, pool: Arc<dyn MemoryPool>) -> Arc<RuntimeEnv> {
    Arc::new(RuntimeEnv {
        memory_pool: pool,
        disk_manager: Arc::clone(&shared.disk_manager),
        cache_manager: Arc::clone(&shared.cache_manager),
        object_store_registry: Arc::clone(&shared.object_store_registry),
    })
}
