//! Counts of the statements the server answered, by outcome, and how long they took, and of
//! connections' polling for their clients ([`super::socket::IdlePoll`]): what the admin
//! listener's `/metrics` shows (see [`crate::admin`]).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The upper bounds, in seconds, of the duration histogram's buckets.
const BOUNDS: [f64; 10] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0,
];

/// Writes the counter `metric` (with its `help`) at `value`, in Prometheus's text format.
pub fn write_counter(out: &mut String, metric: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {metric} {help}\n# TYPE {metric} counter\n{metric} {value}"
    );
}

/// Writes the counter `metric` (with its `help`) split by `label`: one line per
/// `(label value, count)` of `counts`, in Prometheus's text format.
pub fn write_labelled_counter<'a>(
    out: &mut String,
    metric: &str,
    help: &str,
    label: &str,
    counts: impl IntoIterator<Item = (&'a str, u64)>,
) {
    let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
    for (value, count) in counts {
        let _ = writeln!(out, "{metric}{{{label}=\"{value}\"}} {count}");
    }
}

/// How a statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Error,
    Cancelled,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Error, Outcome::Cancelled];

    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
        }
    }

    fn of(sqlstate: Option<&str>) -> Self {
        match sqlstate {
            None => Outcome::Ok,
            Some("57014") => Outcome::Cancelled,
            Some(_) => Outcome::Error,
        }
    }
}

/// Statements answered since start-up: one per simple-protocol query message, one per
/// extended-protocol Execute.
#[derive(Debug, Default)]
pub struct QueryMetrics {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    /// Statements that took at most each bound (not cumulative; summed when rendered).
    buckets: [AtomicU64; BOUNDS.len() + 1],
    micros: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
    /// Polls for a client's next message that caught it, and that gave up and slept.
    idle_polls_caught: AtomicU64,
    idle_polls_missed: AtomicU64,
    /// Microseconds spent in those polls.
    idle_poll_micros: AtomicU64,
    /// Connection threads moved to their clients' cores.
    core_moves: AtomicU64,
}

impl QueryMetrics {
    /// Records a statement that took `elapsed`, ended with the error `sqlstate` (`None`: it
    /// succeeded) and sent `rows` rows of `bytes` bytes.
    pub(crate) fn observe(&self, elapsed: Duration, sqlstate: Option<&str>, rows: u64, bytes: u64) {
        self.outcomes[Outcome::of(sqlstate) as usize].fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        let bucket = BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Records a connection's poll for its client's next message that lasted `polled` and
    /// caught the message, or gave up and slept.
    pub(crate) fn observe_idle_poll(&self, caught: bool, polled: Duration) {
        let outcome = match caught {
            true => &self.idle_polls_caught,
            false => &self.idle_polls_missed,
        };
        outcome.fetch_add(1, Ordering::Relaxed);
        self.idle_poll_micros
            .fetch_add(polled.as_micros() as u64, Ordering::Relaxed);
    }

    /// Records that a connection's thread moved to its client's core.
    pub(crate) fn observe_core_move(&self) {
        self.core_moves.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts in Prometheus's text format.
    pub fn render(&self, out: &mut String) {
        write_labelled_counter(
            out,
            "quantatom_queries_total",
            "Statements answered, by outcome.",
            "outcome",
            Outcome::ALL.map(|outcome| {
                let count = self.outcomes[outcome as usize].load(Ordering::Relaxed);
                (outcome.name(), count)
            }),
        );
        let _ = writeln!(
            out,
            "# HELP quantatom_query_duration_seconds Time to answer a statement.\n# TYPE quantatom_query_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let bound = BOUNDS
                .get(index)
                .map_or("+Inf".to_owned(), |bound| bound.to_string());
            let _ = writeln!(
                out,
                "quantatom_query_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let seconds = self.micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "quantatom_query_duration_seconds_sum {seconds}");
        let _ = writeln!(out, "quantatom_query_duration_seconds_count {cumulative}");
        let rows = self.rows.load(Ordering::Relaxed);
        write_counter(
            out,
            "quantatom_rows_returned_total",
            "Rows sent to clients.",
            rows,
        );
        let bytes = self.bytes.load(Ordering::Relaxed);
        let help =
            "Bytes of the rows sent to clients (DataRow payloads: values and their lengths).";
        write_counter(out, "quantatom_bytes_returned_total", help, bytes);
        let help = "Waits for a client's next message begun by polling, by whether the message came while polling.";
        let polls = [
            ("caught", &self.idle_polls_caught),
            ("missed", &self.idle_polls_missed),
        ];
        let polls = polls.map(|(outcome, count)| (outcome, count.load(Ordering::Relaxed)));
        write_labelled_counter(out, "quantatom_idle_polls_total", help, "outcome", polls);
        let seconds = self.idle_poll_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let help = "Time connections spent polling for their clients' next messages.";
        write_counter(out, "quantatom_idle_poll_seconds_total", help, seconds);
        let moves = self.core_moves.load(Ordering::Relaxed);
        let help =
            "Times a connection's thread was moved to the core its client's messages arrive on.";
        write_counter(out, "quantatom_connection_core_moves_total", help, moves);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_buckets_render_as_prometheus_reads_them() {
        let metrics = QueryMetrics::default();
        metrics.observe(Duration::from_micros(500), None, 1, 10);
        metrics.observe(Duration::from_millis(30), None, 3, 32);
        metrics.observe(Duration::from_secs(20), Some("57014"), 0, 0);
        let mut text = String::new();
        metrics.render(&mut text);
        for line in [
            "quantatom_queries_total{outcome=\"ok\"} 2",
            "quantatom_queries_total{outcome=\"cancelled\"} 1",
            "quantatom_queries_total{outcome=\"error\"} 0",
            "quantatom_query_duration_seconds_bucket{le=\"0.001\"} 1",
            "quantatom_query_duration_seconds_bucket{le=\"0.05\"} 2",
            "quantatom_query_duration_seconds_bucket{le=\"10\"} 2",
            "quantatom_query_duration_seconds_bucket{le=\"+Inf\"} 3",
            "quantatom_query_duration_seconds_count 3",
            "quantatom_rows_returned_total 4",
            "quantatom_bytes_returned_total 42",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
