//! Quantatom's own session settings: `SET quantatom.<name> = <value>`.

use datafusion::common::extensions_options;
use datafusion::config::ConfigExtension;

extensions_options! {
    /// Quantatom's own session settings: `SET quantatom.<name> = <value>`.
    pub struct QuantatomOptions {
        /// `DELETE FROM dim.<dimension>` may delete members that have cells, deleting the
        /// cells in every cube first.
        pub force_member_delete: bool, default = false
        /// Queries over cubes and dimensions are answered from the hot-tile cache when it
        /// holds their result, and their results are kept there (docs/caching.md).
        pub tile_cache: bool, default = true
        /// Aggregates over a cube read its data files' summaries where they can
        /// (docs/mdf.md, "Summaries"); off, they read every cell.
        pub summaries: bool, default = true
    }
}

impl ConfigExtension for QuantatomOptions {
    const PREFIX: &'static str = "quantatom";
}

impl QuantatomOptions {
    /// The options of the session `config` belongs to (the defaults when it has none).
    pub fn of(config: &datafusion::prelude::SessionConfig) -> QuantatomOptions {
        config
            .options()
            .extensions
            .get::<QuantatomOptions>()
            .cloned()
            .unwrap_or_default()
    }
}
