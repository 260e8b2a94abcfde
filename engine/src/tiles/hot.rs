//! Hot tiles: the grids planners keep open, recomputed after the tables under them change, so
//! that the first read after a commit — made here or on another replica — is a hit too.
//!
//! The policy:
//!
//! - A query computed into a tile is remembered (its plan and its session's settings); once a
//!   tile of it is served, it is *hot*. At most [`HOT_QUERIES`] are remembered: a new one
//!   pushes out the one remembered longest ago that never became hot, else the hot one hit
//!   longest ago. A query not served from a tile for [`HOT_FOR`] is forgotten.
//! - Every `refresh_interval` (tile cache configuration) a background task reads the versions
//!   of the tables each hot query reads (one log listing per cube, as any query does). When
//!   they changed and this process holds no tile for the new versions, it runs the query again
//!   with the settings it had, which stores the new tile in every tier (Redis included, for
//!   the other replicas).
//!
//! Reading the versions from the log, not from a message, is what makes this safe across
//! replicas: a commit another replica made is seen at the next refresh, and no lost message
//! can leave a replica behind. A refresh never serves anything itself; a slow one only means
//! that the next read computes the tile instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use datafusion::common::Result;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionConfig;
use indexmap::IndexMap;

use super::{TileCache, TileCandidate, TileKey};

/// The most queries remembered.
pub const HOT_QUERIES: usize = 64;

/// A query not served from a tile for this long is forgotten.
pub const HOT_FOR: Duration = Duration::from_secs(600);

/// One remembered query: how to run it again, and its latest tile.
#[derive(Debug)]
struct Remembered {
    query: LogicalPlan,
    config: SessionConfig,
    key: TileKey,
    remembered_at: Instant,
    /// When a tile of it was last served; `None` until one is.
    last_hit: Option<Instant>,
}

/// The queries remembered, by their plan as printed (the same query at any version), and
/// their latest tiles' keys.
#[derive(Debug, Default)]
pub struct HotTiles {
    state: Mutex<Remembering>,
}

#[derive(Debug, Default)]
struct Remembering {
    queries: IndexMap<String, Remembered>,
    by_key: HashMap<TileKey, String>,
}

impl HotTiles {
    fn remembering(&self) -> MutexGuard<'_, Remembering> {
        self.state.lock().expect("hot tiles poisoned")
    }

    /// Remembers `query`, planned with `config`, whose tile is being computed under `key`.
    pub fn computing(&self, query: &LogicalPlan, config: &SessionConfig, key: &TileKey) {
        let id = query.display_indent_schema().to_string();
        let mut remembering = self.remembering();
        let Remembering { queries, by_key } = &mut *remembering;
        if let Some(known) = queries.get_mut(&id) {
            by_key.remove(&known.key);
            known.key = key.clone();
            by_key.insert(key.clone(), id);
            return;
        }
        if queries.len() >= HOT_QUERIES
            && let Some(out) = queries
                .iter()
                .min_by_key(|(_, known)| {
                    (
                        known.last_hit.is_some(),
                        known.last_hit,
                        known.remembered_at,
                    )
                })
                .map(|(id, _)| id.clone())
            && let Some(known) = queries.shift_remove(&out)
        {
            by_key.remove(&known.key);
        }
        by_key.insert(key.clone(), id.clone());
        queries.insert(
            id,
            Remembered {
                query: query.clone(),
                config: config.clone(),
                key: key.clone(),
                remembered_at: Instant::now(),
                last_hit: None,
            },
        );
    }

    /// Records that the tile under `key` was served.
    pub fn served(&self, key: &TileKey) {
        let mut remembering = self.remembering();
        let Remembering { queries, by_key } = &mut *remembering;
        if let Some(known) = by_key.get(key).and_then(|id| queries.get_mut(id)) {
            known.last_hit = Some(Instant::now());
        }
    }

    /// Refreshes the hot queries in `tiles` every `interval` with sessions built from
    /// `template`, for as long as `template` lives (a task of its own).
    pub fn refresh_every(template: Weak<SessionState>, tiles: Arc<TileCache>, interval: Duration) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(template) = template.upgrade() else {
                    return;
                };
                if let Err(error) = tiles.hot_tiles().refresh(&template).await {
                    tracing::warn!(%error, "refreshing the hot tiles failed");
                }
            }
        });
    }

    /// One round: every hot query whose tables changed is planned again in a session built
    /// from `template` with the query's settings, which finds its new tile (another replica
    /// stored it) or computes and stores it. Returns how many were.
    pub async fn refresh(&self, template: &SessionState) -> Result<usize> {
        let due: Vec<(String, LogicalPlan, SessionConfig, TileKey)> = {
            let mut remembering = self.remembering();
            let Remembering { queries, by_key } = &mut *remembering;
            queries.retain(|_, known| {
                let keep = known.remembered_at.elapsed() < HOT_FOR
                    || known.last_hit.is_some_and(|hit| hit.elapsed() < HOT_FOR);
                if !keep {
                    by_key.remove(&known.key);
                }
                keep
            });
            queries
                .iter()
                .filter(|(_, known)| known.last_hit.is_some())
                .map(|(id, known)| {
                    (
                        id.clone(),
                        known.query.clone(),
                        known.config.clone(),
                        known.key.clone(),
                    )
                })
                .collect()
        };
        let mut refreshed = 0;
        for (id, query, config, old_key) in due {
            let state = SessionStateBuilder::new_from_existing(template.clone())
                .with_config(config)
                .build();
            let Some(key) = TileKey::for_plan(&query, &state).await? else {
                continue;
            };
            if key == old_key {
                continue;
            }
            let plan = state
                .query_planner()
                .create_physical_plan(&TileCandidate::wrap(query), &state)
                .await?;
            collect(plan, state.task_ctx()).await?;
            refreshed += 1;
            let mut remembering = self.remembering();
            let Remembering { queries, by_key } = &mut *remembering;
            if let Some(known) = queries.get_mut(&id) {
                by_key.remove(&known.key);
                known.key = key.clone();
                by_key.insert(key, id);
            }
        }
        Ok(refreshed)
    }
}
