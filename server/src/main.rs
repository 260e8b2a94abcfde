//! The `quantatom` binary: `quantatom serve`, `demo`, `compact`, `vacuum`, `ledger verify` and
//! `bench generate`.

use std::process::ExitCode;

use clap::Parser;
use quantatom_engine::bench_model::{self, Profile};
use quantatom_engine::demo::DemoSize;
use quantatom_engine::mdf::MdfTable;
use quantatom_engine::mdf::maintenance::{
    self, CompactionScope, DEFAULT_RETENTION, ORPHAN_MIN_AGE, Progress,
};
use quantatom_engine::metadata::{AccessChange, MetadataStore, Role, ScramVerifier, change_access};
use quantatom_engine::storage::StorageConfig;
use quantatom_engine::{Engine, EngineConfig, OpenError};
use quantatom_server::Server;
use quantatom_server::admin::AdminListener;
use quantatom_server::config::{
    ADMIN_PASSWORD_VARIABLE, AdminLogin, BenchCommand, BenchProfile, Cli, Command, CompactionArgs,
    CubeArgs, DEFAULT_DATA_DIR, DEFAULT_DEMO_CELLS, DemoArgs, GenerateArgs, LedgerCommand,
    ServeArgs, StorageArgs, VacuumArgs,
};
use quantatom_server::telemetry::Telemetry;

/// jemalloc, whose per-thread caches hand a freed block back to the next allocation of its size
/// on the same thread. Under mimalloc 3, which reuses a page's freed blocks only once its free
/// list runs out, a one-row query's allocations each landed on a block no longer in cache: with
/// 64 pgbench clients that one load was a fifth of the server's user time, and prepared one-row
/// and point queries ran 15-60% faster under jemalloc or glibc's malloc. jemalloc also committed
/// cells faster than either and gave an idle server's memory back to the system
/// (docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Turns transparent huge pages off for this process, as PostgreSQL's and Redis's operators
/// are told to for the whole machine: where the kernel backs large mappings with them, a query's
/// first touch of fresh memory zeroes 2 MiB instead of 4 KiB, which made a fresh server's point
/// queries take up to 10 ms instead of 4 (docs/caching.md). Nothing else changes if the kernel
/// refuses.
#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// Raises this process's soft limit on open files to its hard limit, as Go's runtime does at
/// start: each connection holds its socket and its own event loop's descriptors
/// (docs/configuration.md, "Connections and threads"), so the soft limit many shells give
/// (1024) would refuse clients long before `--max-connections`.
#[cfg(unix)]
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the plain struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    disable_transparent_huge_pages();
    #[cfg(unix)]
    raise_open_files_limit();
    let cli = Cli::parse();
    // Installed before the runtime and shut down after it, so that every span is exported.
    let telemetry = match Telemetry::install(
        cli.log_format.unwrap_or_default(),
        cli.otlp_endpoint.as_deref(),
    ) {
        Ok(telemetry) => telemetry,
        Err(message) => {
            eprintln!("quantatom: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("quantatom: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Demo(args) => write_demo(args).await,
            Command::Compact(args) => compact_cube(args).await,
            Command::Vacuum(args) => vacuum_cube(args).await,
            Command::Ledger(LedgerCommand::Verify(args)) => verify_ledger(args).await,
            Command::Bench(BenchCommand::Generate(args)) => generate_bench(args).await,
        }
    });
    drop(runtime);
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("quantatom: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let ledger = !args.no_ledger;
    if !ledger {
        tracing::warn!("running without the ledger: changes are not audited");
    }
    let config = args.resolve().map_err(|e| e.to_string())?;
    let location = config.storage.location();
    let engine = Engine::open(&EngineConfig {
        storage: config.storage.clone(),
        demo_cells: config.demo_cells,
        ledger,
        metadata: config.metadata.clone(),
        caches: config.caches.clone(),
        compaction: config.compaction,
    })
    .await
    .map_err(|e| match e {
        OpenError::Metadata(e) => {
            format!("cannot open the metadata store (setting `metadata`): {e}")
        }
        OpenError::Data(e) => {
            format!("cannot open the data at {location} (setting `data_dir`): {e}")
        }
    })?
    .with_query_memory_limit(config.query_memory_limit);
    if let Some(admin) = &config.security.admin {
        ensure_admin(engine.metadata().as_ref(), admin).await?;
    }
    let server = Server::bind_secured(&engine, config.listen, config.security.server.clone())
        .await
        .map(|server| {
            server
                .with_limits(config.limits)
                .with_idle_poll(config.idle_poll)
                .with_query_log(config.query_log)
        })
        .map_err(|e| format!("cannot listen on {} (setting `listen`): {e}", config.listen))?;
    let admin = AdminListener::bind(config.admin_listen, &engine, server.observed())
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {} (setting `admin_listen`): {e}",
                config.admin_listen
            )
        })?;
    let address = server.local_addr().map_err(|e| e.to_string())?;
    let footers = engine.load_footers();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match footers.await {
            Ok(loaded) => tracing::info!(
                cubes = loaded.cubes,
                files = loaded.files,
                ms = started.elapsed().as_millis() as u64,
                "data file footers loaded"
            ),
            Err(error) => {
                tracing::warn!(%error, "data file footers could not be loaded ahead of queries")
            }
        }
    });
    let started = std::time::Instant::now();
    match server.warm_up(&engine.warm_up_queries()).await {
        Ok(_) => tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "warmed up: the first queries' one-time work is done"
        ),
        Err(error) => tracing::warn!(%error, "the warm-up queries failed"),
    }
    tracing::info!(%address, admin = %config.admin_listen, data = %location, "quantatom is ready: psql -h {} -p {}", address.ip(), address.port());
    // One signal stops both listeners; the wire server drains its connections first.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stopped| *stopped).await;
    };
    let admin = tokio::spawn(admin.run_until(until_stopped(stopping.clone())));
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    server
        .run_until(until_stopped(stopping))
        .await
        .map_err(|e| e.to_string())?;
    let _ = admin.await;
    tracing::info!("quantatom stopped");
    Ok(())
}

/// Makes `admin` an administrator that can log in with its password: created when missing,
/// its password replaced when it is not the one given.
async fn ensure_admin(store: &dyn MetadataStore, admin: &AdminLogin) -> Result<(), String> {
    let (access, _) = store
        .access()
        .await
        .map_err(|e| format!("cannot read the users: {e}"))?;
    let change = match access.roles.get(&admin.user) {
        Some(role)
            if role.is_admin
                && role.can_login
                && role
                    .password_verifier
                    .as_deref()
                    .and_then(ScramVerifier::parse)
                    .is_some_and(|verifier| verifier.matches(&admin.password)) =>
        {
            return Ok(());
        }
        existing => {
            let role = Role {
                name: admin.user.clone(),
                can_login: true,
                is_admin: true,
                password_verifier: Some(ScramVerifier::hash(&admin.password)),
            };
            match existing {
                Some(_) => AccessChange::AlterRole(role),
                None => AccessChange::CreateRole(role),
            }
        }
    };
    change_access(store, vec![change])
        .await
        .map_err(|e| format!("cannot set up the administrator {:?}: {e}", admin.user))?;
    tracing::info!(user = %admin.user, "administrator set up from {ADMIN_PASSWORD_VARIABLE}");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

async fn write_demo(args: DemoArgs) -> Result<(), String> {
    let data_dir = args.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    refuse_non_empty(&data_dir, "the demo")?;
    let size = DemoSize::with_cells(args.cells.unwrap_or(DEFAULT_DEMO_CELLS));
    let started = std::time::Instant::now();
    Engine::open(&local_folder(&data_dir, Some(size.cells())))
        .await
        .map_err(|e| format!("cannot write the demo into {}: {e}", data_dir.display()))?;
    println!(
        "wrote the demo model ({} cells in cube.finance, {} products) to {} in {:.1}s",
        size.cells(),
        size.products,
        data_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The engine over the local folder `data_dir` (embedded metadata, the ledger on), loading a
/// demo of about `demo_cells` cells when it is empty.
fn local_folder(data_dir: &std::path::Path, demo_cells: Option<usize>) -> EngineConfig {
    EngineConfig {
        storage: StorageConfig::Local(data_dir.to_owned()),
        demo_cells,
        ledger: true,
        metadata: Default::default(),
        caches: Default::default(),
        compaction: Default::default(),
    }
}

/// Fails when `folder` exists and holds anything: `what` goes into a new folder.
fn refuse_non_empty(folder: &std::path::Path, what: &str) -> Result<(), String> {
    let not_empty = std::fs::read_dir(folder)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    match not_empty {
        true => Err(format!(
            "folder {} is not empty; {what} goes into a new folder",
            folder.display()
        )),
        false => Ok(()),
    }
}

/// `quantatom bench generate`: the planning benchmark's model in `OUT/data` (local folder,
/// embedded metadata), and `OUT/bench.json`.
async fn generate_bench(args: GenerateArgs) -> Result<(), String> {
    refuse_non_empty(&args.out, "the benchmark model")?;
    let data_dir = args.out.join("data");
    let profile = match args.profile {
        BenchProfile::Ci => Profile::Ci,
        BenchProfile::S => Profile::S,
        BenchProfile::M => Profile::M,
    };
    let started = std::time::Instant::now();
    let engine = Engine::open(&local_folder(&data_dir, None))
        .await
        .map_err(|e| format!("cannot open {}: {e}", data_dir.display()))?;
    let bar = styled_bar();
    bar.set_message("cells");
    let shown = bar.clone();
    let report = move |written: usize, total: usize| {
        shown.set_length(total as u64);
        shown.set_position(written as u64);
    };
    let model = bench_model::load(engine.cubes(), engine.metadata().as_ref(), profile, &report)
        .await
        .map_err(|e| {
            format!(
                "cannot write the benchmark model into {}: {e}",
                data_dir.display()
            )
        })?;
    bar.finish_and_clear();
    let description = args.out.join("bench.json");
    let json = serde_json::to_string_pretty(&model).expect("the model serialises");
    std::fs::write(&description, json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", description.display()))?;
    println!(
        "wrote the {:?} benchmark model ({} cells in cube.{}) to {} in {:.1}s",
        args.profile,
        model.cells,
        model.cube,
        data_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Opens the data `args` names, without loading a demo; its cubes compacted by `compaction`.
async fn open_data(args: StorageArgs, compaction: CompactionArgs) -> Result<Engine, String> {
    let (storage, compaction) = args
        .resolve_with_compaction(compaction)
        .map_err(|e| e.to_string())?;
    let location = storage.location();
    Engine::open(&EngineConfig {
        storage,
        demo_cells: None,
        ledger: true,
        metadata: Default::default(),
        caches: Default::default(),
        compaction,
    })
    .await
    .map_err(|e| format!("cannot open the data at {location} (setting `data_dir`): {e}"))
}

/// `quantatom ledger verify`: the chain, every file's hash, and a ledger entry for every
/// committed change (ledgering any not ledgered yet, as the server does when it starts).
async fn verify_ledger(args: StorageArgs) -> Result<(), String> {
    let engine = open_data(args, CompactionArgs::default()).await?;
    let ledger = engine.ledger().expect("opened with the ledger");
    let session = engine.new_session().state();
    let verification = ledger
        .verify(&engine.cubes().all(), &session)
        .await
        .map_err(|e| format!("cannot read the ledger: {e}"))?;
    match verification.broken {
        None => {
            println!(
                "ledger intact: {} entries in {} files, head {}",
                verification.entries, verification.files, verification.head
            );
            Ok(())
        }
        Some(broken) => Err(format!(
            "ledger broken after {} intact entries: {broken}",
            verification.entries
        )),
    }
}

/// Opens the data `args` names (without loading a demo) and the cube it names.
async fn open_cube(args: CubeArgs) -> Result<(Engine, std::sync::Arc<MdfTable>), String> {
    let location = args
        .storage
        .data_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    let engine = open_data(args.storage, args.compaction).await?;
    let name = args.cube.strip_prefix("cube.").unwrap_or(&args.cube);
    let cube = engine
        .cubes()
        .cube(name)
        .ok_or_else(|| format!("there is no cube {name:?} in {location}"))?;
    Ok((engine, cube))
}

/// A progress bar on standard error (drawn only on a terminal): its message, a bar, done of
/// total and the time left.
fn styled_bar() -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {human_pos}/{human_len} ({eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    )
}

/// A progress bar ([`styled_bar`]) following `Progress` reports.
fn progress_bar() -> (indicatif::ProgressBar, impl Fn(Progress) + Send + Sync) {
    let bar = styled_bar();
    let shown = bar.clone();
    let report = move |progress: Progress| match progress {
        Progress::Merging { done, total } => {
            shown.set_message("merging");
            shown.set_length(total);
            shown.set_position(done);
        }
        Progress::Committing => shown.set_message("committing"),
        Progress::Deleting { done, total } => {
            shown.set_message("deleting");
            shown.set_length(total);
            shown.set_position(done);
        }
    };
    (bar, report)
}

/// The user maintenance commits are recorded under: the operating-system user.
fn os_user() -> Option<String> {
    std::env::var("USER").ok().filter(|user| !user.is_empty())
}

async fn compact_cube(args: CubeArgs) -> Result<(), String> {
    let (engine, cube) = open_cube(args).await?;
    let (bar, report) = progress_bar();
    let session = engine.new_session().state();
    let compacted =
        maintenance::compact(&cube, &session, CompactionScope::Full, os_user(), &report)
            .await
            .map_err(|e| format!("compaction failed: {e}"))?;
    bar.finish_and_clear();
    let name = &cube.definition().name;
    match compacted.version {
        Some(version) => println!(
            "compacted cube {name}: {} files into {}, {} cells, committed as version {version}",
            compacted.files_removed, compacted.files_added, compacted.cells
        ),
        None => println!("cube {name} has nothing to compact"),
    }
    Ok(())
}

async fn vacuum_cube(args: VacuumArgs) -> Result<(), String> {
    let retention = args.retention.unwrap_or(DEFAULT_RETENTION);
    let (_engine, cube) = open_cube(args.target).await?;
    let (bar, report) = progress_bar();
    let vacuumed = maintenance::vacuum(&cube, retention, ORPHAN_MIN_AGE, &report)
        .await
        .map_err(|e| format!("vacuum failed: {e}"))?;
    bar.finish_and_clear();
    println!(
        "vacuumed cube {}: deleted {} files, {} bytes",
        cube.definition().name,
        vacuumed.files_deleted,
        vacuumed.bytes_deleted
    );
    Ok(())
}
