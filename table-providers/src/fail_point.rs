//! Crash injection, for the crash-safety tests: when the environment variable
//! `QUANTATOM_FAIL_POINT` names a point, the process aborts on reaching it, as if killed there.
//! Unset (always, outside those tests), a point costs one comparison.
//!
//! Points: `mdf.before_data_upload`, `mdf.after_data_upload` (a data file is stored, nothing
//! committed), `mdf.before_log_write` and `mdf.after_log_write` (the log entry is stored, the
//! writer has not answered yet).

use std::sync::LazyLock;

/// The fail point this process aborts at, if any.
static FAIL_POINT: LazyLock<Option<String>> =
    LazyLock::new(|| std::env::var("QUANTATOM_FAIL_POINT").ok());

/// Aborts the process when `QUANTATOM_FAIL_POINT` is `name`.
pub(crate) fn fail_point(name: &str) {
    if FAIL_POINT.as_deref() == Some(name) {
        eprintln!("fail point {name} reached: aborting");
        std::process::abort();
    }
}
