//! Transaction blocks over cube writes: the writes of `BEGIN; ...; COMMIT` become one MDF
//! commit, visible to other sessions together or not at all.
//!
//! A session's [`SessionWrites`] (a [`SessionConfig`] extension) knows the statement running
//! and the block open, if any. Inside a block a write does everything an autocommit write does
//! (validates, writes its data files) but *stages* its files instead of committing them. The
//! session's own reads of the cube see the staged files on top of the latest version (each a
//! sequence number above it, in the order written), so a block reads its own writes. `COMMIT`
//! commits the staged files as one log entry: as they are when no two of them can share a
//! coordinate and there are few, else folded first into one file of cells and one of
//! tombstones (the last write of each coordinate wins, as it did in the block). `ROLLBACK`,
//! an error before `COMMIT` and a dropped connection discard the block: its files were never
//! named by a log entry, and vacuum removes them.
//!
//! A block writes one cube: each cube has its own log, and a commit spanning two logs could
//! be seen half done. Member changes (`dim.*`) commit on their own and are refused in a
//! block.
//!
//! [`SessionConfig`]: datafusion::prelude::SessionConfig

use std::sync::{Arc, Mutex};

use datafusion::execution::TaskContext;
use datafusion::prelude::SessionConfig;

use super::dml::{CommitAuthor, commit_change};
use super::log::{Action, DataFile, Snapshot, SnapshotVersion, StatementRef};
use super::writer::fold;
use super::{MdfError, MdfTable};

/// Staged files above which `COMMIT` folds them into one file of cells and one of tombstones
/// even when no two share a coordinate: a block of many one-cell statements should not leave
/// as many files for every read to open.
const FOLD_ABOVE_FILES: usize = 16;

/// One session's writes: the statement it runs and the transaction block it has open.
#[derive(Debug, Default)]
pub struct SessionWrites {
    state: Mutex<SessionWriteState>,
}

#[derive(Debug, Default)]
struct SessionWriteState {
    statement: Option<RunningStatement>,
    block: Option<Block>,
}

/// The statement a session runs: its text, and its id once a write asked for it (most
/// statements write nothing, and run too often to make an id each).
#[derive(Debug)]
struct RunningStatement {
    text: String,
    id: Option<String>,
}

/// An open transaction block.
#[derive(Debug)]
struct Block {
    /// The block's statement id, recorded with its commit.
    id: String,
    /// The cube the block writes, once it has written.
    cube: Option<MdfTable>,
    /// The writes staged, in the order made.
    staged: Vec<Staged>,
    /// Open savepoints, oldest first: each name with the number of writes staged before it.
    savepoints: Vec<(String, usize)>,
    /// Whether a statement of the block failed: only its end is accepted then.
    failed: bool,
}

/// One write staged in a block.
#[derive(Debug)]
struct Staged {
    action: Action,
    read_version: Option<SnapshotVersion>,
    statement: Option<String>,
}

/// How a block's end went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockEnd {
    /// Its writes committed as this version (`None`: it wrote nothing).
    Committed(Option<SnapshotVersion>),
    /// It was discarded: rolled back, or failed before its end.
    RolledBack,
    /// No block was open.
    NoBlock,
}

/// A statement id: milliseconds since the epoch and a random number, in hex.
fn new_statement_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    format!("{now:x}-{random:016x}")
}

impl SessionWrites {
    /// The writes of the session configured by `config`, if it keeps them (server sessions
    /// do; a session without them autocommits every write and records no statement).
    pub fn of(config: &SessionConfig) -> Option<Arc<SessionWrites>> {
        config.get_extension::<SessionWrites>()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SessionWriteState> {
        self.state.lock().expect("session writes poisoned")
    }

    /// Records that the statement `text` starts, under a new id.
    pub fn statement_started(&self, text: &str) {
        self.state().statement = Some(RunningStatement {
            text: text.to_owned(),
            id: None,
        });
    }

    /// The statement running, if the session recorded one.
    pub fn statement(&self) -> Option<StatementRef> {
        let mut state = self.state();
        let running = state.statement.as_mut()?;
        Some(StatementRef {
            id: running.id.get_or_insert_with(new_statement_id).clone(),
            text: running.text.clone(),
        })
    }

    /// Opens a block; `false` when one is open already (it stays open).
    pub fn begin(&self) -> bool {
        let mut state = self.state();
        if state.block.is_some() {
            return false;
        }
        state.block = Some(Block {
            id: new_statement_id(),
            cube: None,
            staged: Vec::new(),
            savepoints: Vec::new(),
            failed: false,
        });
        true
    }

    /// Whether a block is open.
    pub fn in_block(&self) -> bool {
        self.state().block.is_some()
    }

    /// Whether the open block had a statement fail (only `COMMIT` or `ROLLBACK` is accepted).
    pub fn is_failed(&self) -> bool {
        self.state()
            .block
            .as_ref()
            .is_some_and(|block| block.failed)
    }

    /// Records that a statement of the open block failed, if one is open.
    pub fn fail(&self) {
        if let Some(block) = &mut self.state().block {
            block.failed = true;
        }
    }

    /// Whether the open block has writes staged (reads must see them, so no plan made before
    /// them may be reused).
    pub fn has_staged(&self) -> bool {
        self.state()
            .block
            .as_ref()
            .is_some_and(|block| !block.staged.is_empty())
    }

    /// Discards the open block, if any.
    pub fn rollback(&self) -> BlockEnd {
        match self.state().block.take() {
            Some(_) => BlockEnd::RolledBack,
            None => BlockEnd::NoBlock,
        }
    }

    /// Opens savepoint `name` in the open block; `false` when no block is open.
    pub fn savepoint(&self, name: &str) -> bool {
        let mut state = self.state();
        let Some(block) = &mut state.block else {
            return false;
        };
        let staged = block.staged.len();
        block.savepoints.push((name.to_owned(), staged));
        true
    }

    /// Releases savepoint `name` and those opened after it (their writes stay); `false` when
    /// no such savepoint is open.
    pub fn release(&self, name: &str) -> bool {
        self.to_savepoint(name, |block, position| block.savepoints.truncate(position))
    }

    /// Discards the writes staged after savepoint `name` and the savepoints opened after it;
    /// the savepoint stays open and a failed block works again. `false` when no such
    /// savepoint is open.
    pub fn rollback_to(&self, name: &str) -> bool {
        self.to_savepoint(name, |block, position| {
            let staged = block.savepoints[position].1;
            block.staged.truncate(staged);
            if block.staged.is_empty() {
                block.cube = None;
            }
            block.savepoints.truncate(position + 1);
            block.failed = false;
        })
    }

    fn to_savepoint(&self, name: &str, change: impl FnOnce(&mut Block, usize)) -> bool {
        let mut state = self.state();
        let Some(block) = &mut state.block else {
            return false;
        };
        match block.savepoints.iter().rposition(|(open, _)| open == name) {
            Some(position) => {
                change(block, position);
                true
            }
            None => false,
        }
    }

    /// Stages `action` on `table` (read at `read_version`) when a block is open, and says
    /// whether it did; without a block the caller commits it. Fails when the block wrote
    /// another cube.
    pub(crate) fn stage(
        &self,
        table: &MdfTable,
        action: &Action,
        read_version: Option<SnapshotVersion>,
    ) -> Result<bool, MdfError> {
        let mut state = self.state();
        let statement = state.statement.as_ref().map(|s| s.text.clone());
        let Some(block) = &mut state.block else {
            return Ok(false);
        };
        let name = &table.definition().name;
        match &block.cube {
            Some(cube) if cube.definition().name != *name => {
                return Err(MdfError::Unsupported(format!(
                    "this transaction block has written cube {}; one block writes one cube \
                     (commit it before writing cube {name})",
                    cube.definition().name
                )));
            }
            Some(_) => {}
            None => block.cube = Some(table.clone()),
        }
        block.staged.push(Staged {
            action: action.clone(),
            read_version,
            statement,
        });
        Ok(true)
    }

    /// `snapshot` (the latest of `table`) with the files the open block staged for `table` on
    /// top, each winning over the files before it.
    pub(crate) fn overlay(&self, table: &MdfTable, snapshot: Arc<Snapshot>) -> Arc<Snapshot> {
        let state = self.state();
        let Some(block) = &state.block else {
            return snapshot;
        };
        let writes_table = block
            .cube
            .as_ref()
            .is_some_and(|cube| cube.definition().name == table.definition().name);
        if !writes_table || block.staged.is_empty() {
            return snapshot;
        }
        let mut overlaid = snapshot.as_ref().clone();
        let staged_files = block.staged.iter().flat_map(|staged| staged.action.added());
        for (file, seq) in staged_files.zip(snapshot.version.0 + 1..) {
            overlaid.files.push(DataFile {
                seq: Some(SnapshotVersion(seq)),
                ..file.clone()
            });
        }
        Arc::new(overlaid)
    }

    /// Ends the open block: commits its writes as one commit (a failed block is rolled back
    /// instead). The block is over whatever happens; a failed commit wrote nothing.
    pub async fn commit(&self, context: &Arc<TaskContext>) -> Result<BlockEnd, MdfError> {
        let Some(block) = self.state().block.take() else {
            return Ok(BlockEnd::NoBlock);
        };
        if block.failed {
            return Ok(BlockEnd::RolledBack);
        }
        let Some(table) = block.cube else {
            return Ok(BlockEnd::Committed(None));
        };
        let mut statements: Vec<String> = Vec::new();
        for text in block.staged.iter().filter_map(|s| s.statement.clone()) {
            if statements.last() != Some(&text) {
                statements.push(text);
            }
        }
        let statement = StatementRef {
            id: block.id,
            text: statements.join("\n"),
        };
        let read_version = block.staged.iter().filter_map(|s| s.read_version).min();
        let all = |kind: fn(&Action) -> bool| block.staged.iter().all(|s| kind(&s.action));
        let blind = all(|action| matches!(action, Action::Append { .. }));
        let deletes = all(|action| matches!(action, Action::Delete { .. }));
        let files: Vec<DataFile> = block
            .staged
            .iter()
            .flat_map(|staged| staged.action.added().iter().cloned())
            .collect();
        let overlapping = files
            .iter()
            .enumerate()
            .any(|(i, file)| files[i + 1..].iter().any(|other| file.may_overlap(other)));
        let add = if overlapping || files.len() > FOLD_ABOVE_FILES {
            fold(table.log(), table.storage(), table.definition(), &files).await?
        } else {
            files
        };
        let action = if blind {
            Action::Append { add }
        } else if deletes {
            Action::Delete { add }
        } else {
            Action::Update { add }
        };
        let user = CommitAuthor::of(context);
        let version =
            commit_change(&table, action, read_version, user, Some(statement), context).await?;
        Ok(BlockEnd::Committed(Some(version)))
    }
}

#[cfg(test)]
mod tests {
    use super::SessionWrites;

    /// The id is made when a write first asks for it, and the statement keeps it: every change
    /// of one statement is recorded with one id, and the next statement gets another.
    #[test]
    fn a_statement_keeps_one_id_and_the_next_gets_another() {
        let writes = SessionWrites::default();
        assert_eq!(writes.statement(), None);
        let text = "UPDATE cube.finance SET amount = 1";
        writes.statement_started(text);
        let first = writes.statement().expect("a statement runs");
        assert_eq!(first.text, text);
        assert_eq!(writes.statement(), Some(first.clone()));
        writes.statement_started(text);
        let second = writes.statement().expect("a statement runs");
        assert_eq!(second.text, text);
        assert_ne!(second.id, first.id);
    }
}
