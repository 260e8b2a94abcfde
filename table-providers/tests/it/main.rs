//! Integration tests of the MDF storage, against a local folder and against a real
//! S3-compatible server over HTTP (started by `scripts/test`).

mod cells;
mod concurrent_commits;
mod support;
