//! The MDF transaction log: one JSON entry per commit under `cubes/<name>/_log/`.
//!
//! Entry `N` is the object `_log/<N as 20 digits>.json`, written with put-if-absent
//! (`PutMode::Create`), so two writers can never both own a version: the loser sees
//! `AlreadyExists`, re-reads the log and tries the next version. Entry 0 creates the cube and
//! holds its definition; later entries add data files. A snapshot at version `N` is the cube
//! definition plus every file added by entries `0..=N`. The format is specified in
//! `docs/mdf.md`.

use std::time::{SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{CubeDefinition, MdfError};
use crate::storage::Storage;

/// How many times a commit re-reads the log after losing a version race before giving up.
const MAX_COMMIT_ATTEMPTS: usize = 100;

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
    /// Cells appended in new files.
    Append {
        /// The files added.
        add: Vec<DataFile>,
    },
}

/// One log entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The version this entry commits.
    pub version: SnapshotVersion,
    /// Wall-clock commit time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// What the commit did.
    #[serde(flatten)]
    pub action: Action,
}

/// The state of a cube at one version: what a scan reads.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The version read.
    pub version: SnapshotVersion,
    /// The cube's definition from entry 0.
    pub cube: CubeDefinition,
    /// Every live data file, oldest first.
    pub files: Vec<DataFile>,
}

/// The log of one cube.
#[derive(Debug, Clone)]
pub struct CubeLog {
    storage: Storage,
    cube_dir: Path,
}

impl CubeLog {
    /// The log of the cube stored under `cubes/<name>/`.
    pub fn new(storage: Storage, name: &str) -> Self {
        let cube_dir = storage.path(&["cubes", name]);
        Self { storage, cube_dir }
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

    /// The committed versions, in order; errors if the log has a gap or a stray object.
    async fn versions(&self) -> Result<Vec<SnapshotVersion>, MdfError> {
        let objects: Vec<_> = self
            .storage
            .store()
            .list(Some(&self.log_dir()))
            .try_collect()
            .await?;
        let mut versions = objects
            .iter()
            .map(|object| {
                let name = object.location.filename().unwrap_or_default();
                name.strip_suffix(".json")
                    .and_then(|digits| digits.parse::<u64>().ok())
                    .map(SnapshotVersion)
                    .ok_or_else(|| {
                        MdfError::Corrupt(format!(
                            "unexpected object {} in the log",
                            object.location
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        versions.sort();
        if let Some(position) = versions
            .iter()
            .enumerate()
            .position(|(i, v)| v.0 != i as u64)
        {
            return Err(MdfError::Corrupt(format!(
                "log of {} has no entry for version {position}",
                self.cube_dir
            )));
        }
        Ok(versions)
    }

    async fn read_entry(&self, version: SnapshotVersion) -> Result<LogEntry, MdfError> {
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

    /// The latest committed version (one listing of the log, no entry read); `NotFound` when
    /// the cube has no log.
    pub async fn latest_version(&self) -> Result<SnapshotVersion, MdfError> {
        self.versions()
            .await?
            .pop()
            .ok_or_else(|| MdfError::NotFound(self.cube_dir.to_string()))
    }

    /// Reads the latest snapshot; `NotFound` when the cube has no log.
    pub async fn latest(&self) -> Result<Snapshot, MdfError> {
        let versions = self.versions().await?;
        if versions.is_empty() {
            return Err(MdfError::NotFound(self.cube_dir.to_string()));
        }
        let mut entries = Vec::with_capacity(versions.len());
        for version in versions {
            entries.push(self.read_entry(version).await?);
        }
        snapshot_of(entries)
    }

    /// Writes version 0 with the cube's definition; fails if the cube exists.
    pub async fn create(&self, cube: CubeDefinition) -> Result<(), MdfError> {
        let entry = LogEntry {
            version: SnapshotVersion(0),
            timestamp_ms: now_ms(),
            action: Action::Create { cube },
        };
        match self.put_entry(&entry).await {
            Err(MdfError::Storage(object_store::Error::AlreadyExists { .. })) => {
                Err(MdfError::AlreadyExists(self.cube_dir.to_string()))
            }
            other => other,
        }
    }

    /// Commits an append of `files` at the next free version and returns that version.
    /// Appends never conflict, so a lost race simply moves on to the next version.
    pub async fn commit_append(&self, files: Vec<DataFile>) -> Result<SnapshotVersion, MdfError> {
        let mut next = SnapshotVersion(self.latest().await?.version.0 + 1);
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let entry = LogEntry {
                version: next,
                timestamp_ms: now_ms(),
                action: Action::Append { add: files.clone() },
            };
            match self.put_entry(&entry).await {
                Ok(()) => return Ok(next),
                Err(MdfError::Storage(object_store::Error::AlreadyExists { .. })) => {
                    tracing::debug!(version = %next, cube = %self.cube_dir, "lost commit race, retrying");
                    next = SnapshotVersion(self.versions().await?.len() as u64);
                }
                Err(e) => return Err(e),
            }
        }
        Err(MdfError::CommitContention(MAX_COMMIT_ATTEMPTS))
    }

    async fn put_entry(&self, entry: &LogEntry) -> Result<(), MdfError> {
        let json = serde_json::to_vec(entry).map_err(|e| MdfError::Corrupt(e.to_string()))?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.storage
            .store()
            .put_opts(
                &self.entry_path(entry.version),
                PutPayload::from(json),
                options,
            )
            .await?;
        Ok(())
    }
}

fn snapshot_of(entries: Vec<LogEntry>) -> Result<Snapshot, MdfError> {
    let mut entries = entries.into_iter();
    let Some(LogEntry {
        action: Action::Create { cube },
        mut version,
        ..
    }) = entries.next()
    else {
        return Err(MdfError::Corrupt(
            "log entry 0 does not create the cube".into(),
        ));
    };
    let mut files = Vec::new();
    for entry in entries {
        match entry.action {
            Action::Append { add } => files.extend(add),
            Action::Create { .. } => {
                return Err(MdfError::Corrupt(format!(
                    "log entry {} creates the cube again",
                    entry.version
                )));
            }
        }
        version = entry.version;
    }
    Ok(Snapshot {
        version,
        cube,
        files,
    })
}

fn now_ms() -> u64 {
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
        }
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
        let mut paths: Vec<String> = snapshot.files.into_iter().map(|f| f.path).collect();
        paths.sort();
        let mut expected: Vec<String> = (0..16).map(|n| file(n).path).collect();
        expected.sort();
        assert_eq!(paths, expected, "every committed file is in the snapshot");
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
        let error = log.latest().await.unwrap_err().to_string();
        assert!(error.contains("no entry for version 2"), "{error}");
    }
}
