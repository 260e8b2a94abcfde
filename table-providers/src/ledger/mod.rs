//! The entropy ledger: an append-only, hash-chained record of every committed change to a
//! cube's cells, queryable as `audit.*` (see [`audit`]) and checked by
//! `quantatom ledger verify` (see `docs/mdf.md`, "The ledger").
//!
//! The ledger is an MDF table of its own under `ledger/` in the same store: a log of `append`
//! entries, each adding one Parquet file of ledger entries (one row per changed cell). Each row
//! carries the hash of the row before it and its own hash over both, so a changed, removed or
//! reordered row breaks the chain; each file's SHA-256 is in its log entry, so any changed
//! byte is found even where no row would read differently. Nothing rewrites or compacts it.
//!
//! A cube commit is the one atomic step of a write: its log entry already holds everything its
//! ledger rows say (who, when, the statement, the files with the new values, the version, whose
//! predecessor holds the old values). The ledger rows are derived from committed entries only
//! and appended right after the commit; any commit not yet ledgered (the process died between
//! the two) is ledgered before the ledger is read (`audit.*`, verification) and when the
//! engine starts. So no ledger entry describes a change that did not commit, and no committed
//! change is missing from the ledger as anyone reads it. Each file of the ledger names, in its
//! bounds, the cube and the range of the cube's versions it covers, which is how the ledger
//! knows what it holds.

pub mod audit;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{col, lit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_plan::collect;
use object_store::path::Path;
use sha2::{Digest, Sha256};

use crate::fail_point::fail_point;
use crate::mdf::log::LogEntry;
use crate::mdf::writer::{conform, file_bytes, file_location, read_data_file, read_parquet};
use crate::mdf::{
    Action, CellBounds, Change, CubeDefinition, CubeLog, DataFile, FileKind, MdfError, MdfTable,
    Snapshot, SnapshotVersion,
};
use crate::metadata::{Member, MemberCommit, MetadataStore};
use crate::storage::{CommitEvent, Storage};

/// The hash the first entry follows.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The most rows in a data page of a ledger file.
const LEDGER_PAGE_ROWS: usize = 2048;

/// How many times an append that lost its version race to another process is rebuilt.
const APPEND_ATTEMPTS: usize = 100;

/// The columns of the ledger, in order (`audit.ledger`).
pub fn ledger_schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        text("kind", false),
        text("source", false),
        Field::new("source_version", DataType::Int64, false),
        Field::new(
            "committed_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        text("user_name", true),
        text("statement_id", true),
        text("statement", true),
        text("operation", false),
        text("item", false),
        text("old_value", true),
        text("new_value", true),
        text("prev_hash", false),
        text("hash", false),
    ]))
}

/// The ledger of one store.
#[derive(Debug)]
pub struct Ledger {
    storage: Storage,
    log: CubeLog,
    /// The dimensions' store, whose member history the ledger records.
    metadata: Arc<dyn MetadataStore>,
    /// Held while this process appends, with the head it appended last.
    appending: tokio::sync::Mutex<Option<Head>>,
}

/// The end of the chain: the ledger version holding it, its hash and the next entry's number.
#[derive(Debug, Clone)]
struct Head {
    ledger_version: SnapshotVersion,
    hash: String,
    next_seq: i64,
}

/// What one commit changed, as ledger rows share it.
struct CommitRows {
    kind: &'static str,
    source_version: i64,
    committed_at_ms: i64,
    user: Option<String>,
    statement_id: Option<String>,
    statement: Option<String>,
    operation: &'static str,
    /// Per change: the item (a cell's coordinate), its old and its new value.
    changes: Vec<(String, Option<String>, Option<String>)>,
}

/// The source a cube's rows name.
fn cube_source(cube: &str) -> String {
    format!("cube/{cube}")
}

/// A version as the bounds of a ledger file hold it: 20 digits, so text order is number order.
fn padded(version: u64) -> String {
    format!("{version:020}")
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The SHA-256 of `bytes`, in hex.
fn sha256_hex(bytes: &[u8]) -> String {
    hex(Sha256::digest(bytes).as_slice())
}

/// A row's hash: SHA-256 over the previous row's hash and every other field of the row, each
/// as `<byte length>:<text>` (`-` for NULL), in the schema's order.
fn row_hash(prev_hash: &str, fields: &[Option<&str>]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    for field in fields {
        match field {
            Some(text) => {
                hasher.update(text.len().to_string().as_bytes());
                hasher.update(b":");
                hasher.update(text.as_bytes());
            }
            None => hasher.update(b"-"),
        }
    }
    hex(hasher.finalize().as_slice())
}

/// The last cube version of `source` the ledger at `snapshot` covers, if any: the one its
/// newest file of `source` ends with, since each append covers the versions after the last
/// one ledgered and nothing reorders the ledger's files (so a ledger of many commits is not
/// read through for every new one).
fn ledgered_up_to(snapshot: &Snapshot, source: &str) -> Option<u64> {
    snapshot
        .files
        .iter()
        .rev()
        .filter_map(|file| file.bounds.as_ref())
        .filter(|bounds| bounds.min.first().map(String::as_str) == Some(source))
        .find_map(|bounds| bounds.max.get(1)?.parse::<u64>().ok())
}

impl Ledger {
    /// The ledger kept under `ledger/` in `storage`, of the cubes there and the dimensions
    /// in `metadata`.
    pub fn new(storage: Storage, metadata: Arc<dyn MetadataStore>) -> Self {
        let log = CubeLog::in_folder(storage.clone(), storage.path(&["ledger"]));
        Self {
            storage,
            log,
            metadata,
            appending: tokio::sync::Mutex::new(None),
        }
    }

    /// The folder the ledger is kept in.
    pub fn dir(&self) -> &Path {
        self.log.cube_dir()
    }

    /// The store the ledger is kept in.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The ledger's latest snapshot; creates the ledger when there is none yet.
    pub(crate) async fn snapshot(&self) -> Result<Arc<Snapshot>, MdfError> {
        match self.log.latest().await {
            Err(MdfError::NotFound(_)) => {
                let definition = CubeDefinition {
                    name: "ledger".into(),
                    dimensions: vec!["source".into(), "source_version".into()],
                    measures: Vec::new(),
                };
                match self.log.create(definition).await {
                    Ok(()) | Err(MdfError::AlreadyExists(_)) => self.log.latest().await,
                    Err(error) => Err(error),
                }
            }
            other => other,
        }
    }

    /// Ledgers every commit of each of `cubes`, and every change of a dimension's members,
    /// not ledgered yet.
    pub async fn catch_up(&self, cubes: &[Arc<MdfTable>], session: &dyn Session) -> Result<()> {
        for cube in cubes {
            self.record_cube(cube, session).await?;
        }
        for dimension in self.metadata.dimensions().await? {
            self.record_dimension(&dimension.name).await?;
        }
        Ok(())
    }

    /// Ledgers the commits of `cube` not ledgered yet, as one append (none when there are
    /// none); `session` reads the cells' old values.
    pub async fn record_cube(&self, cube: &MdfTable, session: &dyn Session) -> Result<()> {
        let mut head = self.appending.lock().await;
        let source = cube_source(&cube.definition().name);
        for _ in 0..APPEND_ATTEMPTS {
            let ledger = self.snapshot().await?;
            let first = ledgered_up_to(&ledger, &source).map_or(1, |done| done + 1);
            let snapshot = cube.log().latest().await?;
            let latest = snapshot.version.0;
            if first > latest {
                return Ok(());
            }
            let started = std::time::Instant::now();
            let mut commits = Vec::new();
            for version in first..=latest {
                let entry = cube.log().read_entry(SnapshotVersion(version)).await?;
                commits.push(commit_rows(cube, &snapshot, &entry, session).await?);
            }
            let derived = started.elapsed();
            if self
                .append(&ledger, &mut head, &source, (first, latest), &commits)
                .await?
            {
                tracing::debug!(%source, first, latest, ?derived, appended = ?started.elapsed() - derived, "ledgered");
                return Ok(());
            }
        }
        Err(MdfError::CommitContention(APPEND_ATTEMPTS).into())
    }

    /// Ledgers the changes of `dimension`'s members not ledgered yet, from the history its
    /// store records with each change.
    pub async fn record_dimension(&self, dimension: &str) -> Result<()> {
        let mut head = self.appending.lock().await;
        let source = format!("dimension/{dimension}");
        for _ in 0..APPEND_ATTEMPTS {
            let ledger = self.snapshot().await?;
            let first = ledgered_up_to(&ledger, &source).map_or(1, |done| done + 1);
            let latest = self.metadata.dimension_version(dimension).await?;
            if first > latest {
                return Ok(());
            }
            let history = self.metadata.member_history(dimension, first - 1).await?;
            let commits = history
                .into_iter()
                .map(member_rows)
                .collect::<Result<Vec<_>, _>>()?;
            if self
                .append(&ledger, &mut head, &source, (first, latest), &commits)
                .await?
            {
                return Ok(());
            }
        }
        Err(MdfError::CommitContention(APPEND_ATTEMPTS).into())
    }

    /// Appends the rows of `commits` (covering `source`'s `versions`) after `ledger`, the
    /// latest snapshot read; `false` when another process appended first.
    async fn append(
        &self,
        ledger: &Snapshot,
        head: &mut Option<Head>,
        source: &str,
        versions: (u64, u64),
        commits: &[CommitRows],
    ) -> Result<bool> {
        let start = self.head(ledger, head.as_ref()).await?;
        let (batch, end) = rows_batch(source, commits, &start)?;
        let file = self
            .write_file(&batch, source, versions.0, versions.1)
            .await?;
        fail_point("ledger.before_log_write");
        let change = Change {
            action: Action::Append { add: vec![file] },
            read_version: None,
            user: None,
            statement: None,
        };
        let Some(version) = self.log.commit_next(ledger, change).await? else {
            return Ok(false);
        };
        let entries = batch.num_rows() as u64;
        self.storage
            .commits()
            .count(CommitEvent::LedgerAppend { entries });
        fail_point("ledger.after_log_write");
        *head = Some(Head {
            ledger_version: version,
            ..end
        });
        Ok(true)
    }

    /// The head of the ledger at `ledger`: the one this process appended when it is still
    /// the latest, else read from the last file holding rows.
    async fn head(&self, ledger: &Snapshot, known: Option<&Head>) -> Result<Head, MdfError> {
        if let Some(known) = known
            && known.ledger_version == ledger.version
        {
            return Ok(known.clone());
        }
        let Some(last) = ledger.files.iter().rev().find(|file| file.rows > 0) else {
            return Ok(Head {
                ledger_version: ledger.version,
                hash: GENESIS.into(),
                next_seq: 0,
            });
        };
        let batches = read_data_file(&self.storage, self.dir(), last).await?;
        let batch = batches
            .iter()
            .rev()
            .find(|batch| batch.num_rows() > 0)
            .ok_or_else(|| MdfError::Corrupt(format!("ledger file {} has no rows", last.path)))?;
        let row = batch.num_rows() - 1;
        let seq = int64_column(batch, "seq")?.value(row);
        let hash = text_column(batch, "hash")?.value(row).to_owned();
        Ok(Head {
            ledger_version: ledger.version,
            hash,
            next_seq: seq + 1,
        })
    }

    /// Stores `batch` as a new ledger file covering `source`'s versions `first..=last`.
    async fn write_file(
        &self,
        batch: &RecordBatch,
        source: &str,
        first: u64,
        last: u64,
    ) -> Result<DataFile, MdfError> {
        // Small pages: with the page index, a cell's history reads one page of each file.
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_data_page_row_count_limit(LEDGER_PAGE_ROWS)
            .build();
        let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties))?;
        writer.write(batch)?;
        let bytes = writer.into_inner()?;
        let name = format!("data/{}.parquet", uuid::Uuid::new_v4().simple());
        let location = Path::from(format!("{}/{name}", self.dir()));
        let file = DataFile {
            path: name,
            size: bytes.len() as u64,
            rows: batch.num_rows() as u64,
            kind: FileKind::Cells,
            seq: None,
            bounds: Some(CellBounds {
                min: vec![source.to_owned(), padded(first)],
                max: vec![source.to_owned(), padded(last)],
            }),
            sha256: Some(sha256_hex(&bytes)),
            summary: None,
            marks: Default::default(),
        };
        self.storage.put_if_absent(&location, bytes).await?;
        Ok(file)
    }

    /// Checks the whole ledger (see [`Verification`]) after ledgering any change of `cubes`
    /// and of the dimensions not ledgered yet.
    pub async fn verify(
        &self,
        cubes: &[Arc<MdfTable>],
        session: &dyn Session,
    ) -> Result<Verification> {
        if let Err(error) = self.catch_up(cubes, session).await {
            return Ok(Verification::broken(format!(
                "the ledger could not be brought up to date: {error}"
            )));
        }
        let ledger = match self.snapshot().await {
            Ok(ledger) => ledger,
            Err(error) => {
                return Ok(Verification::broken(format!(
                    "the ledger's log cannot be read: {error}"
                )));
            }
        };
        let mut verification = Verification {
            entries: 0,
            files: ledger.files.len(),
            head: GENESIS.into(),
            broken: None,
        };
        let mut covered: HashMap<String, u64> = HashMap::new();
        for file in ledger.files.iter() {
            if let Some(broken) = self
                .verify_file(file, &mut verification, &mut covered)
                .await
            {
                verification.broken = Some(broken);
                return Ok(verification);
            }
        }
        let mut committed = Vec::with_capacity(cubes.len());
        for cube in cubes {
            let latest = cube.log().latest_version().await?.0;
            committed.push((cube_source(&cube.definition().name), latest));
        }
        for dimension in self.metadata.dimensions().await? {
            let version = self.metadata.dimension_version(&dimension.name).await?;
            committed.push((format!("dimension/{}", dimension.name), version));
        }
        for (source, latest) in committed {
            let done = covered.get(&source).copied().unwrap_or(0);
            if done < latest {
                verification.broken = Some(format!(
                    "{source}: versions {} to {latest} are committed but not in the ledger",
                    done + 1
                ));
                return Ok(verification);
            }
        }
        Ok(verification)
    }

    /// Checks one ledger file and its rows, continuing `verification`'s chain; the first
    /// break found, if any.
    async fn verify_file(
        &self,
        file: &DataFile,
        verification: &mut Verification,
        covered: &mut HashMap<String, u64>,
    ) -> Option<String> {
        let location = file_location(self.dir(), file);
        let bytes = match file_bytes(&self.storage, self.dir(), file).await {
            Ok(bytes) => bytes,
            Err(error) => return Some(format!("ledger file {location}: {error}")),
        };
        let digest = sha256_hex(&bytes);
        if file.sha256.as_deref() != Some(digest.as_str()) {
            return Some(format!(
                "ledger file {location} was changed after it was written: its SHA-256 is {digest}, its log entry says {}",
                file.sha256.as_deref().unwrap_or("nothing")
            ));
        }
        if let Some(bounds) = &file.bounds {
            let (source, first, last) = (
                bounds.min[0].clone(),
                bounds.min[1].parse::<u64>().unwrap_or(0),
                bounds.max[1].parse::<u64>().unwrap_or(0),
            );
            let expected = covered.get(&source).map_or(1, |done| done + 1);
            if first != expected {
                return Some(format!(
                    "ledger file {location} covers {source} versions {first} to {last}, but the ledger before it ends at version {}",
                    expected - 1
                ));
            }
            covered.insert(source, last);
        }
        let batches = match read_parquet(bytes) {
            Ok(batches) => batches,
            Err(error) => return Some(format!("ledger file {location} cannot be read: {error}")),
        };
        for batch in &batches {
            if let Err(error) = verify_rows(batch, verification) {
                return Some(format!("ledger file {location}: {error}"));
            }
            if verification.broken.is_some() {
                return verification.broken.take();
            }
        }
        None
    }
}

/// Checks the rows of `batch` against the chain so far, advancing it; sets
/// `verification.broken` at the first row that does not follow.
fn verify_rows(batch: &RecordBatch, verification: &mut Verification) -> Result<(), MdfError> {
    let schema = ledger_schema();
    let batch = conform(batch, &schema)?;
    for row in 0..batch.num_rows() {
        let seq = int64_column(&batch, "seq")?.value(row);
        let prev_hash = text_column(&batch, "prev_hash")?.value(row);
        let hash = text_column(&batch, "hash")?.value(row);
        let fields = row_fields(&batch, row)?;
        let fields: Vec<Option<&str>> = fields.iter().map(Option::as_deref).collect();
        let expected = row_hash(&verification.head, &fields);
        let problem = if seq != verification.entries as i64 {
            Some(format!(
                "entry {seq} stands where entry {} should",
                verification.entries
            ))
        } else if prev_hash != verification.head {
            Some(format!(
                "entry {seq} does not follow the entry before it (its previous hash is {prev_hash}, the chain's is {})",
                verification.head
            ))
        } else if hash != expected {
            Some(format!(
                "entry {seq} was changed: its content hashes to {expected}, it says {hash}"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            verification.broken = Some(problem);
            return Ok(());
        }
        verification.head = hash.to_owned();
        verification.entries += 1;
    }
    Ok(())
}

/// The fields of `batch`'s `row` that its hash covers, as text, in the schema's order.
fn row_fields(batch: &RecordBatch, row: usize) -> Result<Vec<Option<String>>, MdfError> {
    let schema = ledger_schema();
    let mut fields = Vec::with_capacity(12);
    for field in schema.fields().iter().take(12) {
        let column = batch.column_by_name(field.name()).ok_or_else(|| {
            MdfError::Corrupt(format!("a ledger file has no {} column", field.name()))
        })?;
        fields.push(match column.is_null(row) {
            true => None,
            false => Some(match column.data_type() {
                DataType::Timestamp(..) => column
                    .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>()
                    .value(row)
                    .to_string(),
                _ => array_value_to_string(column, row)?,
            }),
        });
    }
    Ok(fields)
}

fn int64_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int64Array, MdfError> {
    batch
        .column_by_name(name)
        .and_then(|column| column.as_primitive_opt())
        .ok_or_else(|| MdfError::Corrupt(format!("a ledger file has no {name} column")))
}

fn text_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, MdfError> {
    batch
        .column_by_name(name)
        .and_then(|column| column.as_string_opt())
        .ok_or_else(|| MdfError::Corrupt(format!("a ledger file has no {name} column")))
}

/// The outcome of [`Ledger::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries checked (all of them when the ledger is intact).
    pub entries: u64,
    /// Ledger files.
    pub files: usize,
    /// The hash of the last entry checked.
    pub head: String,
    /// The first break found: where, and what is wrong.
    pub broken: Option<String>,
}

impl Verification {
    fn broken(problem: String) -> Self {
        Self {
            entries: 0,
            files: 0,
            head: GENESIS.into(),
            broken: Some(problem),
        }
    }
}

/// The ledger rows of one commit of `cube`: a row per cell its files write, with the cell's
/// value before (at the version before) and after; a load without a statement (the engine's
/// bulk API) as one row per file, pinned by the file's SHA-256. Other commits (compaction)
/// change no cell and give no rows. `latest` is the cube's latest snapshot, which the old
/// values are worked out from.
async fn commit_rows(
    cube: &MdfTable,
    latest: &Snapshot,
    entry: &LogEntry,
    session: &dyn Session,
) -> Result<CommitRows> {
    let operation = entry.action.operation().name();
    let statement = entry.statement.as_ref();
    let mut rows = CommitRows {
        kind: "cell",
        source_version: entry.version.0 as i64,
        committed_at_ms: entry.timestamp_ms as i64,
        user: entry.user.clone(),
        statement_id: statement.map(|s| s.id.clone()),
        statement: statement.map(|s| s.text.clone()),
        operation,
        changes: Vec::new(),
    };
    let files = match &entry.action {
        Action::Append { add } | Action::Update { add } | Action::Delete { add } => add,
        Action::Create { .. } | Action::Compact { .. } => return Ok(rows),
    };
    if statement.is_none() && matches!(entry.action, Action::Append { .. }) {
        rows.operation = "load";
        for file in files {
            let bytes = file_bytes(cube.storage(), cube.log().cube_dir(), file).await?;
            rows.changes.push((
                file.path.clone(),
                None,
                Some(format!(
                    "{} cells, SHA-256 {}",
                    file.rows,
                    sha256_hex(&bytes)
                )),
            ));
        }
        return Ok(rows);
    }
    let definition = cube.definition();
    let schema = definition.arrow_schema();
    let dimensions = definition.dimensions.len();
    let mut written = Vec::new();
    for file in files {
        for batch in read_data_file(cube.storage(), cube.log().cube_dir(), file).await? {
            written.push((conform(&batch, &schema)?, file.kind == FileKind::Tombstones));
        }
    }
    // The box of every coordinate written (unbounded when a file does not say).
    let written_bounds = files
        .iter()
        .map(|file| file.bounds.clone())
        .reduce(|a, b| Some(a?.union(&b?)))
        .flatten();
    let before = old_cells(
        cube,
        latest,
        entry.version,
        &written,
        written_bounds,
        session,
    )
    .await?;
    let converter = RowConverter::new(
        schema.fields()[..dimensions]
            .iter()
            .map(|field| SortField::new(field.data_type().clone()))
            .collect(),
    )?;
    let mut old_values: HashMap<Vec<u8>, String> = HashMap::new();
    for batch in &before {
        let keys = converter.convert_columns(&batch.columns()[..dimensions])?;
        for (row, key) in keys.iter().enumerate() {
            old_values.insert(
                key.as_ref().to_vec(),
                measures_text(batch, dimensions, row)?,
            );
        }
    }
    for (batch, tombstones) in &written {
        let keys = converter.convert_columns(&batch.columns()[..dimensions])?;
        for (row, key) in keys.iter().enumerate() {
            let item = (0..dimensions)
                .map(|dimension| array_value_to_string(batch.column(dimension), row))
                .collect::<Result<Vec<_>, _>>()?
                .join("|");
            let new = match tombstones {
                true => None,
                false => Some(measures_text(batch, dimensions, row)?),
            };
            rows.changes
                .push((item, old_values.get(key.as_ref()).cloned(), new));
        }
    }
    Ok(rows)
}

/// The ledger rows of one change of a dimension's members: a row per member changed, its JSON
/// before and after.
fn member_rows(commit: MemberCommit) -> Result<CommitRows, DataFusionError> {
    let json = |member: Option<Member>| -> Result<Option<String>, DataFusionError> {
        member
            .map(|member| serde_json::to_string(&member))
            .transpose()
            .map_err(|e| DataFusionError::External(Box::new(e)))
    };
    let mut changes = Vec::with_capacity(commit.changes.len());
    for (code, before, after) in commit.changes {
        changes.push((code, json(before)?, json(after)?));
    }
    let statement = commit.author.statement;
    Ok(CommitRows {
        kind: "member",
        source_version: commit.version as i64,
        committed_at_ms: commit.committed_at_ms as i64,
        user: commit.author.user,
        statement_id: statement.as_ref().map(|s| s.id.clone()),
        statement: statement.map(|s| s.text),
        operation: "update",
        changes,
    })
}

/// A cell's measures as text, `|` between them (an empty string for NULL).
fn measures_text(batch: &RecordBatch, dimensions: usize, row: usize) -> Result<String, MdfError> {
    let mut values = Vec::with_capacity(batch.num_columns() - dimensions);
    for column in &batch.columns()[dimensions..] {
        values.push(match column.is_null(row) {
            true => String::new(),
            false => array_value_to_string(column, row)?,
        });
    }
    Ok(values.join("|"))
}

/// The cells of `cube` just before `version` at (at least) the coordinates `written` holds,
/// `latest` being a snapshot at or after `version`.
async fn old_cells(
    cube: &MdfTable,
    latest: &Snapshot,
    version: SnapshotVersion,
    written: &[(RecordBatch, bool)],
    written_bounds: Option<CellBounds>,
    session: &dyn Session,
) -> Result<Vec<RecordBatch>> {
    // Usually worked out from the latest snapshot; after a compaction, read from the log.
    let mut before = match latest.before(version) {
        Some(before) => before,
        None => cube
            .log()
            .at(SnapshotVersion(version.0 - 1))
            .await?
            .as_ref()
            .clone(),
    };
    // Only files that may hold a written coordinate: a one-cell write reads one or two
    // files, not every small file writes have left since the last compaction.
    if let Some(written) = written_bounds {
        before.files.retain(|file| {
            file.bounds
                .as_ref()
                .is_none_or(|bounds| bounds.intersection(&written).is_some())
        });
    }
    let dimensions = &cube.definition().dimensions;
    let mut filters = Vec::with_capacity(dimensions.len());
    for (index, dimension) in dimensions.iter().enumerate() {
        let mut codes: Vec<String> = Vec::new();
        for (batch, _) in written {
            let column = batch.column(index);
            for row in 0..column.len() {
                codes.push(array_value_to_string(column, row)?);
            }
        }
        codes.sort_unstable();
        codes.dedup();
        // A long list prunes no better than the range it spans.
        let filter = match codes.len() {
            0 => return Ok(Vec::new()),
            1..=64 => col(dimension.as_str()).in_list(
                codes
                    .into_iter()
                    .map(|code| lit(ScalarValue::Utf8View(Some(code))))
                    .collect(),
                false,
            ),
            _ => col(dimension.as_str()).between(
                lit(ScalarValue::Utf8View(codes.first().cloned())),
                lit(ScalarValue::Utf8View(codes.last().cloned())),
            ),
        };
        filters.push(filter);
    }
    let plan = cube
        .scan_snapshot(session, &before, None, &filters, None)
        .await?;
    collect(plan, session.task_ctx()).await
}

/// The ledger rows of `commits` for `source`, chained on from `start`; and the new head.
fn rows_batch(
    source: &str,
    commits: &[CommitRows],
    start: &Head,
) -> Result<(RecordBatch, Head), DataFusionError> {
    let count: usize = commits.iter().map(|commit| commit.changes.len()).sum();
    let mut seq = Vec::with_capacity(count);
    let mut source_versions = Vec::with_capacity(count);
    let mut committed_at = Vec::with_capacity(count);
    let mut texts: [Vec<Option<String>>; 9] = Default::default();
    let mut prev_hashes = Vec::with_capacity(count);
    let mut hashes = Vec::with_capacity(count);
    let mut head = start.hash.clone();
    let mut next = start.next_seq;
    for commit in commits {
        for (item, old, new) in &commit.changes {
            let number = next.to_string();
            let version = commit.source_version.to_string();
            let at = commit.committed_at_ms.to_string();
            let texts_row = [
                Some(commit.kind),
                Some(source),
                commit.user.as_deref(),
                commit.statement_id.as_deref(),
                commit.statement.as_deref(),
                Some(commit.operation),
                Some(item.as_str()),
                old.as_deref(),
                new.as_deref(),
            ];
            // In the schema's order: the numbers sit between the text columns.
            let [kind, source_text, rest @ ..] = texts_row;
            let leading = [
                Some(number.as_str()),
                kind,
                source_text,
                Some(version.as_str()),
                Some(at.as_str()),
            ];
            let fields: Vec<Option<&str>> = leading.into_iter().chain(rest).collect();
            let hash = row_hash(&head, &fields);
            seq.push(next);
            source_versions.push(commit.source_version);
            committed_at.push(commit.committed_at_ms);
            for (column, value) in texts.iter_mut().zip(texts_row) {
                column.push(value.map(str::to_owned));
            }
            prev_hashes.push(std::mem::replace(&mut head, hash.clone()));
            hashes.push(hash);
            next += 1;
        }
    }
    let [
        kind,
        sources,
        user,
        statement_id,
        statement,
        operation,
        item,
        old,
        new,
    ] = texts;
    let text = |values: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(seq)),
        text(kind),
        text(sources),
        Arc::new(Int64Array::from(source_versions)),
        Arc::new(TimestampMillisecondArray::from(committed_at).with_timezone("UTC")),
        text(user),
        text(statement_id),
        text(statement),
        text(operation),
        text(item),
        text(old),
        text(new),
        Arc::new(StringArray::from(prev_hashes)),
        Arc::new(StringArray::from(hashes)),
    ];
    let batch = RecordBatch::try_new(ledger_schema(), columns)?;
    Ok((
        batch,
        Head {
            ledger_version: start.ledger_version,
            hash: head,
            next_seq: next,
        },
    ))
}
