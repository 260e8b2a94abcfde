//! Engine integration tests over the demo model in a real data folder.

mod plan_reuse;
mod scan;
