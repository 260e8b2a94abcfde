//! Query cancellation: a CancelRequest, or the session's `statement_timeout`, stops the
//! running query's execution, not only its planning.
//!
//! pgwire interrupts a query only while its handler is planning it; rows are streamed after the
//! handler returns. So each query gets a [`CancellationToken`] of its own (the previous query's
//! when that one is over and was not stopped) that guards both the planning future and the row
//! stream: the token is checked every few hundred rows and wakes the stream while it waits for
//! DataFusion, and on cancel the client gets `57014` and the stream is dropped, which stops
//! DataFusion's execution. The stream is polled inline, in the connection's own task:
//! DataFusion's operators yield to tokio's cooperative budget, so a poll returns often enough
//! for the check. (Producing rows in a task of their own bought nothing there, since an
//! aborted task also stops only at a yield, and it cost a task and a channel per query, about
//! a tenth of a one-row query's time.) Each connection's slot for its token is keyed by the
//! (process id, secret key) pair the client received in BackendKeyData, so only the
//! connection's own client can cancel its query.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::results::{Response, SendableRowStream};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::data::DataRow;
use tokio_util::sync::{CancellationToken, DropGuard, WaitForCancellationFutureOwned};

use super::activity::RunningQuery;
use super::statement_log::RowsSent;

/// Identifies a connection the way a CancelRequest does.
pub(crate) type ConnectionKey = (i32, Bytes);

/// Every connection's [`CancelSlot`], by key.
#[derive(Debug, Default)]
pub(crate) struct CancelRegistry {
    connections: Mutex<HashMap<ConnectionKey, Arc<CancelSlot>>>,
}

/// What stops one query, shared by its [`QueryStop`]s, its timer and its connection's
/// [`CancelSlot`].
#[derive(Debug, Default)]
struct StopSignal {
    token: CancellationToken,
    timed_out: AtomicBool,
}

/// Where a cancel request finds the stop signal of its connection's latest query.
#[derive(Debug, Default)]
pub(crate) struct CancelSlot {
    latest: Mutex<Arc<StopSignal>>,
}

/// How one query is stopped: by its client's CancelRequest or by its statement timeout. Its
/// clones also keep the connection shown as active in `pg_stat_activity`.
#[derive(Debug, Clone)]
pub(crate) struct QueryStop {
    signal: Arc<StopSignal>,
    sent: Arc<RowsSent>,
    _running: Option<Arc<RunningQuery>>,
    /// Ends the statement timeout's timer when the query's last [`QueryStop`] is dropped.
    _timer: Option<Arc<DropGuard>>,
}

impl QueryStop {
    /// Completes once the query is to stop.
    async fn stopped(&self) {
        self.signal.token.cancelled().await;
    }

    /// The error the client gets: 57014 either way, with PostgreSQL's wording for each cause.
    pub(crate) fn error(&self) -> PgWireError {
        let cause = if self.signal.timed_out.load(Ordering::Acquire) {
            "statement timeout"
        } else {
            "user request"
        };
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "57014".into(),
            format!("canceling statement due to {cause}"),
        )))
    }

    /// Runs `work` (planning, or a statement answered whole) unless the query is stopped before
    /// it is done, in which case the client gets [`Self::error`]. The stop is waited for only
    /// once `work` has to wait: most work is done in its first poll, and registering for the
    /// token's wake-up (and unregistering) cost a one-row query a few percent of its time.
    pub(crate) async fn until_stopped<T>(
        &self,
        work: impl Future<Output = PgWireResult<T>>,
    ) -> PgWireResult<T> {
        let mut work = pin!(work);
        let mut stopped = pin!(self.stopped());
        poll_fn(|cx| {
            if let Poll::Ready(done) = work.as_mut().poll(cx) {
                return Poll::Ready(done);
            }
            stopped.as_mut().poll(cx).map(|()| Err(self.error()))
        })
        .await
    }
}

/// Stops the query of `signal` once `timeout` has passed, unless the guard returned is
/// dropped first (the query ended): the timer's task ends then too.
fn stop_after(signal: &Arc<StopSignal>, timeout: Duration) -> DropGuard {
    let ended = CancellationToken::new();
    let (signal, query_ended) = (Arc::clone(signal), ended.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(timeout) => {
                signal.timed_out.store(true, Ordering::Release);
                signal.token.cancel();
            }
            _ = signal.token.cancelled() => {}
            _ = query_ended.cancelled() => {}
        }
    });
    ended.drop_guard()
}

impl CancelSlot {
    /// Starts a query, stopped after `timeout` when there is one; `running` lives as long as
    /// the query, and its rows are counted in `sent`. The previous query's signal is taken
    /// again when nothing holds it any more and it was not used: a cancel request that
    /// arrived between queries used it, and stops nothing.
    pub(crate) fn begin(
        &self,
        timeout: Option<Duration>,
        running: Option<RunningQuery>,
        sent: Arc<RowsSent>,
    ) -> QueryStop {
        let signal = {
            let mut latest = self.latest.lock().expect("cancel slot poisoned");
            if Arc::strong_count(&latest) > 1 || latest.token.is_cancelled() {
                *latest = Arc::default();
            }
            Arc::clone(&latest)
        };
        QueryStop {
            _timer: timeout.map(|timeout| Arc::new(stop_after(&signal, timeout))),
            signal,
            sent,
            _running: running.map(Arc::new),
        }
    }
}

impl CancelRegistry {
    /// The slot of the connection `key`, registered until [`Self::remove`].
    pub(crate) fn register(&self, key: ConnectionKey) -> Arc<CancelSlot> {
        let slot = Arc::<CancelSlot>::default();
        self.connections
            .lock()
            .expect("cancel registry poisoned")
            .insert(key, Arc::clone(&slot));
        slot
    }

    /// Forgets a closed connection.
    pub(crate) fn remove(&self, key: &ConnectionKey) {
        self.connections
            .lock()
            .expect("cancel registry poisoned")
            .remove(key);
    }

    fn cancel(&self, key: &ConnectionKey) -> bool {
        let slot = self
            .connections
            .lock()
            .expect("cancel registry poisoned")
            .get(key)
            .cloned();
        match slot {
            Some(slot) => {
                slot.latest
                    .lock()
                    .expect("cancel slot poisoned")
                    .token
                    .cancel();
                true
            }
            None => false,
        }
    }
}

#[async_trait]
impl CancelHandler for CancelRegistry {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes());
        let found = self.cancel(&key);
        tracing::info!(pid = request.pid, found, "cancel request");
    }
}

/// How many rows are produced between two looks at the query's token while rows keep coming:
/// rows take microseconds, so a cancel is seen at once, and the look stays off the per-row path
/// (registering for the token's wake-up on every row cost a fifth of a large result's time).
const ROWS_PER_CHECK: u32 = 256;

/// Ends the response's row stream with SQLSTATE 57014 as soon as the query is stopped, and
/// counts the rows it sends.
pub(crate) fn cancellable(response: Response, stop: QueryStop) -> Response {
    let Response::Query(mut query) = response else {
        return response;
    };
    let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
    query.data_rows = Box::pin(StoppableRows {
        rows: Some(rows),
        stop,
        stopped: None,
        until_check: 0,
    });
    Response::Query(query)
}

/// A row stream that ends with [`QueryStop::error`] once its query is stopped: checked every
/// [`ROWS_PER_CHECK`] rows (and before the first) while rows are ready, and woken by the stop
/// while it waits for rows.
struct StoppableRows {
    /// `None` once the stream has ended.
    rows: Option<SendableRowStream>,
    stop: QueryStop,
    /// The wait for the stop, made the first time rows are not ready: a result whose rows are
    /// all ready (a kept answer, a small one) never registers for the token's wake-up.
    stopped: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    until_check: u32,
}

impl Stream for StoppableRows {
    type Item = PgWireResult<DataRow>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(rows) = this.rows.as_mut() else {
            return Poll::Ready(None);
        };
        if this.until_check == 0 {
            this.until_check = ROWS_PER_CHECK;
            if this.stop.signal.token.is_cancelled() {
                this.rows = None;
                return Poll::Ready(Some(Err(this.stop.error())));
            }
        }
        this.until_check -= 1;
        match rows.as_mut().poll_next(cx) {
            Poll::Ready(None) => {
                this.rows = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(row))) => {
                this.stop.sent.sent(&row);
                Poll::Ready(Some(Ok(row)))
            }
            Poll::Ready(row) => Poll::Ready(row),
            Poll::Pending => match this
                .stopped
                .get_or_insert_with(|| Box::pin(this.stop.signal.token.clone().cancelled_owned()))
                .as_mut()
                .poll(cx)
            {
                Poll::Ready(()) => {
                    this.rows = None;
                    Poll::Ready(Some(Err(this.stop.error())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key() -> ConnectionKey {
        (7, Bytes::from_static(b"secret"))
    }

    fn code_and_message(error: PgWireError) -> (String, String) {
        match error {
            PgWireError::UserError(info) => (info.code, info.message),
            other => panic!("not a user error: {other}"),
        }
    }

    #[tokio::test]
    async fn a_cancel_between_queries_stops_nothing_and_the_next_query_runs() {
        let registry = CancelRegistry::default();
        let slot = registry.register(key());
        let first = slot.begin(None, None, Arc::default());
        drop(first);
        assert!(registry.cancel(&key()));
        let next = slot.begin(None, None, Arc::default());
        assert!(!next.signal.token.is_cancelled());
        assert!(registry.cancel(&key()));
        assert!(next.signal.token.is_cancelled());
        assert_eq!(
            code_and_message(next.error()),
            (
                "57014".into(),
                "canceling statement due to user request".into()
            )
        );
        registry.remove(&key());
        assert!(!registry.cancel(&key()));
    }

    #[tokio::test]
    async fn a_cancel_stops_the_latest_query_not_one_still_held() {
        let registry = CancelRegistry::default();
        let slot = registry.register(key());
        let suspended = slot.begin(None, None, Arc::default());
        let running = slot.begin(None, None, Arc::default());
        assert!(registry.cancel(&key()));
        assert!(running.signal.token.is_cancelled());
        assert!(!suspended.signal.token.is_cancelled());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_statement_timeout_stops_its_query_and_its_timer_ends_with_the_query() {
        let metrics = tokio::runtime::Handle::current().metrics();
        let slot = CancelSlot::default();
        let timed = slot.begin(Some(Duration::from_millis(10)), None, Arc::default());
        timed.stopped().await;
        assert_eq!(
            code_and_message(timed.error()),
            (
                "57014".into(),
                "canceling statement due to statement timeout".into()
            )
        );

        let finished = slot.begin(Some(Duration::from_secs(3600)), None, Arc::default());
        tokio::task::yield_now().await;
        assert_eq!(metrics.num_alive_tasks(), 1);
        drop(finished);
        tokio::task::yield_now().await;
        assert_eq!(metrics.num_alive_tasks(), 0);
    }
}
