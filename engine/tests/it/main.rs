//! Engine integration tests over the demo model in a real data folder and in a bucket of a real
//! S3-compatible server.

mod compaction;
mod eager_aggregation;
mod plan_reuse;
mod s3;
mod scan;
mod summaries;
mod support;
mod tiles;
