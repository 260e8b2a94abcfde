//! Unqualified names as PostgreSQL resolves them: `pg_catalog` comes first on every search
//! path, so `SELECT * FROM pg_stat_activity` finds the catalog view while the user's own
//! tables live in `public`.
//!
//! datafusion-pg-catalog's parser qualifies the catalog tables it knows by name; this covers
//! the rest (and any query that bypasses that parser).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result;

/// The `public` schema with `pg_catalog` searched first for names it does not qualify.
#[derive(Debug)]
pub(crate) struct PublicWithPgCatalog {
    public: Arc<dyn SchemaProvider>,
    pg_catalog: Arc<dyn SchemaProvider>,
}

impl PublicWithPgCatalog {
    /// `public` (unwrapped first if it already is one of these) in front of `pg_catalog`.
    pub(crate) fn new(
        public: Arc<dyn SchemaProvider>,
        pg_catalog: Arc<dyn SchemaProvider>,
    ) -> Self {
        let public = match public.downcast_ref::<Self>() {
            Some(wrapped) => Arc::clone(&wrapped.public),
            None => public,
        };
        Self { public, pg_catalog }
    }
}

#[async_trait]
impl SchemaProvider for PublicWithPgCatalog {
    /// The user's tables only: the catalog's are listed under `pg_catalog`.
    fn table_names(&self) -> Vec<String> {
        self.public.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if self.pg_catalog.table_exist(name) {
            return self.pg_catalog.table(name).await;
        }
        self.public.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.pg_catalog.table_exist(name) || self.public.table_exist(name)
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        self.public.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.public.deregister_table(name)
    }
}
