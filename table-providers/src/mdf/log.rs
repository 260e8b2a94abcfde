//! The MDF transaction log: one JSON entry per commit under `cubes/<name>/_log/`.
//!
//! Entry `N` is the object `_log/<N as 20 digits>.json`, written with put-if-absent
//! (`PutMode::Create`), so two writers can never both own a version: the loser sees
//! `AlreadyExists`, re-reads the log and tries the next version. Entry 0 creates the cube and
//! holds its definition; later entries add data files. A snapshot at version `N` is the cube
//! definition plus every file added by entries `0..=N`. A log read lists only the entries after
//! the latest snapshot it already knows and reads those. The format is specified in
//! `docs/mdf.md`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::marks::Marks;
use super::shared_list::SharedList;
use super::summary::SummaryFile;
use super::{CubeDefinition, MdfError};
use crate::fail_point::fail_point;
use crate::storage::{CommitEvent, Storage};

/// How many times a commit re-reads the log after losing a version race before giving up.
const MAX_COMMIT_ATTEMPTS: usize = 100;

/// How many log entries a read fetches at once (each is a request to the store).
const ENTRIES_READ_AT_ONCE: usize = 16;

/// How many entries after the latest known snapshot a read fetches one by one before it
/// lists the rest of the log (see `CubeLog::entries_after`).
const ENTRIES_PROBED: usize = 4;

/// Every this many versions, the committer of the version writes a checkpoint: the whole
/// snapshot in one object, so that opening a cube reads it and the entries after it.
pub const CHECKPOINT_INTERVAL: u64 = 100;

/// The object naming the latest checkpoint's version (a hint: a reader that finds it missing
/// or stale still reads a correct snapshot).
const LAST_CHECKPOINT: &str = "_last_checkpoint";

/// A committed version of a cube's log; versions start at 0 (the creating commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SnapshotVersion(pub u64);

impl std::fmt::Display for SnapshotVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Parquet data file of a cube, as recorded in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Path relative to the cube folder (`data/<id>.parquet`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Number of cells (rows).
    pub rows: u64,
    /// Whether the rows are cells or tombstones.
    #[serde(default, skip_serializing_if = "FileKind::is_cells")]
    pub kind: FileKind,
    /// The sequence number its rows win by: of two rows with the same coordinate, the one in
    /// the file with the higher `seq` is the cell. `None` in an entry that adds the file
    /// means the entry's version; a snapshot always holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<SnapshotVersion>,
    /// The smallest and largest member code of each dimension in the file; `None` (files
    /// written before bounds were recorded) means unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<CellBounds>,
    /// The SHA-256 of the file's bytes, as 64 hex digits, when its writer recorded it (the
    /// ledger's files always carry it, so that a changed byte is found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The file's summary (see [`super::summary`]), stored beside it; `None`: it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SummaryFile>,
    /// The file's marks, once known; not part of the log entry.
    #[serde(skip)]
    pub marks: MarksCell,
}

/// A data file's marks (see [`super::marks`]), kept once the writer or a scan has them: a
/// file never changes, so the first scan to plan it reads them from the footer and every
/// later scan, of any snapshot holding the file, uses them as they are. A cache of the
/// file's content, so it takes no part in comparing entries.
#[derive(Debug, Clone, Default)]
pub struct MarksCell(Arc<OnceLock<Option<Arc<Marks>>>>);

impl MarksCell {
    /// A cell holding the marks a writer collected.
    pub(crate) fn known(marks: Marks) -> Self {
        let marks = marks.is_consistent().then(|| Arc::new(marks));
        Self(Arc::new(OnceLock::from(marks)))
    }

    /// The marks, if a writer or scan has recorded them (`Some(None)`: the file has none).
    pub(crate) fn get(&self) -> Option<Option<Arc<Marks>>> {
        self.0.get().cloned()
    }

    /// Records the marks read from the file's footer and returns what the cell holds.
    pub(crate) fn record(&self, marks: Option<Marks>) -> Option<Arc<Marks>> {
        self.0.get_or_init(|| marks.map(Arc::new)).clone()
    }
}

impl PartialEq for MarksCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for MarksCell {}

impl DataFile {
    /// The sequence number its rows win by (see [`DataFile::seq`]).
    pub fn sequence(&self) -> SnapshotVersion {
        self.seq.unwrap_or(SnapshotVersion(0))
    }

    /// Whether some coordinate could be in both files, as far as their bounds tell.
    pub fn may_overlap(&self, other: &DataFile) -> bool {
        match (&self.bounds, &other.bounds) {
            (Some(mine), Some(theirs)) => mine.intersection(theirs).is_some(),
            _ => true,
        }
    }
}

/// What the rows of a data file are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Cells: coordinates and measure values.
    #[default]
    Cells,
    /// Tombstones: coordinates whose cells are deleted (measures are null).
    Tombstones,
}

impl FileKind {
    fn is_cells(&self) -> bool {
        *self == FileKind::Cells
    }
}

/// A box in the cube's coordinate space: per dimension (in the cube's order), the smallest and
/// largest member code, compared as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CellBounds {
    /// The smallest member code per dimension.
    pub min: Vec<String>,
    /// The largest member code per dimension.
    pub max: Vec<String>,
}

impl CellBounds {
    /// The smallest box holding both.
    pub fn union(&self, other: &CellBounds) -> CellBounds {
        let pick = |mine: &[String], theirs: &[String], smaller: bool| -> Vec<String> {
            mine.iter()
                .zip(theirs)
                .map(|(a, b)| {
                    if (a < b) == smaller {
                        a.clone()
                    } else {
                        b.clone()
                    }
                })
                .collect()
        };
        CellBounds {
            min: pick(&self.min, &other.min, true),
            max: pick(&self.max, &other.max, false),
        }
    }

    /// The box both cover, `None` when they are disjoint.
    pub fn intersection(&self, other: &CellBounds) -> Option<CellBounds> {
        let min: Vec<String> = self
            .min
            .iter()
            .zip(&other.min)
            .map(|(a, b)| a.max(b).clone())
            .collect();
        let max: Vec<String> = self
            .max
            .iter()
            .zip(&other.max)
            .map(|(a, b)| a.min(b).clone())
            .collect();
        min.iter()
            .zip(&max)
            .all(|(low, high)| low <= high)
            .then_some(CellBounds { min, max })
    }

    /// Whether every coordinate of `other` lies in this box.
    pub fn covers(&self, other: &CellBounds) -> bool {
        (self.min.iter().zip(&other.min)).all(|(mine, theirs)| mine <= theirs)
            && (self.max.iter().zip(&other.max)).all(|(mine, theirs)| theirs <= mine)
    }
}

/// What one commit did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "snake_case")]
pub enum Action {
    /// Version 0: the cube comes into being.
    Create {
        /// The cube's dimensions and measures.
        cube: CubeDefinition,
    },
    /// Cells written without reading the cube (`INSERT`): they replace any cell at the same
    /// coordinate. Appends never conflict with other commits.
    Append {
        /// The files added.
        add: Vec<DataFile>,
    },
    /// New values of cells the writer read (`UPDATE`).
    Update {
        /// The files added.
        add: Vec<DataFile>,
    },
    /// Tombstones for cells the writer read (`DELETE`).
    Delete {
        /// The tombstone files added.
        add: Vec<DataFile>,
    },
    /// The live cells of a version rewritten into new files that replace the old ones.
    Compact {
        /// The files added; each carries `seq`, the version they were built from.
        add: Vec<DataFile>,
        /// The paths of the files they replace.
        remove: Vec<String>,
    },
}

impl Action {
    /// The files this action adds.
    pub fn added(&self) -> &[DataFile] {
        match self {
            Action::Create { .. } => &[],
            Action::Append { add }
            | Action::Update { add }
            | Action::Delete { add }
            | Action::Compact { add, .. } => add,
        }
    }

    /// The operation's kind.
    pub fn operation(&self) -> CommitOperation {
        match self {
            Action::Create { .. } => CommitOperation::Create,
            Action::Append { .. } => CommitOperation::Append,
            Action::Update { .. } => CommitOperation::Update,
            Action::Delete { .. } => CommitOperation::Delete,
            Action::Compact { .. } => CommitOperation::Compact,
        }
    }
}

/// One log entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The version this entry commits.
    pub version: SnapshotVersion,
    /// Wall-clock commit time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The user who committed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The statement (or transaction block) that made the change, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<StatementRef>,
    /// What the commit did.
    #[serde(flatten)]
    pub action: Action,
}

/// The SQL that made a change: its id (unique per statement, or per transaction block) and
/// its text (a block's write statements, one per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementRef {
    /// Unique among statements: milliseconds since the epoch and a random number, in hex.
    pub id: String,
    /// The text as the client sent it.
    pub text: String,
}

/// The state of a cube at one version: what a scan reads. A checkpoint stores one whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The version read.
    pub version: SnapshotVersion,
    /// The cube's definition from entry 0.
    pub cube: CubeDefinition,
    /// Every live data file, oldest first.
    pub files: SharedList<DataFile>,
    /// Every commit up to this version, oldest first.
    pub commits: SharedList<Commit>,
    /// Files compactions replaced, with the version that replaced each: older versions still
    /// read them, until vacuum deletes them.
    #[serde(default)]
    pub retired: SharedList<RetiredFile>,
}

/// A data file a compaction replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredFile {
    /// Path relative to the cube folder.
    pub path: String,
    /// The version whose compaction replaced it: versions before it read it.
    pub retired_at: SnapshotVersion,
}

/// What one commit did, as the cube's history lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The version it committed.
    pub version: SnapshotVersion,
    /// When, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The user who committed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The operation.
    pub operation: CommitOperation,
    /// How many data files it added.
    pub files_added: usize,
    /// How many rows (cells or tombstones) those files hold.
    pub rows_added: u64,
    /// How many data files it replaced (compaction).
    #[serde(default)]
    pub files_removed: usize,
    /// The statement (or transaction block) that made it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<StatementRef>,
}

/// The kinds of commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitOperation {
    /// Version 0: the cube was created.
    Create,
    /// Cells were written without reading (`INSERT`).
    Append,
    /// Cells read were given new values (`UPDATE`).
    Update,
    /// Cells read were deleted (`DELETE`).
    Delete,
    /// Files were rewritten without changing any cell.
    Compact,
}

impl CommitOperation {
    /// The operation's name, as in the log.
    pub fn name(self) -> &'static str {
        match self {
            CommitOperation::Create => "create",
            CommitOperation::Append => "append",
            CommitOperation::Update => "update",
            CommitOperation::Delete => "delete",
            CommitOperation::Compact => "compact",
        }
    }
}

impl Commit {
    fn of(entry: &LogEntry) -> Self {
        let added = entry.action.added();
        Commit {
            version: entry.version,
            timestamp_ms: entry.timestamp_ms,
            user: entry.user.clone(),
            operation: entry.action.operation(),
            files_added: added.len(),
            rows_added: added.iter().map(|file| file.rows).sum(),
            files_removed: match &entry.action {
                Action::Compact { remove, .. } => remove.len(),
                _ => 0,
            },
            statement: entry.statement.clone(),
        }
    }
}

/// A change to commit: an action other than `Create`, and what it needs checked.
#[derive(Debug, Clone)]
pub struct Change {
    /// What to commit.
    pub action: Action,
    /// For a write that read the cube first (`UPDATE`, `DELETE`): the version it read. The
    /// commit fails with a serialization error (40001) when a commit after that version added
    /// files whose bounds meet the bounds of the files this one adds.
    pub read_version: Option<SnapshotVersion>,
    /// Who commits, recorded in the entry.
    pub user: Option<String>,
    /// The statement that made the change, recorded in the entry.
    pub statement: Option<StatementRef>,
}

/// The log of one cube. Clones share what has been read of it: each read fetches only the
/// entries committed after the last snapshot it knows.
#[derive(Debug, Clone)]
pub struct CubeLog {
    storage: Storage,
    cube_dir: Path,
    known: Arc<Mutex<Option<Arc<Snapshot>>>>,
    /// Held while this process commits: its writers queue here instead of racing each other
    /// for the next version on the store (and backing off). Other processes still race, and
    /// put-if-absent decides.
    committing: Arc<tokio::sync::Mutex<()>>,
}

impl CubeLog {
    /// The log of the cube stored under `cubes/<name>/`.
    pub fn new(storage: Storage, name: &str) -> Self {
        let cube_dir = storage.path(&["cubes", name]);
        Self {
            storage,
            cube_dir,
            known: Arc::default(),
            committing: Arc::default(),
        }
    }

    /// The log of an MDF table stored in `dir` (the ledger's: `ledger/`).
    pub(crate) fn in_folder(storage: Storage, dir: Path) -> Self {
        Self {
            storage,
            cube_dir: dir,
            known: Arc::default(),
            committing: Arc::default(),
        }
    }

    /// The folder holding the cube's files.
    pub fn cube_dir(&self) -> &Path {
        &self.cube_dir
    }

    fn log_dir(&self) -> Path {
        self.cube_dir.clone().join("_log")
    }

    fn entry_path(&self, version: SnapshotVersion) -> Path {
        self.log_dir().join(format!("{:020}.json", version.0))
    }

    /// The latest snapshot read so far, if any, without reading the log.
    pub(crate) fn cached(&self) -> Option<Arc<Snapshot>> {
        self.known()
    }

    /// The latest snapshot read so far, if any.
    fn known(&self) -> Option<Arc<Snapshot>> {
        self.known.lock().expect("log cache poisoned").clone()
    }

    /// The entries committed after `after` (all of them when `None`), in order. A read mostly
    /// finds none or a few (this process's own commits), so it fetches the entries after
    /// `after` one by one until one is missing: a request per new entry and one more, however
    /// long the log (a listing of a local folder reads every entry's name, which made each
    /// commit slower than the last). Past [`ENTRIES_PROBED`] entries it lists the rest in one
    /// request and fetches them several at a time.
    async fn entries_after(
        &self,
        after: Option<SnapshotVersion>,
    ) -> Result<Vec<LogEntry>, MdfError> {
        let mut entries = Vec::new();
        if let Some(after) = after {
            for version in (after.0 + 1..).take(ENTRIES_PROBED) {
                match self.read_entry(SnapshotVersion(version)).await {
                    Ok(entry) => entries.push(entry),
                    Err(MdfError::Storage(object_store::Error::NotFound { .. })) => {
                        return Ok(entries);
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        let listed_after = entries
            .last()
            .map(|entry: &LogEntry| entry.version)
            .or(after);
        let rest = self.versions_after(listed_after).await?;
        entries.extend(self.read_entries(rest).await?);
        Ok(entries)
    }

    /// The versions committed after `after` (all of them when `None`), in order: one listing
    /// that starts after `after`'s entry. Errors if they do not follow on from `after` without
    /// a gap, or the log holds a stray object.
    async fn versions_after(
        &self,
        after: Option<SnapshotVersion>,
    ) -> Result<Vec<SnapshotVersion>, MdfError> {
        let log_dir = self.log_dir();
        let listing = match after {
            Some(version) => self
                .storage
                .store()
                .list_with_offset(Some(&log_dir), &self.entry_path(version)),
            None => self.storage.store().list(Some(&log_dir)),
        };
        let objects: Vec<_> = listing.try_collect().await?;
        let mut versions = Vec::with_capacity(objects.len());
        for object in &objects {
            let name = object.location.filename().unwrap_or_default();
            match LogObject::named(name) {
                Some(LogObject::Entry(version)) => versions.push(version),
                Some(LogObject::Checkpoint | LogObject::LastCheckpoint) => {}
                None => {
                    return Err(MdfError::Corrupt(format!(
                        "unexpected object {} in the log",
                        object.location
                    )));
                }
            }
        }
        versions.sort();
        let first = after.map_or(0, |version| version.0 + 1);
        if let Some(missing) = versions
            .iter()
            .zip(first..)
            .find_map(|(version, expected)| (version.0 != expected).then_some(expected))
        {
            return Err(MdfError::LogGap {
                cube: self.cube_dir.to_string(),
                missing,
            });
        }
        Ok(versions)
    }

    /// The entry committing `version`, as stored.
    pub(crate) async fn read_entry(&self, version: SnapshotVersion) -> Result<LogEntry, MdfError> {
        let path = self.entry_path(version);
        let bytes = self.storage.store().get(&path).await?.bytes().await?;
        let entry: LogEntry = serde_json::from_slice(&bytes)
            .map_err(|e| MdfError::Corrupt(format!("{path} is not a log entry: {e}")))?;
        if entry.version != version {
            return Err(MdfError::Corrupt(format!(
                "{path} claims version {}",
                entry.version
            )));
        }
        Ok(entry)
    }

    /// The latest committed version; `NotFound` when the cube has no log.
    pub async fn latest_version(&self) -> Result<SnapshotVersion, MdfError> {
        Ok(self.latest().await?.version)
    }

    /// Reads the latest snapshot (the entries committed since the last read, applied to what
    /// that read gave); `NotFound` when the cube has no log.
    pub async fn latest(&self) -> Result<Arc<Snapshot>, MdfError> {
        settled(|| self.read_latest()).await
    }

    async fn read_latest(&self) -> Result<Arc<Snapshot>, MdfError> {
        let known = match self.known() {
            Some(known) => Some(known),
            None => self.last_checkpoint().await?.map(Arc::new),
        };
        let entries = self
            .entries_after(known.as_ref().map(|snapshot| snapshot.version))
            .await?;
        let snapshot = match (known, entries.is_empty()) {
            (Some(known), true) => return Ok(known),
            (None, true) => return Err(MdfError::NotFound(self.cube_dir.to_string())),
            (Some(known), false) => Arc::new(known.as_ref().clone().with(entries)?),
            (None, false) => Arc::new(Snapshot::from_entries(entries)?),
        };
        self.remember(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    /// Keeps `snapshot` as the latest known, unless another reader got further meanwhile.
    fn remember(&self, snapshot: Arc<Snapshot>) {
        let mut cached = self.known.lock().expect("log cache poisoned");
        if cached
            .as_ref()
            .is_none_or(|cached| cached.version < snapshot.version)
        {
            *cached = Some(snapshot);
        }
    }

    /// The snapshot at `version` (time travel): the latest one's when that is it, else its
    /// entries read afresh.
    pub async fn at(&self, version: SnapshotVersion) -> Result<Arc<Snapshot>, MdfError> {
        let latest = self.latest().await?;
        if version == latest.version {
            return Ok(latest);
        }
        if version > latest.version {
            return Err(MdfError::NoSuchVersion(format!(
                "cube {} has no version {version}; its latest is {}",
                self.cube_dir, latest.version
            )));
        }
        // From the checkpoint at or before `version`, when it was written.
        let checkpointed = SnapshotVersion(version.0 - version.0 % CHECKPOINT_INTERVAL);
        let base = match checkpointed.0 {
            0 => None,
            _ => self.checkpoint_at(checkpointed).await?,
        };
        let first = base.as_ref().map_or(0, |base| base.version.0 + 1);
        let entries = self
            .read_entries((first..=version.0).map(SnapshotVersion))
            .await?;
        Ok(Arc::new(match base {
            Some(base) => base.with(entries)?,
            None => Snapshot::from_entries(entries)?,
        }))
    }

    /// The snapshot that was the latest at `timestamp_ms` (milliseconds since the Unix epoch):
    /// the last commit at or before it.
    pub async fn as_of(&self, timestamp_ms: u64) -> Result<Arc<Snapshot>, MdfError> {
        let latest = self.latest().await?;
        let Some(commit) = latest
            .commits
            .iter()
            .take_while(|commit| commit.timestamp_ms <= timestamp_ms)
            .last()
        else {
            let created = latest
                .commits
                .first()
                .map_or(0, |commit| commit.timestamp_ms);
            return Err(MdfError::NoSuchVersion(format!(
                "cube {} did not exist yet at {timestamp_ms} ms since the epoch; it was created at {created}",
                self.cube_dir
            )));
        };
        self.at(commit.version).await
    }

    fn checkpoint_path(&self, version: SnapshotVersion) -> Path {
        self.log_dir()
            .join(format!("{:020}.checkpoint.json", version.0))
    }

    /// The snapshot the latest checkpoint holds, if `_last_checkpoint` names one that exists.
    async fn last_checkpoint(&self) -> Result<Option<Snapshot>, MdfError> {
        let pointer = self.log_dir().join(LAST_CHECKPOINT);
        let Some(bytes) = self.read_if_exists(&pointer).await? else {
            return Ok(None);
        };
        let Ok(LastCheckpoint { version }) = serde_json::from_slice(&bytes) else {
            tracing::warn!(path = %pointer, "unreadable checkpoint pointer; reading the whole log");
            return Ok(None);
        };
        self.checkpoint_at(version).await
    }

    /// The bytes of the object at `path`, `None` when there is none.
    async fn read_if_exists(&self, path: &Path) -> Result<Option<bytes::Bytes>, MdfError> {
        match self.storage.store().get(path).await {
            Ok(found) => Ok(Some(found.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The snapshot the checkpoint of `version` holds, if there is one.
    async fn checkpoint_at(&self, version: SnapshotVersion) -> Result<Option<Snapshot>, MdfError> {
        let path = self.checkpoint_path(version);
        let Some(bytes) = self.read_if_exists(&path).await? else {
            return Ok(None);
        };
        let snapshot: Snapshot = serde_json::from_slice(&bytes)
            .map_err(|e| MdfError::Corrupt(format!("{path} is not a checkpoint: {e}")))?;
        if snapshot.version != version {
            return Err(MdfError::Corrupt(format!(
                "{path} claims version {}",
                snapshot.version
            )));
        }
        Ok(Some(snapshot))
    }

    /// Writes the checkpoint of `version` and points `_last_checkpoint` at it. A checkpoint
    /// only saves readers work: failing to write one is logged, and the commit stands.
    async fn checkpoint(&self, version: SnapshotVersion) {
        let written = async {
            let snapshot = self.at(version).await?;
            let path = self.checkpoint_path(version);
            match self.put_json_if_absent(&path, snapshot.as_ref()).await {
                Ok(()) | Err(MdfError::Storage(object_store::Error::AlreadyExists { .. })) => {}
                Err(e) => return Err(e),
            }
            let pointer = json(&LastCheckpoint { version })?;
            self.storage
                .store()
                .put(&self.log_dir().join(LAST_CHECKPOINT), pointer.into())
                .await?;
            Ok::<_, MdfError>(())
        };
        if let Err(error) = written.await {
            tracing::warn!(%version, cube = %self.cube_dir, %error, "checkpoint not written");
        }
    }

    /// Writes version 0 with the cube's definition; fails if the cube exists.
    pub async fn create(&self, cube: CubeDefinition) -> Result<(), MdfError> {
        let entry = LogEntry {
            version: SnapshotVersion(0),
            timestamp_ms: now_ms(),
            user: None,
            statement: None,
            action: Action::Create { cube },
        };
        match self.put_entry(&entry).await {
            Err(MdfError::Storage(object_store::Error::AlreadyExists { .. })) => {
                Err(MdfError::AlreadyExists(self.cube_dir.to_string()))
            }
            other => other,
        }
    }

    /// Commits `change` at the next free version and returns that version. A lost version
    /// race (with another process) re-reads the log and tries the next version, after checking
    /// that nothing committed meanwhile conflicts with the change (blind appends never
    /// conflict). This process's commits to the cube take turns.
    pub async fn commit(&self, change: Change) -> Result<SnapshotVersion, MdfError> {
        if matches!(change.action, Action::Create { .. }) {
            return Err(MdfError::Invalid(
                "a cube is created only once, at version 0".into(),
            ));
        }
        let span =
            tracing::info_span!("commit", cube = %self.cube_dir, version = tracing::field::Empty);
        let committed = self.commit_in_turn(change).instrument(span.clone()).await;
        if let Ok(version) = &committed {
            span.record("version", version.0);
        }
        committed
    }

    /// [`CubeLog::commit`], once this process's earlier commits to the cube are done.
    async fn commit_in_turn(&self, change: Change) -> Result<SnapshotVersion, MdfError> {
        let _committing = self.committing.lock().await;
        let mut lost = 0;
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let latest = self.latest().await?;
            if let Err(conflict) = latest.check_conflicts(&change) {
                self.storage.commits().count(CommitEvent::Conflict);
                return Err(conflict);
            }
            let next = SnapshotVersion(latest.version.0 + 1);
            let entry = LogEntry {
                version: next,
                timestamp_ms: now_ms(),
                user: change.user.clone(),
                statement: change.statement.clone(),
                action: change.action.clone(),
            };
            fail_point("mdf.before_log_write");
            let written = self.put_entry(&entry).await;
            if written.is_ok() {
                fail_point("mdf.after_log_write");
            }
            match written {
                Ok(()) => {
                    self.storage.commits().count(CommitEvent::Committed);
                    // The snapshot this commit made is known: the next read starts from it,
                    // and plans made before it see this process's own write.
                    if let Ok(committed) = latest.as_ref().clone().with(vec![entry]) {
                        self.remember(Arc::new(committed));
                    }
                    if next.0.is_multiple_of(CHECKPOINT_INTERVAL) {
                        self.checkpoint(next).await;
                    }
                    return Ok(next);
                }
                Err(MdfError::Storage(object_store::Error::AlreadyExists { .. })) => {
                    lost += 1;
                    self.storage.commits().count(CommitEvent::LostRace);
                    tracing::debug!(version = %next, cube = %self.cube_dir, lost, "lost commit race, retrying");
                    tokio::time::sleep(backoff(lost)).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.storage.commits().count(CommitEvent::Conflict);
        Err(MdfError::CommitContention(MAX_COMMIT_ATTEMPTS))
    }

    /// Commits `change` as the version right after `after` (a snapshot read from this log),
    /// or returns `None` when another writer committed that version first: for a writer
    /// whose change depends on everything before it (the ledger's hash chain), which must be
    /// rebuilt rather than committed later.
    pub(crate) async fn commit_next(
        &self,
        after: &Snapshot,
        change: Change,
    ) -> Result<Option<SnapshotVersion>, MdfError> {
        let next = SnapshotVersion(after.version.0 + 1);
        let entry = LogEntry {
            version: next,
            timestamp_ms: now_ms(),
            user: change.user,
            statement: change.statement,
            action: change.action,
        };
        match self.put_entry(&entry).await {
            Ok(()) => Ok(Some(next)),
            Err(MdfError::Storage(object_store::Error::AlreadyExists { .. })) => {
                self.storage.commits().count(CommitEvent::LostRace);
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Commits a blind append of `files` (see [`CubeLog::commit`]).
    pub async fn commit_append(&self, files: Vec<DataFile>) -> Result<SnapshotVersion, MdfError> {
        self.commit(Change {
            action: Action::Append { add: files },
            read_version: None,
            user: None,
            statement: None,
        })
        .await
    }

    async fn put_entry(&self, entry: &LogEntry) -> Result<(), MdfError> {
        self.put_json_if_absent(&self.entry_path(entry.version), entry)
            .await
    }

    /// Writes `value` as JSON to `path` unless an object is there already.
    async fn put_json_if_absent(
        &self,
        path: &Path,
        value: &impl Serialize,
    ) -> Result<(), MdfError> {
        self.storage.put_if_absent(path, json(value)?).await?;
        Ok(())
    }

    /// The entries of `versions`, read [`ENTRIES_READ_AT_ONCE`] at a time, in order.
    async fn read_entries(
        &self,
        versions: impl IntoIterator<Item = SnapshotVersion>,
    ) -> Result<Vec<LogEntry>, MdfError> {
        futures::stream::iter(versions)
            .map(|version| self.read_entry(version))
            .buffered(ENTRIES_READ_AT_ONCE)
            .try_collect()
            .await
    }
}

/// A random pause after a writer lost its `lost`-th version race in a row: up to 2^lost ms,
/// at most 128 ms. Without it, many writers on one cube that collided collide again at once,
/// and one of them can lose every race (32 writers starved one past 100 attempts).
fn backoff(lost: u32) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let ceiling = 1u64 << lost.min(7);
    // A fresh `RandomState` hashes nothing to a different value each time: cheap jitter.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    std::time::Duration::from_millis(random % (ceiling + 1))
}

/// How long reading the log waits, in turn, for a listing that raced a commit to settle.
const SETTLE_DELAYS_MS: [u64; 4] = [5, 20, 80, 320];

/// `read`'s result once the log it lists has settled: a listing that shows an entry but not
/// the one before it, or an entry that then cannot be read, raced a commit (a local folder's
/// directory listing may return a new name and miss an older one), so it is listed again
/// after a pause. A gap that lasts is corruption and reported.
async fn settled<T, F>(mut read: impl FnMut() -> F) -> Result<T, MdfError>
where
    F: Future<Output = Result<T, MdfError>>,
{
    for delay in SETTLE_DELAYS_MS {
        match read().await {
            Err(
                MdfError::LogGap { .. } | MdfError::Storage(object_store::Error::NotFound { .. }),
            ) => {
                tracing::debug!(
                    delay_ms = delay,
                    "log listing raced a commit; listing again"
                );
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            other => return other,
        }
    }
    read().await
}

/// The objects a log folder holds, by name.
enum LogObject {
    /// `<version>.json`: a commit.
    Entry(SnapshotVersion),
    /// `<version>.checkpoint.json`: the snapshot at a version.
    Checkpoint,
    /// `_last_checkpoint`.
    LastCheckpoint,
}

impl LogObject {
    fn named(name: &str) -> Option<Self> {
        let version = |digits: &str| digits.parse::<u64>().ok().map(SnapshotVersion);
        if name == LAST_CHECKPOINT {
            Some(LogObject::LastCheckpoint)
        } else if let Some(digits) = name.strip_suffix(".checkpoint.json") {
            version(digits).map(|_| LogObject::Checkpoint)
        } else {
            version(name.strip_suffix(".json")?).map(LogObject::Entry)
        }
    }
}

/// For each of `files`, the indices of the other files whose bounds meet its own (see
/// [`Snapshot::rivals`]).
pub(crate) fn rivals_among(files: &[&DataFile]) -> Vec<Vec<usize>> {
    fn first_range(file: &DataFile) -> Option<(&str, &str)> {
        let bounds = file.bounds.as_ref()?;
        Some((bounds.min.first()?.as_str(), bounds.max.first()?.as_str()))
    }
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&index| first_range(files[index]).map(|(low, _)| low));
    let mut rivals = vec![Vec::new(); files.len()];
    let mut open: Vec<usize> = Vec::new();
    for index in order {
        let file = files[index];
        if let Some((low, _)) = first_range(file) {
            open.retain(|&other| first_range(files[other]).is_none_or(|(_, high)| high >= low));
        }
        for &other in &open {
            if file.sequence() != files[other].sequence() && file.may_overlap(files[other]) {
                rivals[index].push(other);
                rivals[other].push(index);
            }
        }
        open.push(index);
    }
    rivals
}

/// The content of `_last_checkpoint`.
#[derive(Debug, Serialize, Deserialize)]
struct LastCheckpoint {
    version: SnapshotVersion,
}

impl Snapshot {
    /// The snapshot at `version - 1` worked out from this later one, without reading the
    /// log: its files less those added from `version` on. `None` when a compaction since
    /// then replaced files (the files it read are gone from this snapshot), or `version` is
    /// not after the cube's creation.
    pub(crate) fn before(&self, version: SnapshotVersion) -> Option<Snapshot> {
        if version.0 == 0 || version > self.version {
            return None;
        }
        // The commits are in version order: those from `version` on are the last ones.
        let later: Vec<&Commit> = self
            .commits
            .iter()
            .rev()
            .take_while(|commit| commit.version >= version)
            .collect();
        if later
            .iter()
            .any(|commit| commit.operation == CommitOperation::Compact)
        {
            return None;
        }
        Some(Snapshot {
            version: SnapshotVersion(version.0 - 1),
            cube: self.cube.clone(),
            files: self
                .files
                .iter()
                .filter(|file| file.sequence() < version)
                .cloned()
                .collect(),
            commits: self.commits.prefix(self.commits.len() - later.len()),
            retired: self.retired.clone(),
        })
    }

    /// For each data file (by index in `files`), the indices of the other files whose bounds
    /// meet its own and whose `seq` differs: the files a coordinate of it could also be in
    /// (files of one `seq`, such as a compaction's, never share a coordinate, however their
    /// bounds lie). The files are swept in order of their first dimension's lowest member, so
    /// only files whose first dimensions overlap are compared (a file without bounds meets
    /// every file).
    pub(crate) fn rivals(&self) -> Vec<Vec<usize>> {
        rivals_among(&self.files.iter().collect::<Vec<_>>())
    }

    /// The snapshot the entries of versions 0, 1, 2, ... make.
    fn from_entries(entries: Vec<LogEntry>) -> Result<Self, MdfError> {
        let mut entries = entries.into_iter();
        let Some(first) = entries.next() else {
            return Err(MdfError::Corrupt("the log has no entry 0".into()));
        };
        let LogEntry {
            action: Action::Create { cube },
            version,
            ..
        } = &first
        else {
            return Err(MdfError::Corrupt(
                "log entry 0 does not create the cube".into(),
            ));
        };
        let (version, cube) = (*version, cube.clone());
        let created = Snapshot {
            version,
            cube,
            files: SharedList::default(),
            commits: SharedList::default(),
            retired: SharedList::default(),
        };
        created.with(std::iter::once(first).chain(entries).collect())
    }

    /// This snapshot with `entries`, the ones committed right after it, applied (for a
    /// snapshot just created, its own entry 0 first).
    fn with(mut self, entries: Vec<LogEntry>) -> Result<Self, MdfError> {
        for entry in entries {
            self.commits.push(Commit::of(&entry));
            let version = entry.version;
            match entry.action {
                Action::Append { add } | Action::Update { add } | Action::Delete { add } => {
                    self.files.extend(add.into_iter().map(|mut file| {
                        file.seq.get_or_insert(version);
                        file
                    }));
                }
                Action::Compact { add, remove } => {
                    let live = self.files.len();
                    self.files.retain(|file| !remove.contains(&file.path));
                    self.retired.extend(remove.iter().map(|path| RetiredFile {
                        path: path.clone(),
                        retired_at: version,
                    }));
                    if live - self.files.len() != remove.len() {
                        return Err(MdfError::Corrupt(format!(
                            "log entry {version} replaces files that are not live"
                        )));
                    }
                    if add.iter().any(|file| file.seq.is_none()) {
                        return Err(MdfError::Corrupt(format!(
                            "log entry {version} adds compacted files without a seq"
                        )));
                    }
                    self.files.extend(add);
                }
                Action::Create { .. } if version.0 == 0 => {}
                Action::Create { .. } => {
                    return Err(MdfError::Corrupt(format!(
                        "log entry {version} creates the cube again"
                    )));
                }
            }
            self.version = version;
        }
        Ok(self)
    }

    /// Fails with a serialization error when committing `change` on top of this snapshot would
    /// lose an update: a write that read an older version meets cells committed since, or a
    /// compaction replaces files that are no longer live.
    fn check_conflicts(&self, change: &Change) -> Result<(), MdfError> {
        if let Action::Compact { remove, .. } = &change.action {
            let live = |path: &String| self.files.iter().any(|file| &file.path == path);
            if let Some(gone) = remove.iter().find(|path| !live(path)) {
                return Err(MdfError::SerializationFailure(format!(
                    "could not compact: {gone} was replaced by a concurrent compaction"
                )));
            }
            return Ok(());
        }
        let Some(read) = change.read_version else {
            return Ok(());
        };
        let written = change.action.added();
        let concurrent = self
            .files
            .iter()
            .filter(|file| file.sequence() > read)
            .find(|file| written.iter().any(|mine| mine.may_overlap(file)));
        match concurrent {
            Some(file) => Err(MdfError::SerializationFailure(format!(
                "could not serialize access due to concurrent update: version {} wrote cells this statement read at version {read}",
                file.sequence()
            ))),
            None => Ok(()),
        }
    }
}

/// `value` as the JSON the log stores.
fn json(value: &impl Serialize) -> Result<Vec<u8>, MdfError> {
    serde_json::to_vec(value).map_err(|e| MdfError::Corrupt(e.to_string()))
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::ObjectStoreExt;

    use super::*;
    use crate::mdf::Measure;
    use crate::storage::Operation;

    fn cube() -> CubeDefinition {
        CubeDefinition {
            name: "plan".into(),
            dimensions: vec!["entity".into()],
            measures: vec![Measure {
                name: "amount".into(),
                precision: 18,
                scale: 2,
            }],
        }
    }

    fn file(n: usize) -> DataFile {
        DataFile {
            path: format!("data/{n}.parquet"),
            size: 1,
            rows: 1,
            kind: FileKind::Cells,
            seq: None,
            bounds: None,
            sha256: None,
            summary: None,
            marks: MarksCell::default(),
        }
    }

    #[test]
    fn rivals_are_the_files_whose_bounds_meet_of_other_seqs() {
        let bounded = |n: usize, seq: u64, min: [&str; 2], max: [&str; 2]| DataFile {
            seq: Some(SnapshotVersion(seq)),
            bounds: Some(CellBounds {
                min: min.map(String::from).to_vec(),
                max: max.map(String::from).to_vec(),
            }),
            ..file(n)
        };
        let snapshot = Snapshot {
            version: SnapshotVersion(4),
            cube: cube(),
            files: vec![
                bounded(0, 0, ["b", "x"], ["d", "x"]),
                bounded(1, 1, ["a", "x"], ["c", "x"]),
                // Overlaps file 0 on the first dimension only.
                bounded(2, 2, ["c", "y"], ["e", "z"]),
                bounded(3, 3, ["f", "a"], ["g", "z"]),
                DataFile {
                    seq: Some(SnapshotVersion(4)),
                    ..file(4)
                },
                // Written with file 0 (a compaction's or a block's files): its bounds meet
                // file 0's, but files of one seq never share a coordinate.
                bounded(5, 0, ["b", "x"], ["b", "x"]),
            ]
            .into(),
            commits: SharedList::default(),
            retired: SharedList::default(),
        };
        let mut rivals = snapshot.rivals();
        rivals.iter_mut().for_each(|r| r.sort_unstable());
        assert_eq!(
            rivals,
            vec![
                vec![1, 4],
                vec![0, 4, 5],
                vec![4],
                vec![4],
                vec![0, 1, 2, 3, 5],
                vec![1, 4]
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_each_get_their_own_version() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let log = CubeLog::new(storage, "plan");
        log.create(cube()).await.unwrap();
        let writers: Vec<_> = (0..16)
            .map(|n| {
                let log = log.clone();
                tokio::spawn(async move { log.commit_append(vec![file(n)]).await.unwrap() })
            })
            .collect();
        let mut versions = Vec::new();
        for writer in writers {
            versions.push(writer.await.unwrap().0);
        }
        versions.sort_unstable();
        assert_eq!(
            versions,
            (1..=16).collect::<Vec<u64>>(),
            "no version is owned twice, none is lost"
        );
        let snapshot = log.latest().await.unwrap();
        assert_eq!(snapshot.version, SnapshotVersion(16));
        let mut paths: Vec<String> = snapshot.files.iter().map(|f| f.path.clone()).collect();
        paths.sort();
        let mut expected: Vec<String> = (0..16).map(|n| file(n).path).collect();
        expected.sort();
        assert_eq!(paths, expected, "every committed file is in the snapshot");
    }

    /// 32 writers committing to one cube at once: without a pause after a lost race, one of
    /// them lost 100 in a row (found by bench/mdf).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thirty_two_writers_all_commit() {
        let dir = tempfile::tempdir().unwrap();
        let log = CubeLog::new(Storage::local(dir.path()).unwrap(), "plan");
        log.create(cube()).await.unwrap();
        let writers: Vec<_> = (0..32)
            .map(|writer| {
                let log = log.clone();
                tokio::spawn(async move {
                    for n in 0..8 {
                        log.commit_append(vec![file(writer * 8 + n)]).await.unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let snapshot = log.latest().await.unwrap();
        assert_eq!(snapshot.version, SnapshotVersion(256));
        assert_eq!(snapshot.files.len(), 256);
    }

    #[tokio::test]
    async fn creating_twice_fails_and_a_gap_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let log = CubeLog::new(storage.clone(), "plan");
        log.create(cube()).await.unwrap();
        assert!(matches!(
            log.create(cube()).await,
            Err(MdfError::AlreadyExists(_))
        ));
        log.commit_append(vec![file(1)]).await.unwrap();
        let gap = storage.path(&["cubes", "plan", "_log", &format!("{:020}.json", 5)]);
        Arc::clone(storage.store())
            .put(&gap, b"{}".to_vec().into())
            .await
            .unwrap();
        // Opening the cube lists its log, and finds the gap.
        let error = CubeLog::new(storage.clone(), "plan")
            .latest()
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("no entry for version 2"), "{error}");
    }

    /// A local folder's listing can show a new entry and miss the one before it while a
    /// commit lands (found by bench/mdf at 8 writers × 10,000 commits): the read waits for
    /// the log to settle instead of calling it corrupt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gap_that_a_commit_fills_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let log = CubeLog::new(storage.clone(), "plan");
        log.create(cube()).await.unwrap();
        log.commit_append(vec![file(1)]).await.unwrap();
        let entry = |version: u64| LogEntry {
            version: SnapshotVersion(version),
            timestamp_ms: now_ms(),
            user: None,
            statement: None,
            action: Action::Append {
                add: vec![file(version as usize)],
            },
        };
        log.put_entry(&entry(3)).await.unwrap();
        let late = log.clone();
        let filler = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
            late.put_entry(&entry(2)).await.unwrap();
        });
        let reader = CubeLog::new(storage.clone(), "plan");
        let lists = || storage.metrics().of(Operation::List).calls;
        let before = lists();
        let snapshot = reader.latest().await.unwrap();
        filler.await.unwrap();
        assert!(lists() - before > 1, "the first listing had the gap");
        assert_eq!(snapshot.version, SnapshotVersion(3));
        let paths: Vec<&str> = snapshot.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, [file(1).path, file(2).path, file(3).path]);
    }

    /// A commit leaves the snapshot it made as the latest known: plans made right after a
    /// write (which look at the known snapshot, such as whether a cube's files have
    /// summaries) see it, and the next read fetches nothing it has.
    #[tokio::test]
    async fn a_commit_knows_the_snapshot_it_made() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let log = CubeLog::new(storage.clone(), "plan");
        log.create(cube()).await.unwrap();
        let version = log.commit_append(vec![file(1)]).await.unwrap();
        let known = log.cached().expect("a known snapshot");
        assert_eq!(known.version, version);
        assert_eq!(known.files.len(), 1);
        assert!(
            Arc::ptr_eq(&log.latest().await.unwrap(), &known),
            "nothing new to read"
        );
    }

    #[tokio::test]
    async fn a_read_fetches_only_the_entries_committed_since_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let other = CubeLog::new(storage.clone(), "plan");
        other.create(cube()).await.unwrap();
        for n in 0..10 {
            other.commit_append(vec![file(n)]).await.unwrap();
        }
        let gets = || storage.metrics().of(Operation::Get).calls;
        let before = gets();
        let log = CubeLog::new(storage.clone(), "plan");
        assert_eq!(log.latest().await.unwrap().version, SnapshotVersion(10));
        assert_eq!(
            gets() - before,
            1 + 11,
            "the first read looks for a checkpoint, then reads every entry"
        );
        // Another handle on the same cube commits; this one's next read sees it.
        other.commit_append(vec![file(10)]).await.unwrap();
        other.commit_append(vec![file(11)]).await.unwrap();
        let lists = || storage.metrics().of(Operation::List).calls;
        let (before, listed) = (gets(), lists());
        let snapshot = log.latest().await.unwrap();
        assert_eq!(
            gets() - before,
            3,
            "then only the new entries are read, and the next found missing"
        );
        assert_eq!(lists(), listed, "without listing the log");
        assert_eq!(snapshot.version, SnapshotVersion(12));
        let paths: Vec<&str> = snapshot.files.iter().map(|f| f.path.as_str()).collect();
        let expected: Vec<String> = (0..12).map(|n| file(n).path).collect();
        assert_eq!(paths, expected, "files in commit order");
        let before = gets();
        assert_eq!(log.latest().await.unwrap().version, SnapshotVersion(12));
        assert_eq!(
            gets() - before,
            1,
            "nothing new: one look for the next entry"
        );

        // Many new entries: the first few one by one, then the rest listed.
        for n in 12..19 {
            other.commit_append(vec![file(n)]).await.unwrap();
        }
        let (before, listed) = (gets(), lists());
        let snapshot = log.latest().await.unwrap();
        assert_eq!(snapshot.version, SnapshotVersion(19));
        assert_eq!(snapshot.files.len(), 19);
        assert_eq!(gets() - before, 7, "each new entry read once");
        assert_eq!(
            lists() - listed,
            1,
            "the entries after the fourth listed at once"
        );
    }

    #[tokio::test]
    async fn time_travel_reads_a_version_or_the_latest_at_a_moment() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let log = CubeLog::new(storage, "plan");
        log.create(cube()).await.unwrap();
        let pause = || tokio::time::sleep(std::time::Duration::from_millis(5));
        pause().await;
        log.commit_append(vec![file(1)]).await.unwrap();
        pause().await;
        let between = now_ms();
        pause().await;
        log.commit_append(vec![file(2)]).await.unwrap();
        let paths = |snapshot: &Snapshot| -> Vec<String> {
            snapshot.files.iter().map(|f| f.path.clone()).collect()
        };
        let at_one = log.at(SnapshotVersion(1)).await.unwrap();
        assert_eq!(paths(&at_one), [file(1).path]);
        assert_eq!(at_one.commits.len(), 2, "create and the first append");
        assert!(log.at(SnapshotVersion(0)).await.unwrap().files.is_empty());
        let as_of = log.as_of(between).await.unwrap();
        assert_eq!(as_of.version, SnapshotVersion(1));
        let latest = log.as_of(now_ms()).await.unwrap();
        assert_eq!(paths(&latest), [file(1).path, file(2).path]);
        let error = log.at(SnapshotVersion(3)).await.unwrap_err().to_string();
        assert!(
            error.contains("has no version 3; its latest is 2"),
            "{error}"
        );
        let error = log.as_of(0).await.unwrap_err().to_string();
        assert!(error.contains("did not exist yet"), "{error}");
        let history: Vec<(u64, &str, usize)> = latest
            .commits
            .iter()
            .map(|c| (c.version.0, c.operation.name(), c.files_added))
            .collect();
        assert_eq!(
            history,
            [(0, "create", 0), (1, "append", 1), (2, "append", 1)]
        );
        // The version before a write, worked out from a later snapshot, is the one read.
        let before = latest.before(SnapshotVersion(2)).unwrap();
        assert_eq!(before.version, at_one.version);
        assert_eq!(paths(&before), paths(&at_one));
        assert_eq!(before.commits, at_one.commits);
        assert!(latest.before(SnapshotVersion(0)).is_none());
        let compaction = Change {
            action: Action::Compact {
                add: vec![DataFile {
                    seq: Some(SnapshotVersion(2)),
                    ..file(3)
                }],
                remove: vec![file(1).path, file(2).path],
            },
            read_version: None,
            user: None,
            statement: None,
        };
        log.commit(compaction).await.unwrap();
        let compacted = log.latest().await.unwrap();
        assert!(
            compacted.before(SnapshotVersion(2)).is_none(),
            "a compaction since replaced the files the version before read"
        );
    }

    #[tokio::test]
    async fn opening_reads_the_last_checkpoint_and_the_entries_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let writer = CubeLog::new(storage.clone(), "plan");
        writer.create(cube()).await.unwrap();
        let commits = 2 * CHECKPOINT_INTERVAL + 50;
        for n in 0..commits {
            writer.commit_append(vec![file(n as usize)]).await.unwrap();
        }
        let gets = || storage.metrics().of(Operation::Get).calls;
        let before = gets();
        let reader = CubeLog::new(storage.clone(), "plan");
        let snapshot = reader.latest().await.unwrap();
        assert_eq!(
            gets() - before,
            2 + 50,
            "the pointer, the checkpoint of version 200, and entries 201..=250"
        );
        assert_eq!(snapshot.version, SnapshotVersion(commits));
        let expected: Vec<String> = (0..commits as usize).map(|n| file(n).path).collect();
        let paths: Vec<String> = snapshot.files.iter().map(|f| f.path.clone()).collect();
        assert_eq!(paths, expected);
        assert_eq!(
            snapshot.commits.len() as u64,
            commits + 1,
            "the whole history"
        );
        // Time travel starts from the checkpoint at or before the version too.
        let before = gets();
        let at = reader.at(SnapshotVersion(150)).await.unwrap();
        assert_eq!(
            gets() - before,
            1 + 1 + 50,
            "a look for an entry after 250, checkpoint 100 and entries 101..=150"
        );
        assert_eq!(at.files.len(), 150);
        // A lost pointer costs reads, never correctness.
        Arc::clone(storage.store())
            .delete(&storage.path(&["cubes", "plan", "_log", LAST_CHECKPOINT]))
            .await
            .unwrap();
        let fresh = CubeLog::new(storage.clone(), "plan");
        assert_eq!(fresh.latest().await.unwrap().files.len(), commits as usize);
    }
}
