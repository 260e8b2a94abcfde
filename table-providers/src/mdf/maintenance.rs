//! Compaction and vacuum: keeping a cube's files few, merged and no more than needed.
//!
//! - [`compact`] rewrites the files that need merging on read (files whose bounds meet another
//!   file's, tombstones) and small files into new sorted files holding just the live cells,
//!   and commits the swap as one `compact` entry. The new files carry the version they were
//!   built from as their `seq`, so a write committed while the compaction ran still wins over
//!   them: concurrent writers lose nothing.
//! - [`vacuum`] deletes data files no version inside the retention period reads: files a
//!   compaction replaced before the period began, and orphans (files no log entry names, left
//!   by a writer that died before committing) older than the period.
//!
//! SQL: `SELECT * FROM mdf_compact('cube.finance')` and
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

use super::log::{Action, Change, FileKind, Snapshot, SnapshotVersion, now_ms};
use super::writer::SortedFileWriter;
use super::{DataFile, MdfError, MdfTable};

/// Rows per file a compaction writes: files split at this many rows cover narrow ranges of
/// the leading dimensions, so a later edit contests only the file around it.
pub const COMPACTED_FILE_ROWS: u64 = 4 * 1024 * 1024;

/// Files smaller than this are compacted together even when nothing in them is overwritten.
pub const SMALL_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Once a cube has this many files for compaction to fold, a server that writes to it compacts
/// it in the background (`MdfTable::compact_in_background`): reads stay fast and the
/// merge plan small without anyone scheduling compactions.
pub const AUTO_COMPACT_FILES: usize = 32;

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

/// The files of `snapshot` a compaction rewrites: those merged on read (their bounds meet
/// another file's), tombstones, and small files; none when that would change nothing.
fn compaction_inputs(snapshot: &Snapshot) -> Vec<DataFile> {
    let chosen: Vec<DataFile> = snapshot
        .files
        .iter()
        .zip(snapshot.rivals())
        .filter(|(file, rivals)| {
            file.kind == FileKind::Tombstones || file.size < SMALL_FILE_BYTES || !rivals.is_empty()
        })
        .map(|(file, _)| file.clone())
        .collect();
    let any_tombstone = chosen.iter().any(|file| file.kind == FileKind::Tombstones);
    if chosen.len() < 2 && !any_tombstone {
        return Vec::new();
    }
    chosen
}

/// Whether `snapshot` has at least [`AUTO_COMPACT_FILES`] files compaction would fold.
pub fn needs_compaction(snapshot: &Snapshot) -> bool {
    compaction_inputs(snapshot).len() >= AUTO_COMPACT_FILES
}

/// Compacts `table`'s latest version (see the module documentation), committing as `user`.
pub async fn compact(
    table: &MdfTable,
    session: &dyn Session,
    user: Option<String>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> datafusion::common::Result<CompactionReport> {
    let snapshot = table.log().latest().await?;
    let inputs = compaction_inputs(&snapshot);
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
    let chosen = Snapshot {
        files: inputs.clone().into(),
        ..snapshot.as_ref().clone()
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
        if file.rows() >= COMPACTED_FILE_ROWS
            && let Some(full) = writer.take()
        {
            added.push(full.finish(table.log(), table.storage()).await?);
        }
    }
    if let Some(last) = writer {
        added.push(last.finish(table.log(), table.storage()).await?);
    }
    for file in &mut added {
        file.seq = Some(snapshot.version);
    }
    progress(Progress::Committing);
    let report = CompactionReport {
        version: None,
        files_removed: inputs.len(),
        files_added: added.len(),
        cells: done,
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
    // Listed before the log is read: a file committed in between is then in the snapshot.
    let stored: Vec<_> = store.list(Some(&data_dir)).try_collect().await?;
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
            let path = location.strip_prefix(&cube_dir).unwrap_or(location);
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
