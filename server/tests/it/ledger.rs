//! The entropy ledger over the wire: every committed change of a cell is in `audit.*` with who,
//! what and the values before and after, chained by hashes; `quantatom ledger verify` passes on
//! an intact ledger and names the first broken entry after a byte of a ledger file is flipped,
//! or after a value is changed with the file's recorded hash made to match.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

use crate::support::{TestServer, rows};

const CELL: &str = "version = 'Budget' AND time = '2025_01' AND entity = 'DE' AND account = '4000' AND product = 'P0001' AND currency = 'EUR'";

/// Runs `quantatom ledger verify` over `data_dir`: whether it passed, and what it said.
fn verify(data_dir: &Path) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_quantatom"))
        .args(["ledger", "verify", "--data-dir"])
        .arg(data_dir)
        .env("QUANTATOM_LOG", "error")
        .output()
        .expect("the binary runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

fn ledger_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir.join("ledger/data"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The ledger file holding a row whose `new_value` is `value`.
fn file_with(data_dir: &Path, value: &str) -> (PathBuf, RecordBatch) {
    for path in ledger_files(data_dir) {
        let bytes = bytes::Bytes::from(std::fs::read(&path).unwrap());
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let new_values = batch
                .column_by_name("new_value")
                .unwrap()
                .as_string::<i32>();
            if new_values.iter().any(|new| new == Some(value)) {
                return (path, batch);
            }
        }
    }
    panic!("no ledger file holds the new value {value}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_ledgered_and_tampering_is_found() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(&format!("UPDATE cube.finance SET amount = 12 WHERE {CELL}"))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "BEGIN; UPDATE cube.finance SET amount = 13 WHERE {CELL}; UPDATE cube.finance SET amount = 14 WHERE {CELL}; COMMIT"
        ))
        .await
        .unwrap();
    client
        .batch_execute(&format!("DELETE FROM cube.finance WHERE {CELL}"))
        .await
        .unwrap();

    // A cell's history in one query: who, the statement, the value before and after.
    let history = rows(
        &client,
        &format!(
            "SELECT user_name, operation, CAST(old_amount AS VARCHAR), CAST(new_amount AS VARCHAR), statement FROM audit.finance WHERE {CELL} ORDER BY seq"
        ),
    )
    .await;
    let original = &history[0][2];
    assert_ne!(
        original, "NULL",
        "the first change replaced the demo's value"
    );
    let block = format!(
        "UPDATE cube.finance SET amount = 13 WHERE {CELL}\nUPDATE cube.finance SET amount = 14 WHERE {CELL}"
    );
    let expected = [
        [
            "tester",
            "update",
            original.as_str(),
            "12.00",
            &format!("UPDATE cube.finance SET amount = 12 WHERE {CELL}"),
        ],
        ["tester", "update", "12.00", "14.00", block.as_str()],
        [
            "tester",
            "delete",
            "14.00",
            "NULL",
            &format!("DELETE FROM cube.finance WHERE {CELL}"),
        ],
    ];
    assert_eq!(history, expected.map(|row| row.map(str::to_owned)).to_vec());
    // The cell's coordinate reaches the ledger's Parquet scan, which prunes pages by it.
    let plan = rows(
        &client,
        &format!("EXPLAIN SELECT old_amount FROM audit.finance WHERE {CELL}"),
    )
    .await
    .concat()
    .join("\n");
    assert!(
        plan.contains("= Budget|2025_01|DE|4000|P0001|EUR"),
        "the history filters the ledger by its item:\n{plan}"
    );

    // The chain: each entry carries the hash of the one before, from the genesis hash.
    let chain = rows(
        &client,
        "SELECT seq, prev_hash, hash FROM audit.ledger ORDER BY seq",
    )
    .await;
    assert_eq!(
        chain.len(),
        4,
        "the demo load, then three changes: {chain:?}"
    );
    assert_eq!(chain[0][1], "0".repeat(64));
    for (position, pair) in chain.windows(2).enumerate() {
        assert_eq!(pair[0][0], position.to_string());
        assert_eq!(
            pair[1][1],
            pair[0][2],
            "entry {} follows entry {position}",
            position + 1
        );
    }

    // Member changes too: the member before and after, as JSON.
    client
        .batch_execute(
            "INSERT INTO dim.entity (code, name, parent) VALUES ('PL', 'Poland', 'EMEA')",
        )
        .await
        .unwrap();
    let member = rows(
        &client,
        "SELECT kind, source, item, old_value IS NULL, new_value LIKE '%\"name\":\"Poland\"%', user_name FROM audit.ledger WHERE kind = 'member'",
    )
    .await;
    assert_eq!(
        member,
        vec![
            ["member", "dimension/entity", "PL", "t", "t", "tester"]
                .map(str::to_owned)
                .to_vec()
        ]
    );

    let data_dir = server.data_dir().to_owned();
    let (intact, said) = verify(&data_dir);
    assert!(intact, "{said}");
    assert!(said.contains("ledger intact: 5 entries"), "{said}");

    // A value changed, and the file's hash in its log entry made to match: the entry's own
    // hash no longer covers what it says.
    let (path, batch) = file_with(&data_dir, "12.00");
    let original_bytes = std::fs::read(&path).unwrap();
    let forged_values: StringArray = batch
        .column_by_name("new_value")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|value| value.map(|value| if value == "12.00" { "1200.00" } else { value }))
        .collect();
    let columns: Vec<ArrayRef> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| match field.name().as_str() {
            "new_value" => std::sync::Arc::new(forged_values.clone()) as ArrayRef,
            _ => column.clone(),
        })
        .collect();
    let forged = RecordBatch::try_new(batch.schema(), columns).unwrap();
    let mut writer = ArrowWriter::try_new(Vec::new(), forged.schema(), None).unwrap();
    writer.write(&forged).unwrap();
    let forged_bytes = writer.into_inner().unwrap();
    std::fs::write(&path, &forged_bytes).unwrap();
    let (old_hash, new_hash) = (
        hex(Sha256::digest(&original_bytes).as_slice()),
        hex(Sha256::digest(&forged_bytes).as_slice()),
    );
    for entry in std::fs::read_dir(data_dir.join("ledger/_log")).unwrap() {
        let entry = entry.unwrap().path();
        let text = std::fs::read_to_string(&entry).unwrap();
        if text.contains(&old_hash) {
            std::fs::write(&entry, text.replace(&old_hash, &new_hash)).unwrap();
        }
    }
    let (intact, said) = verify(&data_dir);
    assert!(!intact, "a forged value must be found: {said}");
    assert!(said.contains("entry 1 was changed"), "{said}");

    // One flipped byte anywhere in a file.
    std::fs::write(&path, &original_bytes).unwrap();
    for entry in std::fs::read_dir(data_dir.join("ledger/_log")).unwrap() {
        let entry = entry.unwrap().path();
        let text = std::fs::read_to_string(&entry).unwrap();
        std::fs::write(&entry, text.replace(&new_hash, &old_hash)).unwrap();
    }
    assert!(verify(&data_dir).0, "restored, the ledger is intact again");
    let mut flipped = original_bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&path, &flipped).unwrap();
    let (intact, said) = verify(&data_dir);
    assert!(!intact, "a flipped byte must be found: {said}");
    assert!(said.contains("was changed after it was written"), "{said}");
}
