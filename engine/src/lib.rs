//! Quantatom's engine: turns configuration into DataFusion sessions over the planning model.
//!
//! [`Engine::open`] connects the storage and the metadata store, loads the demo model into an
//! empty data folder when asked, and builds the catalog every session shares:
//!
//! - `cube.<name>`: MDF cubes ([`quantatom_table_providers::mdf`]),
//! - `dim.<dimension>`: dimension members ([`quantatom_table_providers::metadata`]),
//! - `public`: an empty schema for users' own objects,
//! - `system`: the engine's own state (`system.cache`, [`system_tables`]).
//!
//! Queries over cubes and dimensions are answered from the hot-tile cache ([`tiles`]) when it
//! holds their result.
//!
//! [`Engine::new_session`] gives each caller (one wire connection, one test) its own
//! `SessionContext`: configuration such as `SET` is private to it, tables are shared.

pub mod access_rule;
pub mod access_statements;
pub mod bench_model;
mod cube_joins;
pub mod demo;
mod eager_aggregation;
mod errors;
pub mod information_schema;
mod output_projection;
pub mod plan_reuse;
pub mod postgres_column_names;
pub mod postgres_functions;
pub mod postgres_literals;
pub mod postgres_settings;
pub mod scalar_subqueries;
mod summary_aggregation;
pub mod system_tables;
pub mod tiles;
pub mod type_modifiers;
pub mod visible_catalog;
mod yielding_operators;

pub use errors::sqlstate;
/// Cubes: their storage format, reads and writes.
pub use quantatom_table_providers::computed;
/// The entropy ledger of every committed change.
pub use quantatom_table_providers::ledger;
pub use quantatom_table_providers::mdf;
/// Dimensions, members and the stores that keep them.
pub use quantatom_table_providers::metadata;
/// Where the engine keeps its data, as configured.
pub use quantatom_table_providers::storage;

use std::num::NonZeroUsize;
use std::sync::Arc;

use cube_joins::CubeJoinPlanner;
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider,
};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use information_schema::PostgresInformationSchema;
use plan_reuse::PlanEpoch;
use postgres_functions::{
    ExpandArrayFunction, FixedAnswerFunction, IsVisibleFunction, ToRegtypeFunction, TypeofFunction,
    VersionFunction,
};
use postgres_settings::{CurrentSettingFunction, PostgresSettings};
use quantatom_table_providers::ledger::Ledger;
use quantatom_table_providers::ledger::audit::AuditSchemaProvider;
use quantatom_table_providers::mdf::CubeSchemaProvider;
use quantatom_table_providers::mdf::copy::MdfCopyFunction;
use quantatom_table_providers::mdf::dml::CubeDmlRule;
use quantatom_table_providers::mdf::maintenance::CompactionPolicy;
use quantatom_table_providers::mdf::maintenance_sql::{MdfCompactFunction, MdfVacuumFunction};
use quantatom_table_providers::mdf::spread::MdfSpreadFunction;
use quantatom_table_providers::mdf::time_travel::{MdfAtFunction, MdfHistoryFunction};
use quantatom_table_providers::memory::runtime_with_pool;
use quantatom_table_providers::metadata::{
    CalendarSchemaProvider, CoordinateCheck, DimensionSchemaProvider, EmbeddedMetadataStore,
    MemberDmlRule, MetadataError, MetadataStore, PostgresMetadataStore, VersionSwitchoverFunction,
};
use quantatom_table_providers::settings::QuantatomOptions;
use quantatom_table_providers::storage::{ByteCacheConfig, Storage, StorageConfig};
use system_tables::CacheTable;
use tiles::{HotTiles, MarkTileCandidates, TileCache, TileCacheConfig, TilePlanner};

/// The catalog (database) name every session uses.
pub const CATALOG: &str = "quantatom";

/// What the engine needs to start.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where cubes and the embedded metadata are kept: a folder or a bucket.
    pub storage: StorageConfig,
    /// When the data folder is empty, load the demo model with about this many cells.
    pub demo_cells: Option<usize>,
    /// Where dimensions and members are kept.
    pub metadata: MetadataConfig,
    /// Whether every committed change is appended to the ledger (`audit.*`). Off only to
    /// measure what the ledger costs: without it, writes are not audited.
    pub ledger: bool,
    /// The caches.
    pub caches: CacheConfig,
    /// When cubes are compacted in the background, and how (docs/mdf.md).
    pub compaction: CompactionPolicy,
}

/// The engine's caches (docs/caching.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// The hot-tile cache of query results.
    pub tiles: TileCacheConfig,
    /// The byte cache of data files read from the store.
    pub bytes: ByteCacheConfig,
    /// Bytes of Parquet footers and page indexes DataFusion keeps.
    pub file_metadata_bytes: usize,
}

impl Default for CacheConfig {
    /// The tile and byte caches' defaults; DataFusion's 50 MiB for file metadata.
    fn default() -> Self {
        Self {
            tiles: TileCacheConfig::default(),
            bytes: ByteCacheConfig::default(),
            file_metadata_bytes: CacheManagerConfig::default().metadata_cache_limit,
        }
    }
}

/// Where the metadata store is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MetadataConfig {
    /// In the storage, next to the cubes: one machine, nothing else to run.
    #[default]
    Embedded,
    /// In PostgreSQL with the `ltree` extension.
    Postgres(metadata::PostgresStoreSettings),
}

/// Why [`Engine::open`] failed, by the part that did.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The metadata store could not be opened.
    #[error("the metadata store: {0}")]
    Metadata(#[source] MetadataError),
    /// The storage, or the demo model written into it, failed.
    #[error(transparent)]
    Data(#[from] DataFusionError),
}

/// What [`Engine::load_footers`] read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FootersLoaded {
    /// Cubes whose data files' footers were read.
    pub cubes: usize,
    /// Data files whose footers were read.
    pub files: usize,
}

/// The shared part of every session: storage, metadata and the catalog over them.
#[derive(Debug)]
pub struct Engine {
    storage: Storage,
    cubes: Arc<CubeSchemaProvider>,
    metadata: Arc<dyn MetadataStore>,
    session_template: Arc<SessionState>,
    plan_epoch: Arc<PlanEpoch>,
    ledger: Option<Arc<Ledger>>,
    tiles: Arc<TileCache>,
    /// Bytes one session may hold for its running statement's operators (hash tables, sorts);
    /// `None`: no limit.
    query_memory_limit: Option<usize>,
}

impl Engine {
    /// Opens the data folder, loading the demo model first if it is empty and one is asked for.
    pub async fn open(config: &EngineConfig) -> Result<Self, OpenError> {
        let storage = Storage::open(&config.storage)?
            .with_byte_cache(&config.caches.bytes)
            .await?;
        let metadata: Arc<dyn MetadataStore> = match &config.metadata {
            MetadataConfig::Embedded => Arc::new(
                EmbeddedMetadataStore::open(storage.clone())
                    .await
                    .map_err(OpenError::Metadata)?,
            ),
            MetadataConfig::Postgres(settings) => Arc::new(
                PostgresMetadataStore::open(settings)
                    .await
                    .map_err(OpenError::Metadata)?,
            ),
        };
        let cubes = Arc::new(
            CubeSchemaProvider::open(storage.clone(), config.compaction)
                .await
                .map_err(DataFusionError::from)?,
        );
        if let Some(cells) = config.demo_cells {
            let empty = datafusion::catalog::SchemaProvider::table_names(cubes.as_ref()).is_empty()
                && metadata
                    .dimensions()
                    .await
                    .map_err(OpenError::Metadata)?
                    .is_empty();
            if empty {
                tracing::info!(cells, data = %config.storage.location(), "no cubes or dimensions yet: loading the demo model");
                demo::load(&cubes, metadata.as_ref(), demo::DemoSize::with_cells(cells)).await?;
            }
        }
        let ledger = config
            .ledger
            .then(|| Arc::new(Ledger::new(storage.clone(), Arc::clone(&metadata))));
        let tiles = Arc::new(TileCache::new(config.caches.tiles.clone())?);
        let session_template = session_template(
            &storage,
            &cubes,
            &metadata,
            ledger.as_ref(),
            &tiles,
            config.caches.file_metadata_bytes,
        )
        .await?;
        if let Some(ledger) = &ledger {
            // Commits a process that died did not ledger are ledgered now, in the background;
            // the first write or audit read waits for it.
            let (ledger, cubes, state) =
                (Arc::clone(ledger), cubes.all(), session_template.clone());
            tokio::spawn(async move {
                if let Err(error) = ledger.catch_up(&cubes, &state).await {
                    tracing::warn!(%error, "the ledger could not be brought up to date");
                }
            });
        }
        let session_template = Arc::new(session_template);
        if let Some(interval) = config.caches.tiles.refresh_interval {
            HotTiles::refresh_every(
                Arc::downgrade(&session_template),
                Arc::clone(&tiles),
                interval,
            );
        }
        Ok(Self {
            storage,
            cubes,
            metadata,
            session_template,
            plan_epoch: Arc::default(),
            ledger,
            tiles,
            query_memory_limit: None,
        })
    }

    /// This engine with every new session's statements limited to `limit` bytes of operator
    /// memory (hash tables, sort buffers, aggregation state): a statement that needs more
    /// spills where its operators can, and otherwise fails with `ResourcesExhausted` (SQLSTATE
    /// 53200) while the server and other sessions go on. A session runs one statement at a
    /// time; cursors it keeps open share its limit.
    pub fn with_query_memory_limit(mut self, limit: Option<usize>) -> Self {
        self.query_memory_limit = limit;
        self
    }

    /// A new session with its own configuration over the shared catalog.
    pub fn new_session(&self) -> SessionContext {
        SessionContext::new_with_state(self.session_state())
    }

    /// The state a new session starts from; callers that add their own catalog layers (the
    /// wire server's `pg_catalog`) build on this.
    pub fn session_state(&self) -> SessionState {
        let builder =
            SessionStateBuilder::new_from_existing(self.session_template.as_ref().clone())
                .with_session_id(uuid::Uuid::new_v4().to_string());
        let shared = self.session_template.runtime_env();
        with_memory_limit(builder, shared, self.query_memory_limit).build()
    }

    /// Reads every cube's footers and marks (of its latest snapshot) into the caches, as the
    /// first scan of each file would, while DataFusion's file metadata cache has room: the
    /// first queries after a start then prune without fetching them (docs/caching.md). The
    /// returned future owns what it needs, so a server can run it beside serving.
    pub fn load_footers(&self) -> impl Future<Output = Result<FootersLoaded>> + Send + 'static {
        let (cubes, state) = (self.cubes.all(), self.session_state());
        async move {
            let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
            let mut loaded = FootersLoaded::default();
            for cube in cubes {
                let held: usize = (cache.list_entries().values())
                    .map(|entry| entry.size_bytes)
                    .sum();
                if held >= cache.cache_limit() {
                    break;
                }
                loaded.files += cube.load_footers(&state).await?;
                loaded.cubes += 1;
            }
            Ok(loaded)
        }
    }

    /// Queries a server runs once at start so its first client's first query does not pay
    /// for the process's first planning, scan and encoding: `SELECT 1`, then per cube a point
    /// query on a coordinate no cube holds (every dimension equal to ''), which plans, prunes
    /// and opens the scan as a point query does without reading cells into any cache.
    pub fn warm_up_queries(&self) -> Vec<String> {
        let quoted = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        let cubes = self.cubes.all().into_iter().map(|cube| {
            let definition = cube.definition();
            let point = (definition.dimensions.iter())
                .map(|dimension| format!("{} = ''", quoted(dimension)))
                .collect::<Vec<_>>()
                .join(" AND ");
            format!(
                "SELECT * FROM cube.{} WHERE {point}",
                quoted(&definition.name)
            )
        });
        std::iter::once("SELECT 1".to_string())
            .chain(cubes)
            .collect()
    }

    /// The memory one session may hold for its statement ([`Engine::with_query_memory_limit`]).
    pub fn query_memory_limit(&self) -> Option<usize> {
        self.query_memory_limit
    }

    /// Where the data is kept, with the counts of its calls.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The cubes.
    pub fn cubes(&self) -> &Arc<CubeSchemaProvider> {
        &self.cubes
    }

    /// The ledger, unless the engine runs without one.
    pub fn ledger(&self) -> Option<&Arc<Ledger>> {
        self.ledger.as_ref()
    }

    /// The hot-tile cache.
    pub fn tiles(&self) -> &Arc<TileCache> {
        &self.tiles
    }

    /// The metadata store.
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    /// The epoch every session's [`plan_reuse::PlanCache`] follows; advance it after anything
    /// that may change what a query text means.
    pub fn plan_epoch(&self) -> &Arc<PlanEpoch> {
        &self.plan_epoch
    }
}

/// `session` with a memory pool of its own over `shared`'s object stores, caches and spill
/// files, holding at most `limit` bytes and naming its largest consumers when it is full: a
/// session under [`Engine::with_query_memory_limit`]. Without a limit, `session` unchanged.
pub fn with_memory_limit(
    session: SessionStateBuilder,
    shared: &Arc<RuntimeEnv>,
    limit: Option<usize>,
) -> SessionStateBuilder {
    let Some(limit) = limit else {
        return session;
    };
    let consumers_named = NonZeroUsize::new(3).expect("3 is not zero");
    let pool = TrackConsumersPool::new(GreedyMemoryPool::new(limit), consumers_named);
    session.with_runtime_env(runtime_with_pool(shared, Arc::new(pool)))
}

/// Session settings every Quantatom session starts with.
pub fn session_config() -> SessionConfig {
    // `information_schema` is registered as a schema of its own (see `information_schema`),
    // DataFusion's views plus PostgreSQL's constraint views.
    let mut config = SessionConfig::new()
        .with_information_schema(false)
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema(CATALOG, "public");
    let options = config.options_mut();
    // Clients speak PostgreSQL: parse its precedence rules (`a <@ b = c`) and literals.
    options.sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    // A number written with a point or an exponent is a `numeric`, as in PostgreSQL.
    options.sql_parser.parse_float_as_decimal = true;
    // Filter rows inside the Parquet decoder, not only prune row groups.
    options.execution.parquet.pushdown_filters = true;
    // `timestamptz` values carry a zone, as in PostgreSQL; `SET TIME ZONE` changes it.
    options.execution.time_zone = Some("UTC".to_owned());
    config
        .with_option_extension(PostgresSettings::default())
        .with_option_extension(QuantatomOptions::default())
}

async fn session_template(
    storage: &Storage,
    cubes: &Arc<CubeSchemaProvider>,
    metadata: &Arc<dyn MetadataStore>,
    ledger: Option<&Arc<Ledger>>,
    tiles: &Arc<TileCache>,
    file_metadata_bytes: usize,
) -> Result<SessionState> {
    let catalog = Arc::new(MemoryCatalogProvider::new());
    catalog.register_schema("public", Arc::new(MemorySchemaProvider::new()))?;
    catalog.register_schema("cube", Arc::clone(cubes) as _)?;
    catalog.register_schema(
        "dim",
        Arc::new(DimensionSchemaProvider::new(Arc::clone(metadata), Arc::clone(cubes) as _).await?),
    )?;
    catalog.register_schema(
        "calendar",
        Arc::new(CalendarSchemaProvider::new(Arc::clone(metadata))),
    )?;
    let system = MemorySchemaProvider::new();
    datafusion::catalog::SchemaProvider::register_table(
        &system,
        "cache".into(),
        Arc::new(CacheTable::new(
            Arc::clone(tiles),
            storage.byte_cache().cloned(),
        )),
    )?;
    catalog.register_schema("system", Arc::new(system))?;
    if let Some(ledger) = ledger {
        catalog.register_schema(
            "audit",
            Arc::new(AuditSchemaProvider::new(
                Arc::clone(ledger),
                Arc::clone(cubes),
            )),
        )?;
    }
    let catalogs = MemoryCatalogProviderList::new();
    let catalogs = Arc::new(catalogs);
    datafusion::catalog::CatalogProviderList::register_catalog(
        catalogs.as_ref(),
        CATALOG.into(),
        Arc::clone(&catalog) as _,
    );

    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(
            CacheManagerConfig::default().with_metadata_cache_limit(file_metadata_bytes),
        )
        .build_arc()?;
    storage.register(&runtime);
    // Cube writes check their cells' members (see `metadata::CoordinateCheck`).
    let mut config =
        session_config().with_extension(Arc::new(CoordinateCheck::new(Arc::clone(metadata))));
    // Commits are ledgered (see `quantatom_table_providers::ledger`).
    if let Some(ledger) = ledger {
        config = config.with_extension(Arc::clone(ledger));
    }
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_catalog_list(Arc::clone(&catalogs) as _)
        .with_default_features()
        // Before DataFusion's type coercion, which fits the expressions around the casts it types.
        .with_analyzer_rules(
            std::iter::once(Arc::new(quantatom_udfs::PostgresNumericRule) as _)
                .chain(datafusion::optimizer::Analyzer::new().rules)
                .collect(),
        )
        // Grids sum their cells before joining them to dimensions.
        .with_optimizer_rule(Arc::new(eager_aggregation::EagerAggregation))
        // Aggregates over a cube read its files' summaries (after eager aggregation, which
        // leaves a grid's cells summed below its joins).
        .with_optimizer_rule(Arc::new(summary_aggregation::SummaryAggregation))
        // Joins give their task back as their rows flow, so that cancel stops them.
        .with_physical_optimizer_rule(Arc::new(yielding_operators::YieldingOperators))
        .with_query_planner(Arc::new(TilePlanner::new(
            Arc::new(CubeJoinPlanner),
            Arc::clone(tiles),
        )))
        .build();
    for udf in quantatom_udfs::functions() {
        state.register_udf(udf)?;
    }
    for udaf in quantatom_udfs::aggregate_functions() {
        state.register_udaf(udaf)?;
    }
    state.register_udtf("mdf_at", Arc::new(MdfAtFunction::new(Arc::clone(cubes))));
    state.register_udtf(
        "mdf_history",
        Arc::new(MdfHistoryFunction::new(Arc::clone(cubes))),
    );
    state.register_udtf(
        "mdf_compact",
        Arc::new(MdfCompactFunction::new(Arc::clone(cubes))),
    );
    state.register_udtf(
        "mdf_copy",
        Arc::new(MdfCopyFunction::new(
            Arc::clone(cubes),
            Arc::clone(metadata),
        )),
    );
    state.register_udtf(
        "mdf_spread",
        Arc::new(MdfSpreadFunction::new(
            Arc::clone(cubes),
            Arc::clone(metadata),
        )),
    );
    state.register_udtf(
        "version_switchover",
        Arc::new(VersionSwitchoverFunction::new(Arc::clone(metadata))),
    );
    state.register_udtf(
        "mdf_vacuum",
        Arc::new(MdfVacuumFunction::new(Arc::clone(cubes))),
    );
    state.register_udf(Arc::new(CurrentSettingFunction::udf()))?;
    state.register_udf(Arc::new(VersionFunction::udf()))?;
    state.register_udf(Arc::new(ToRegtypeFunction::udf()))?;
    state.register_udf(Arc::new(TypeofFunction::udf()))?;
    state.register_udf(Arc::new(ExpandArrayFunction::udf()))?;
    for udf in IsVisibleFunction::udfs()
        .into_iter()
        .chain(FixedAnswerFunction::udfs())
    {
        state.register_udf(Arc::new(udf))?;
    }
    let information_schema = InformationSchemaProvider::new(catalogs)
        .with_table_functions(state.table_functions().clone());
    catalog.register_schema(
        "information_schema",
        Arc::new(PostgresInformationSchema::new(information_schema)),
    )?;
    // Before the path operators: `@>` and `<@` on `jsonb` are JSON's.
    state.register_expr_planner(Arc::new(quantatom_udfs::JsonOperatorPlanner))?;
    state.register_expr_planner(Arc::new(quantatom_udfs::LtreeOperatorPlanner))?;
    state.register_expr_planner(Arc::new(quantatom_udfs::IntervalArithmeticPlanner))?;
    state.add_analyzer_rule(Arc::new(quantatom_udfs::LikeEscapeRule));
    state.add_analyzer_rule(Arc::new(quantatom_udfs::InputFunctionRule));
    state.add_analyzer_rule(Arc::new(quantatom_udfs::DatetimeTextRule));
    // After DataFusion's type coercion, whose casts to text it rewrites too.
    state.add_analyzer_rule(Arc::new(quantatom_udfs::TemporalTextRule));
    state.add_analyzer_rule(Arc::new(scalar_subqueries::ScalarSubqueryRule));
    // Before the DML rules rewrite writes: it checks the statement as its user wrote it.
    state.add_analyzer_rule(Arc::new(access_rule::EnforceAccess));
    state.add_analyzer_rule(Arc::new(CubeDmlRule));
    state.add_analyzer_rule(Arc::new(MemberDmlRule));
    // Last: it decides on the plan the others made (see `tiles::TileCandidate`).
    state.add_analyzer_rule(Arc::new(MarkTileCandidates));
    Ok(state)
}
