//! Compaction and vacuum: keeping a cube's files few, merged and no more than needed.
//!
//! - [`compact`] with [`CompactionScope::Full`] rewrites the files that need merging on read
//!   (files whose bounds meet another file's, tombstones) and small files into new sorted
//!   files holding just the live cells, and commits the swap as one `compact` entry. The new
//!   files carry the version they were built from as their `seq`, so a write committed while
//!   the compaction ran still wins over them: concurrent writers lose nothing.
//! - [`CompactionScope::Minor`] folds only the newest run of small files (the files from some
//!   `seq` on, each small) into one file of cells and one of tombstones, with the run's
//!   highest `seq`, and leaves the large files alone: every file outside the run is older
//!   than all of it, so each coordinate's newest row is the same as before. It keeps the
//!   tombstones (an older file may hold their coordinates). A cell edit in a large cube then
//!   costs a fold of recent edits, not a rewrite of the cube.
//! - A server that writes to a cube compacts it in the background ([`due_compaction`]):
//!   minor while the rows of the other files that reads have to rank against the run's stay
//!   a small share of the cube, full once they do not.
//! - [`vacuum`] deletes data files no version inside the retention period reads: files a
//!   compaction replaced before the period began, and orphans (files no log entry names, left
//!   by a writer that died before committing) older than the period; a data file's summary
//!   goes with it.
//!
//! SQL: `SELECT * FROM mdf_compact('cube.finance')` (full) and
//! `SELECT * FROM mdf_vacuum('cube.finance', INTERVAL '7 days')`; the CLI has `quantatom
//! compact` and `quantatom vacuum`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use datafusion::catalog::Session;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::log::{Action, Change, FileKind, Snapshot, SnapshotVersion, now_ms, rivals_among};
use super::summary::{SUMMARIES_FOLDER, summarised_path};
use super::writer::{SortedFileWriter, fold};
use super::{DataFile, MdfError, MdfTable};

/// Rows per file a full compaction writes, unless a [`CompactionPolicy`] says otherwise:
/// files split at this many rows cover narrow ranges of the leading dimensions, so a later
/// edit contests only the file around it.
pub const COMPACTED_FILE_ROWS: u64 = 4 * 1024 * 1024;

/// Files smaller than this are compacted together even when nothing in them is overwritten,
/// unless a [`CompactionPolicy`] says otherwise.
pub const SMALL_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Once a cube has this many files for compaction to fold, a server that writes to it compacts
/// it in the background (`MdfTable::compact_in_background`), unless a [`CompactionPolicy`]
/// says otherwise: reads stay fast and the merge plan small without anyone scheduling
/// compactions.
pub const AUTO_COMPACT_FILES: usize = 32;

/// When a cube's files are compacted, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Files smaller than this (and tombstone files) are *small*: compacted even when nothing
    /// in them is overwritten, and the only files a minor compaction folds.
    pub small_file_bytes: u64,
    /// A background compaction starts once this many files are to fold; 0 never starts one
    /// (compactions then run only when asked for).
    pub auto_compact_files: usize,
    /// Rows per file a full compaction writes.
    pub compacted_file_rows: u64,
    /// The most rows a minor compaction folds (in memory): the newest small files up to this
    /// many rows.
    pub minor_rows: u64,
    /// A background compaction is full, not minor, once the rows reads would rank per
    /// coordinate after a minor one are at least 1/`contested_share` of the cube's rows.
    pub contested_share: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            small_file_bytes: SMALL_FILE_BYTES,
            auto_compact_files: AUTO_COMPACT_FILES,
            compacted_file_rows: COMPACTED_FILE_ROWS,
            minor_rows: 256 * 1024,
            contested_share: 16,
        }
    }
}

impl CompactionPolicy {
    /// Whether `file` is small: a minor compaction may fold it.
    fn is_small(&self, file: &DataFile) -> bool {
        file.kind == FileKind::Tombstones || file.size < self.small_file_bytes
    }
}

/// Which files a compaction folds (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionScope {
    /// Every file merged on read, every tombstone file and every small file, into sorted
    /// files of the live cells: afterwards no file's bounds meet another's.
    Full,
    /// The newest run of small files, into one file of cells and one of tombstones.
    Minor,
}

/// How long vacuum keeps what old versions read, unless told otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The youngest an unreferenced file may be for vacuum to delete it as an orphan, whatever the
/// retention: a writer may have stored it and not yet committed.
pub const ORPHAN_MIN_AGE: Duration = Duration::from_secs(3600);

/// How far a compaction or vacuum has got, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Merged cells written so far, of at most `total` (the rows of the files read).
    Merging {
        /// Cells written so far.
        done: u64,
        /// Rows in the files being compacted.
        total: u64,
    },
    /// The new files are being committed.
    Committing,
    /// Files deleted so far, of `total`.
    Deleting {
        /// Files deleted so far.
        done: u64,
        /// Files to delete.
        total: u64,
    },
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionReport {
    /// The version it committed; `None` when there was nothing to compact.
    pub version: Option<SnapshotVersion>,
    /// Files replaced.
    pub files_removed: usize,
    /// Files written.
    pub files_added: usize,
    /// Live cells in the files written.
    pub cells: u64,
}

/// What a vacuum did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VacuumReport {
    /// Files deleted.
    pub files_deleted: usize,
    /// Their total size in bytes.
    pub bytes_deleted: u64,
}

/// The files of `snapshot` a full compaction rewrites: those merged on read (their bounds
/// meet another file's), tombstones, and small files; none when that would change nothing.
fn compaction_inputs(snapshot: &Snapshot, policy: &CompactionPolicy) -> Vec<DataFile> {
    let chosen: Vec<DataFile> = snapshot
        .files
        .iter()
        .zip(snapshot.rivals())
        .filter(|(file, rivals)| policy.is_small(file) || !rivals.is_empty())
        .map(|(file, _)| file.clone())
        .collect();
    let any_tombstone = chosen.iter().any(|file| file.kind == FileKind::Tombstones);
    if chosen.len() < 2 && !any_tombstone {
        return Vec::new();
    }
    chosen
}

/// The files of `snapshot` a minor compaction folds, oldest first: the newest small files,
/// taking all the files of one `seq` or none, while they are small and hold at most
/// `minor_rows` rows together. So every file left out has a lower `seq` than every file
/// taken.
fn newest_run(snapshot: &Snapshot, policy: &CompactionPolicy) -> Vec<DataFile> {
    let mut newest_first: Vec<&DataFile> = snapshot.files.iter().collect();
    newest_first.sort_by_key(|file| std::cmp::Reverse(file.sequence()));
    let mut run = Vec::new();
    let mut rows = 0;
    for same_seq in newest_first.chunk_by(|a, b| a.sequence() == b.sequence()) {
        let seq_rows: u64 = same_seq.iter().map(|file| file.rows).sum();
        if !same_seq.iter().all(|file| policy.is_small(file)) || rows + seq_rows > policy.minor_rows
        {
            break;
        }
        rows += seq_rows;
        run.extend(same_seq.iter().map(|file| (*file).clone()));
    }
    run.reverse();
    run
}

/// Whether `snapshot` has enough files to fold for a background compaction (by `policy`).
pub fn needs_compaction(snapshot: &Snapshot, policy: &CompactionPolicy) -> bool {
    policy.auto_compact_files > 0
        && compaction_inputs(snapshot, policy).len() >= policy.auto_compact_files
}

/// The compaction a server that wrote to `table` runs in the background at `snapshot`, if
/// any: none until [`needs_compaction`]; full when the newest run of small files holds every
/// file, or is short (older folds pile up), or when, after a minor compaction, reads would
/// rank at least 1/`contested_share` of the cube's rows per coordinate (the run's rows and
/// the rows of other files inside a box they share with another file, counted by reading
/// those boxes); minor otherwise.
pub async fn due_compaction(
    table: &MdfTable,
    session: &dyn Session,
    snapshot: &Snapshot,
) -> datafusion::common::Result<Option<CompactionScope>> {
    let policy = table.compaction_policy();
    if !needs_compaction(snapshot, policy) {
        return Ok(None);
    }
    let run = newest_run(snapshot, policy);
    if run.len() == snapshot.files.len() || run.len() < policy.auto_compact_files / 2 {
        return Ok(Some(CompactionScope::Full));
    }
    // The files a minor compaction leaves, and the one it would write: the run's hull.
    let folded: HashSet<&str> = run.iter().map(|file| file.path.as_str()).collect();
    let mut after: Vec<DataFile> = snapshot
        .files
        .iter()
        .filter(|file| !folded.contains(file.path.as_str()))
        .cloned()
        .collect();
    let left = after.len();
    let hull = run
        .iter()
        .map(|file| file.bounds.clone())
        .reduce(|a, b| Some(a?.union(&b?)))
        .flatten();
    after.push(DataFile {
        bounds: hull,
        ..run[0].clone()
    });
    let files: Vec<&DataFile> = after.iter().collect();
    let mut contested: u64 = run.iter().map(|file| file.rows).sum();
    for (index, rivals) in rivals_among(&files).into_iter().enumerate().take(left) {
        let rivals: Vec<&DataFile> = rivals.into_iter().map(|rival| files[rival]).collect();
        contested += table
            .files()
            .rows_inside(session, files[index], &rivals)
            .await?;
    }
    let rows: u64 = snapshot.files.iter().map(|file| file.rows).sum();
    Ok(Some(if contested * policy.contested_share >= rows {
        CompactionScope::Full
    } else {
        CompactionScope::Minor
    }))
}

/// Compacts `table`'s latest version, the files `scope` says (see the module documentation),
/// committing as `user`.
pub async fn compact(
    table: &MdfTable,
    session: &dyn Session,
    scope: CompactionScope,
    user: Option<String>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> datafusion::common::Result<CompactionReport> {
    let snapshot = table.log().latest().await?;
    let policy = table.compaction_policy();
    let inputs = match scope {
        CompactionScope::Full => compaction_inputs(&snapshot, policy),
        CompactionScope::Minor => Some(newest_run(&snapshot, policy))
            .filter(|run| run.len() >= 2)
            .unwrap_or_default(),
    };
    if inputs.is_empty() {
        return Ok(CompactionReport {
            version: None,
            files_removed: 0,
            files_added: 0,
            cells: 0,
        });
    }
    let total = inputs.iter().map(|file| file.rows).sum();
    progress(Progress::Merging { done: 0, total });
    let added = match scope {
        CompactionScope::Full => {
            let mut added =
                merge_sorted(table, session, &snapshot, &inputs, total, progress).await?;
            for file in &mut added {
                file.seq = Some(snapshot.version);
            }
            added
        }
        CompactionScope::Minor => {
            let newest = inputs.iter().map(DataFile::sequence).max();
            let mut added = fold(table.log(), table.storage(), table.definition(), &inputs).await?;
            for file in &mut added {
                file.seq = newest;
            }
            added
        }
    };
    let cells = added
        .iter()
        .filter(|file| file.kind == FileKind::Cells)
        .map(|file| file.rows)
        .sum();
    progress(Progress::Committing);
    let report = CompactionReport {
        version: None,
        files_removed: inputs.len(),
        files_added: added.len(),
        cells,
    };
    let version = table
        .log()
        .commit(Change {
            action: Action::Compact {
                add: added,
                remove: inputs.into_iter().map(|file| file.path).collect(),
            },
            read_version: None,
            statement: None,
            user,
        })
        .await?;
    Ok(CompactionReport {
        version: Some(version),
        ..report
    })
}

/// The live cells of `inputs` (files of `snapshot`, `total` rows), merged on read, sorted and
/// written into new files of at most `compacted_file_rows` rows.
async fn merge_sorted(
    table: &MdfTable,
    session: &dyn Session,
    snapshot: &Snapshot,
    inputs: &[DataFile],
    total: u64,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> datafusion::common::Result<Vec<DataFile>> {
    let chosen = Snapshot {
        files: inputs.to_vec().into(),
        ..snapshot.clone()
    };
    let merged = table
        .scan_snapshot(session, &chosen, None, &[], None)
        .await?;
    let cube = table.definition();
    let schema = table.schema_ref();
    let ordering = LexOrdering::new((0..cube.dimensions.len()).map(|index| {
        let name = schema.field(index).name();
        PhysicalSortExpr::new_default(Arc::new(Column::new(name, index)))
    }))
    .expect("a cube has at least one dimension");
    let sorted = Arc::new(SortExec::new(ordering.clone(), merged).with_preserve_partitioning(true));
    let in_order = Arc::new(SortPreservingMergeExec::new(ordering, sorted));
    let mut cells = execute_stream(in_order, session.task_ctx())?;

    let mut added = Vec::new();
    let mut writer: Option<SortedFileWriter> = None;
    let mut done = 0;
    while let Some(batch) = cells.try_next().await? {
        let file = match writer.as_mut() {
            Some(file) => file,
            None => writer.insert(SortedFileWriter::new(cube, FileKind::Cells, 0)?),
        };
        file.write(&batch)?;
        done += batch.num_rows() as u64;
        progress(Progress::Merging { done, total });
        if file.rows() >= table.compaction_policy().compacted_file_rows
            && let Some(full) = writer.take()
        {
            added.push(full.finish(table.log(), table.storage()).await?);
        }
    }
    if let Some(last) = writer {
        added.push(last.finish(table.log(), table.storage()).await?);
    }
    Ok(added)
}

/// Deletes `table`'s data files that no version committed within `retention` of now reads
/// (see the module documentation); orphans must also be at least `orphan_min_age` old.
pub async fn vacuum(
    table: &MdfTable,
    retention: Duration,
    orphan_min_age: Duration,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<VacuumReport, MdfError> {
    let store = table.storage().store();
    let data_dir = table.log().cube_dir().clone().join("data");
    let summaries_dir = table.log().cube_dir().clone().join(SUMMARIES_FOLDER);
    // Listed before the log is read: a file committed in between is then in the snapshot.
    let mut stored: Vec<_> = store.list(Some(&data_dir)).try_collect().await?;
    let summaries: Vec<_> = store.list(Some(&summaries_dir)).try_collect().await?;
    stored.extend(summaries);
    let snapshot = table.log().latest().await?;
    let now = now_ms();
    let cutoff = now.saturating_sub(retention.as_millis() as u64);
    let orphan_cutoff = now.saturating_sub(retention.max(orphan_min_age).as_millis() as u64);
    // The oldest version still to be readable: the one current at the cutoff.
    let oldest_kept = snapshot
        .commits
        .iter()
        .take_while(|commit| commit.timestamp_ms <= cutoff)
        .last()
        .map(|commit| commit.version);
    let live: HashSet<&str> = snapshot
        .files
        .iter()
        .map(|file| file.path.as_str())
        .collect();
    let retired: HashMap<&str, SnapshotVersion> = snapshot
        .retired
        .iter()
        .map(|file| (file.path.as_str(), file.retired_at))
        .collect();
    let cube_dir = format!("{}/", table.log().cube_dir());
    let doomed: Vec<_> = stored
        .into_iter()
        .filter(|object| {
            let location = object.location.as_ref();
            let stored_path = location.strip_prefix(&cube_dir).unwrap_or(location);
            // A summary lives and goes with its data file.
            let owner = summarised_path(stored_path);
            let path = owner.as_deref().unwrap_or(stored_path);
            if live.contains(path) {
                return false;
            }
            match retired.get(path) {
                Some(&retired_at) => oldest_kept.is_some_and(|oldest| retired_at <= oldest),
                None => (object.last_modified.timestamp_millis() as u64) < orphan_cutoff,
            }
        })
        .collect();
    let total = doomed.len() as u64;
    let mut report = VacuumReport {
        files_deleted: 0,
        bytes_deleted: 0,
    };
    for object in doomed {
        progress(Progress::Deleting {
            done: report.files_deleted as u64,
            total,
        });
        match store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        report.files_deleted += 1;
        report.bytes_deleted += object.size;
    }
    progress(Progress::Deleting { done: total, total });
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::{CompactionPolicy, needs_compaction, newest_run};
    use crate::mdf::{CubeDefinition, DataFile, FileKind, MarksCell, Snapshot, SnapshotVersion};

    /// A file `name` of `rows` rows and `size` bytes, winning by `seq`.
    fn file(name: &str, seq: u64, rows: u64, size: u64) -> DataFile {
        DataFile {
            path: format!("data/{name}.parquet"),
            size,
            rows,
            kind: FileKind::Cells,
            seq: Some(SnapshotVersion(seq)),
            bounds: None,
            sha256: None,
            summary: None,
            marks: MarksCell::default(),
        }
    }

    /// A snapshot of the one-dimensional cube `plan` holding `files`.
    fn snapshot_of(files: Vec<DataFile>) -> Snapshot {
        Snapshot {
            version: SnapshotVersion(9),
            cube: CubeDefinition {
                name: "plan".into(),
                dimensions: vec!["entity".into()],
                measures: Vec::new(),
            },
            files: files.into(),
            commits: Default::default(),
            retired: Default::default(),
        }
    }

    fn run_names(files: Vec<DataFile>, policy: &CompactionPolicy) -> Vec<String> {
        newest_run(&snapshot_of(files), policy)
            .into_iter()
            .map(|file| file.path)
            .collect()
    }

    /// A background compaction is due once `auto_compact_files` files are to fold, and never
    /// when that is 0.
    #[test]
    fn background_compactions_start_at_their_file_count_unless_it_is_zero() {
        let small =
            |count: u64| snapshot_of((1..=count).map(|seq| file("f", seq, 1, 10)).collect());
        let policy = |auto_compact_files| CompactionPolicy {
            auto_compact_files,
            ..CompactionPolicy::default()
        };
        assert!(!needs_compaction(&small(2), &policy(3)));
        assert!(needs_compaction(&small(3), &policy(3)));
        assert!(!needs_compaction(&small(100), &policy(0)));
    }

    /// The run is the newest small files, oldest first: it stops at a large file, takes all
    /// the files of one `seq` or none, and stops before it would pass `minor_rows`.
    #[test]
    fn the_newest_run_is_a_suffix_of_small_files_by_seq() {
        let policy = CompactionPolicy {
            small_file_bytes: 100,
            minor_rows: 10,
            ..CompactionPolicy::default()
        };
        let tombstones = DataFile {
            kind: FileKind::Tombstones,
            ..file("t", 5, 1, 1000)
        };
        let cases = [
            (
                vec![
                    file("old", 1, 1, 10),
                    file("large", 2, 1, 1000),
                    file("a", 3, 1, 10),
                    file("b", 4, 1, 10),
                    tombstones,
                    file("c", 6, 1, 10),
                ],
                vec!["a", "b", "t", "c"],
                "a tombstone file is small whatever its size; the large file ends the run",
            ),
            (
                vec![
                    file("a", 3, 1, 10),
                    file("large", 4, 1, 1000),
                    file("b", 4, 1, 10),
                    file("c", 5, 1, 10),
                ],
                vec!["c"],
                "a small file sharing its seq with a large one stays out",
            ),
            (
                vec![
                    file("a", 3, 5, 10),
                    file("b", 4, 3, 10),
                    file("c", 5, 3, 10),
                    file("d", 6, 3, 10),
                ],
                vec!["b", "c", "d"],
                "at most minor_rows rows",
            ),
        ];
        for (files, run, why) in cases {
            let expected: Vec<String> = run.iter().map(|n| format!("data/{n}.parquet")).collect();
            assert_eq!(run_names(files, &policy), expected, "{why}");
        }
    }
}
