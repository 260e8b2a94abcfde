//! Kept answers: the encoded rows of a kept physical plan's last complete run, replayed instead
//! of running the plan again.
//!
//! A kept plan reads its tables at the versions it was planned at and calls only immutable
//! functions ([`quantatom_engine::plan_reuse::Runnable::beside`]), so each run gives the same
//! rows: a health check's `SELECT 1` or a point lookup repeated with the same parameters is
//! answered by copying a few bytes instead of starting DataFusion's streams, converting and
//! encoding. An answer lives beside its plan and goes with it, when a scanned table moves to
//! a new version or anything that may change what the query means advances the plan epoch.
//! Only small answers are kept ([`ANSWER_BYTES`]), per result format and format options, since
//! the same statement may be asked for text or binary columns.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse, SendableRowStream};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

/// The most bytes of encoded rows an answer may hold to be kept: about what the physical plan
/// it sits beside takes itself.
pub(crate) const ANSWER_BYTES: usize = 2048;

/// The most answers (one per result format and format options) kept beside one plan.
const FORMATS_PER_PLAN: usize = 4;

/// The answers kept beside one physical plan.
#[derive(Debug, Default)]
pub(crate) struct KeptAnswers(Mutex<Vec<Arc<Answer>>>);

/// One complete answer in one format: its row description and its rows.
#[derive(Debug)]
struct Answer {
    format: Format,
    options: Arc<FormatOptions>,
    fields: Arc<Vec<FieldInfo>>,
    rows: Vec<DataRow>,
}

impl KeptAnswers {
    /// The kept answer in `format` under `options` as a response, if there is one.
    pub(crate) fn replay(&self, format: &Format, options: &FormatOptions) -> Option<QueryResponse> {
        let answer = self
            .0
            .lock()
            .expect("answers poisoned")
            .iter()
            .find(|answer| same_format(&answer.format, format) && *answer.options == *options)
            .cloned()?;
        let fields = Arc::clone(&answer.fields);
        let rows = (0..answer.rows.len()).map(move |row| Ok(answer.rows[row].clone()));
        Some(QueryResponse::new(fields, futures::stream::iter(rows)))
    }

    /// `rows` (of a response described by `fields`) as they are sent; once they all were, and
    /// they fit in [`ANSWER_BYTES`], they are kept as the answer in `format` under `options`.
    pub(crate) fn record(
        self: Arc<Self>,
        format: &Format,
        options: Arc<FormatOptions>,
        fields: &Arc<Vec<FieldInfo>>,
        rows: SendableRowStream,
    ) -> SendableRowStream {
        Box::pin(Recording {
            rows,
            recorded: Some(Answer {
                format: format.clone(),
                options,
                fields: Arc::clone(fields),
                rows: Vec::new(),
            }),
            bytes: 0,
            into: self,
        })
    }

    fn keep(&self, answer: Answer) {
        let mut answers = self.0.lock().expect("answers poisoned");
        if answers.len() < FORMATS_PER_PLAN {
            answers.push(Arc::new(answer));
        }
    }
}

/// Whether two result formats encode every column alike.
fn same_format(a: &Format, b: &Format) -> bool {
    match (a, b) {
        (Format::UnifiedText, Format::UnifiedText) => true,
        (Format::UnifiedBinary, Format::UnifiedBinary) => true,
        (Format::Individual(a), Format::Individual(b)) => a == b,
        _ => false,
    }
}

/// A row stream passing its rows on and copying them while they fit an answer.
struct Recording {
    rows: SendableRowStream,
    /// `None` once the answer will not be kept (too large, or an error came).
    recorded: Option<Answer>,
    bytes: usize,
    into: Arc<KeptAnswers>,
}

impl Stream for Recording {
    type Item = PgWireResult<DataRow>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.rows.as_mut().poll_next(cx);
        let this = &mut *self;
        match &next {
            Poll::Ready(Some(Ok(row))) => {
                this.bytes += row.data.len();
                match &mut this.recorded {
                    Some(answer) if this.bytes <= ANSWER_BYTES => answer.rows.push(row.clone()),
                    _ => this.recorded = None,
                }
            }
            Poll::Ready(Some(Err(_))) => this.recorded = None,
            Poll::Ready(None) => {
                if let Some(answer) = this.recorded.take() {
                    this.into.keep(answer);
                }
            }
            Poll::Pending => {}
        }
        next
    }
}
