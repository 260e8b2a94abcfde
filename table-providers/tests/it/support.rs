//! The storage backends every test runs against.

use quantatom_table_providers::storage::{S3Settings, Storage, StorageConfig};

/// Where a test's data lives; the folder is removed when it is dropped.
pub struct Backend {
    /// What the backend is, for assertion messages.
    pub name: &'static str,
    /// The storage itself.
    pub storage: Storage,
    _folder: Option<tempfile::TempDir>,
}

/// A fresh local folder.
pub fn local() -> Backend {
    let folder = tempfile::tempdir().expect("temp dir");
    Backend {
        name: "local folder",
        storage: Storage::open(&StorageConfig::Local(folder.path().to_owned())).expect("storage"),
        _folder: Some(folder),
    }
}

/// A fresh prefix in the bucket of the S3-compatible server `scripts/test` starts and names
/// in `QUANTATOM_TEST_S3_BUCKET` and the `AWS_*` variables; fails when there is none.
pub fn s3() -> Backend {
    let location = format!(
        "s3://{}/test-{}",
        test_bucket(),
        uuid::Uuid::new_v4().simple()
    );
    let settings = S3Settings {
        path_style: true,
        ..S3Settings::default()
    };
    let config = StorageConfig::from_location(&location, settings).expect("an S3 location");
    Backend {
        name: "S3",
        storage: Storage::open(&config).expect("storage"),
        _folder: None,
    }
}

/// The bucket of the test S3 server.
fn test_bucket() -> String {
    std::env::var("QUANTATOM_TEST_S3_BUCKET").unwrap_or_else(|_| {
        panic!("QUANTATOM_TEST_S3_BUCKET is not set: run ./scripts/test, which starts an S3-compatible server")
    })
}

/// Both backends.
pub fn backends() -> [Backend; 2] {
    [local(), s3()]
}
