//! Which queries are cached, and the key their tile is stored under.

use std::fmt;

use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
use quantatom_table_providers::mdf::transaction::SessionWrites;
use quantatom_table_providers::metadata::SessionAccess;
use quantatom_table_providers::settings::QuantatomOptions;
use quantatom_table_providers::table_version;
use sha2::{Digest, Sha256};

/// The key of a tile: a SHA-256 of what its result depends on (see the module documentation
/// of [`super`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TileKey([u8; 32]);

impl TileKey {
    /// The key of the result of `plan` (a [`super::TileCandidate`]'s query), when it is
    /// cached: the session has the tile cache on and no staged writes, the plan has no
    /// placeholders left and scans only versioned tables. Reads the version of every table
    /// the plan scans.
    pub async fn for_plan(plan: &LogicalPlan, session: &dyn Session) -> Result<Option<Self>> {
        let config = session.config();
        let staged = SessionWrites::of(config).is_some_and(|writes| writes.has_staged());
        if staged || !QuantatomOptions::of(config).tile_cache {
            return Ok(None);
        }
        let mut scans = Vec::new();
        let mut placeholders = false;
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                scans.push((
                    scan.table_name.to_string(),
                    source_as_provider(&scan.source)?,
                ));
            }
            node.apply_expressions(|expr| {
                placeholders |= expr.exists(|expr| {
                    Ok(matches!(
                        expr,
                        datafusion::logical_expr::Expr::Placeholder(_)
                    ))
                })?;
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        if scans.is_empty() || placeholders {
            return Ok(None);
        }
        let mut hasher = Sha256::new();
        hasher.update(plan.display_indent_schema().to_string());
        for (name, provider) in scans {
            let Some(version) = table_version(provider.as_ref()).await else {
                return Ok(None);
            };
            hasher.update(format!("\u{0}{name}@{}", version?));
        }
        hasher.update(format!("\u{0}scope:{}", access_scope(session)));
        let time_zone = config.options().execution.time_zone.as_deref();
        hasher.update(format!("\u{0}tz:{}", time_zone.unwrap_or_default()));
        let mut key = [0; 32];
        key.copy_from_slice(hasher.finalize().as_slice());
        Ok(Some(Self(key)))
    }

    /// The key in the shared store.
    pub fn redis_key(&self) -> String {
        format!("quantatom:tile:{self}")
    }

    /// The first 12 hex digits, for `EXPLAIN`.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_owned()
    }
}

impl fmt::Display for TileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for TileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TileKey({})", self.short())
    }
}

/// The cells the session's user may read, as part of the key: the fingerprint of its grants
/// (users who reach the same cells share tiles; others never do), empty for the engine's own
/// sessions. The plan itself also carries a scoped user's filters (see `access_rule`).
fn access_scope(session: &dyn Session) -> &str {
    SessionAccess::of(session.config_options()).map_or("", |access| access.fingerprint())
}
