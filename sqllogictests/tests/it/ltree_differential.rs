//! Our `ltree` functions and `lquery` matching against PostgreSQL's own `ltree` (the test
//! server `scripts/test` starts), on thousands of generated paths and patterns, valid and not:
//! the same answers, and the same SQLSTATE where PostgreSQL raises an error.

use quantatom_engine::MetadataConfig;
use quantatom_sqllogictests::postgres_test_metadata;
use quantatom_udfs::lquery;
use quantatom_udfs::ltree::{self, LtreeError};

/// Cases generated; each checks `nlevel`, `subpath`, `subltree`, `index`, `lca`,
/// `text2ltree` and `<@` once.
const CASES: usize = 4_000;

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Generator(u64);

impl Generator {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn label(&mut self) -> String {
        const LABELS: [&str; 12] = [
            "Total", "EMEA", "DE", "a_1", "Z9", "_", "x", "Total", "EMEA", "é", "a b", "Top",
        ];
        match self.below(60) {
            0 => String::new(),
            1 => "L".repeat(255),
            2 => "L".repeat(256),
            3 => "L".repeat(1000),
            4 => "L".repeat(1001),
            5 => "a-b".to_owned(),
            _ => LABELS[self.below(LABELS.len())].to_owned(),
        }
    }

    fn path(&mut self) -> String {
        let labels: Vec<String> = (0..self.below(6)).map(|_| self.label()).collect();
        labels.join(".")
    }
}

/// What a call gives, as the PostgreSQL helpers below write it.
fn shown<T: ToString>(result: Result<T, LtreeError>) -> String {
    match result {
        Ok(value) => value.to_string(),
        Err(error) => format!("ERROR {}", error.sqlstate()),
    }
}

/// Helpers that turn PostgreSQL's errors into text, so one query checks every case.
const HELPERS: &str = r#"
CREATE EXTENSION IF NOT EXISTS ltree;
CREATE FUNCTION t_nlevel(p text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RETURN nlevel(p::ltree)::text; EXCEPTION WHEN others THEN RETURN 'ERROR ' || SQLSTATE; END $$;
CREATE FUNCTION t_subpath(p text, o int, l int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  IF l IS NULL THEN RETURN subpath(p::ltree, o)::text; END IF;
  RETURN subpath(p::ltree, o, l)::text;
EXCEPTION WHEN others THEN RETURN 'ERROR ' || SQLSTATE; END $$;
CREATE FUNCTION t_under(p text, q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RETURN (p::ltree <@ q::ltree)::text; EXCEPTION WHEN others THEN RETURN 'ERROR ' || SQLSTATE; END $$;
CREATE FUNCTION t_subltree(p text, s int, e int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RETURN subltree(p::ltree, s, e)::text; EXCEPTION WHEN others THEN RETURN 'ERROR ' || SQLSTATE; END $$;
CREATE FUNCTION t_index(p text, q text, o int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RETURN index(p::ltree, q::ltree, o)::text; EXCEPTION WHEN others THEN RETURN 'ERROR ' || SQLSTATE; END $$;
CREATE FUNCTION t_lca(p text, q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RETURN coalesce(lca(p::ltree, q::ltree)::text, 'NULL'); EXCEPTION WHEN others THEN RETURN 'ERROR ' || SQLSTATE; END $$;
CREATE FUNCTION t_text2ltree(p text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RETURN text2ltree(p)::text; EXCEPTION WHEN others THEN RETURN 'ERROR ' || SQLSTATE; END $$;
CREATE FUNCTION t_match(p text, q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RETURN (p::ltree ~ q::lquery)::text; EXCEPTION WHEN others THEN RETURN 'ERROR ' || SQLSTATE; END $$;
"#;

/// A client of a new database of the test PostgreSQL with the helpers installed, and whether
/// the server takes PostgreSQL 16's labels. Quantatom follows PostgreSQL 16 (hyphens, labels
/// up to 1,000 characters); against a PostgreSQL 15 server the cases with such labels are
/// left out of the comparison (the unit tests in `quantatom_udfs::ltree` pin them).
async fn postgres_with_helpers() -> (tokio_postgres::Client, bool) {
    let MetadataConfig::Postgres(settings) = postgres_test_metadata().await else {
        unreachable!("a PostgreSQL configuration")
    };
    let (client, connection) = tokio_postgres::connect(&settings.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute(HELPERS).await.unwrap();
    let version: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap()
        .get(0);
    let postgres_16 = version.parse::<i32>().unwrap() >= 160000;
    (client, postgres_16)
}

/// Whether a case can be compared with a server (see [`postgres_with_helpers`]).
fn comparable(postgres_16: bool, inputs: &[&str]) -> bool {
    postgres_16 || !inputs.iter().any(|text| ltree::needs_postgres_16(text))
}

/// Fails listing the first differences, if any.
fn assert_no_differences(differences: &[String], cases: usize) {
    assert!(
        differences.is_empty(),
        "{} of {cases} cases differ, the first:\n{}",
        differences.len(),
        differences[..differences.len().min(10)].join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ltree_functions_answer_as_postgresql_does() {
    let (client, postgres_16) = postgres_with_helpers().await;

    let mut generate = Generator(0x9E37_79B9_7F4A_7C15);
    let (mut paths, mut offsets, mut lengths, mut others) = (vec![], vec![], vec![], vec![]);
    for _ in 0..CASES {
        let path = generate.path();
        // Often a prefix of the path, so that `<@` is true as often as false.
        let other = match generate.below(2) {
            0 => path
                .split('.')
                .take(generate.below(4))
                .collect::<Vec<_>>()
                .join("."),
            _ => generate.path(),
        };
        paths.push(path);
        others.push(other);
        offsets.push(generate.below(15) as i32 - 7);
        lengths.push(match generate.below(4) {
            0 => None,
            _ => Some(generate.below(15) as i32 - 7),
        });
    }
    let rows = client
        .query(
            "SELECT t_nlevel(p), t_subpath(p, o, l), t_under(p, q), t_subltree(p, o, o + l), \
             t_index(p, q, o), t_lca(p, q), t_text2ltree(p) \
             FROM unnest($1::text[], $2::int4[], $3::int4[], $4::text[]) WITH ORDINALITY \
             AS c(p, o, l, q, n) ORDER BY n",
            &[&paths, &offsets, &lengths, &others],
        )
        .await
        .unwrap();
    let mut differences = Vec::new();
    let mut compared = 0;
    for (case, row) in rows.iter().enumerate() {
        let (path, other) = (&paths[case], &others[case]);
        if !comparable(postgres_16, &[path, other]) {
            continue;
        }
        compared += 1;
        let (offset, length) = (i64::from(offsets[case]), lengths[case].map(i64::from));
        let ours = [
            shown(ltree::nlevel(path)),
            shown(ltree::subpath(path, offset, length)),
            shown(ltree::is_descendant(path, other)),
            // PostgreSQL casts the path first (an error if it is not one), then NULL in
            // (no length) is NULL out.
            match length {
                Some(length) => shown(ltree::subltree(path, offset, offset + length)),
                None => shown(ltree::labels_of(path).map(|_| "NULL")),
            },
            shown(ltree::index(path, other, offset)),
            shown(ltree::lca(&[path, other]).map(|lca| lca.unwrap_or_else(|| "NULL".into()))),
            shown(ltree::labels_of(path).map(|_| path)),
        ];
        let theirs: [String; 7] = std::array::from_fn(|column| {
            row.get::<_, Option<String>>(column)
                .unwrap_or_else(|| "NULL".into())
        });
        if ours != theirs {
            differences.push(format!(
                "path {path:?}, offset {offset}, length {length:?}, other {other:?}: ours {ours:?}, PostgreSQL {theirs:?}"
            ));
        }
    }
    assert_eq!(rows.len(), CASES);
    assert!(
        compared > CASES * 3 / 4,
        "only {compared} of {CASES} cases compared"
    );
    assert_no_differences(&differences, compared);
}

impl Generator {
    /// A path over labels that patterns name, in several cases and with words.
    fn matchable_path(&mut self) -> String {
        const LABELS: [&str; 10] = [
            "Top",
            "top",
            "Sport",
            "sports",
            "foo_bar",
            "foo1_bar2_baz",
            "bar_foo",
            "x",
            "é",
            "TOP",
        ];
        let labels: Vec<&str> = (0..self.below(6))
            .map(|_| LABELS[self.below(LABELS.len())])
            .collect();
        labels.join(".")
    }

    /// An `lquery` level, usually valid.
    fn pattern_level(&mut self) -> String {
        const LABELS: [&str; 9] = [
            "Top", "top", "sport", "foo_bar", "foo", "bar", "x", "é", "_",
        ];
        const FLAGS: [&str; 8] = ["", "", "", "@", "*", "%", "*@", "%*"];
        const COUNTS: [&str; 10] = [
            "", "", "", "", "{1}", "{0,2}", "{2,}", "{,1}", "{2,1}", "{1,",
        ];
        const JUNK: [&str; 7] = ["", "!", "a b", "a*b", "|", "{", "*x"];
        let variant = |g: &mut Self| {
            format!(
                "{}{}",
                LABELS[g.below(LABELS.len())],
                FLAGS[g.below(FLAGS.len())]
            )
        };
        match self.below(12) {
            0..=2 => format!("*{}", COUNTS[self.below(COUNTS.len())]),
            3 => JUNK[self.below(JUNK.len())].to_owned(),
            n => {
                let not = if n == 4 { "!" } else { "" };
                let variants: Vec<String> = (0..1 + self.below(3)).map(|_| variant(self)).collect();
                format!(
                    "{not}{}{}",
                    variants.join("|"),
                    COUNTS[self.below(COUNTS.len())]
                )
            }
        }
    }

    fn pattern(&mut self) -> String {
        let levels: Vec<String> = (0..1 + self.below(4))
            .map(|_| self.pattern_level())
            .collect();
        levels.join(".")
    }
}

/// `lquery_match` against PostgreSQL's `~` on generated paths and patterns, bad ones included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lquery_matches_as_postgresql_does() {
    let (client, postgres_16) = postgres_with_helpers().await;
    let mut generate = Generator(0x2545_F491_4F6C_DD1D);
    let (mut paths, mut patterns) = (vec![], vec![]);
    for _ in 0..CASES {
        paths.push(generate.matchable_path());
        patterns.push(generate.pattern());
    }
    let rows = client
        .query(
            "SELECT t_match(p, q) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY \
             AS c(p, q, n) ORDER BY n",
            &[&paths, &patterns],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), CASES);
    let mut differences = Vec::new();
    let mut matched = 0;
    for (case, row) in rows.iter().enumerate() {
        let (path, pattern) = (&paths[case], &patterns[case]);
        assert!(
            comparable(postgres_16, &[path, pattern]),
            "the generator uses PostgreSQL 15's labels"
        );
        let ours = shown(lquery::lquery_match(path, pattern));
        let theirs: String = row.get(0);
        matched += usize::from(theirs == "true");
        if ours != theirs {
            differences.push(format!(
                "{path:?} ~ {pattern:?}: ours {ours}, PostgreSQL {theirs}"
            ));
        }
    }
    // The generator must give matches, not only misses and errors.
    assert!(
        matched > CASES / 20,
        "only {matched} of {CASES} cases match"
    );
    assert_no_differences(&differences, CASES);
}
