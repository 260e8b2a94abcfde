//! Query cancellation: a CancelRequest, or the session's `statement_timeout`, stops the
//! running query's execution, not only its planning.
//!
//! pgwire interrupts a query only while its handler is planning it; rows are streamed after the
//! handler returns. So each query gets a fresh [`CancellationToken`] that guards both the
//! planning future and the row stream: the token is checked every few hundred rows and wakes the
//! stream while it waits for DataFusion, and on cancel the client gets `57014` and the stream
//! is dropped, which stops DataFusion's execution. The stream is polled inline, in the connection's own task:
//! DataFusion's operators yield to tokio's cooperative budget, so a poll returns often enough
//! for the check. (Producing rows in a task of their own bought nothing there, since an
//! aborted task also stops only at a yield, and it cost a task and a channel per query, about
//! a tenth of a one-row query's time.) Tokens are keyed by the (process id, secret key) pair
//! the client received in BackendKeyData, so only the connection's own client can cancel it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
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
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::activity::RunningQuery;
use super::statement_log::RowsSent;

/// Identifies a connection the way a CancelRequest does.
pub(crate) type ConnectionKey = (i32, Bytes);

/// The running query of every connection, by key.
#[derive(Debug, Default)]
pub(crate) struct CancelRegistry {
    running: Mutex<HashMap<ConnectionKey, CancellationToken>>,
}

/// How one query is stopped: by its client's CancelRequest or by its statement timeout. Its
/// clones also keep the connection shown as active in `pg_stat_activity`.
#[derive(Debug, Clone)]
pub(crate) struct QueryStop {
    token: CancellationToken,
    timed_out: Arc<AtomicBool>,
    sent: Arc<RowsSent>,
    _running: Option<Arc<RunningQuery>>,
}

impl QueryStop {
    /// Completes once the query is to stop.
    async fn stopped(&self) {
        self.token.cancelled().await;
    }

    /// The error the client gets: 57014 either way, with PostgreSQL's wording for each cause.
    pub(crate) fn error(&self) -> PgWireError {
        let cause = if self.timed_out.load(Ordering::Acquire) {
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

    /// Runs `work` (planning, or a statement answered whole) unless the query is stopped first,
    /// in which case the client gets [`Self::error`].
    pub(crate) async fn until_stopped<T>(
        &self,
        work: impl Future<Output = PgWireResult<T>>,
    ) -> PgWireResult<T> {
        tokio::select! {
            biased;
            _ = self.stopped() => Err(self.error()),
            done = work => done,
        }
    }

    /// Stops the query once `timeout` has passed.
    fn stop_after(&self, timeout: Duration) {
        let (token, timed_out) = (self.token.clone(), Arc::clone(&self.timed_out));
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {
                    timed_out.store(true, Ordering::Release);
                    token.cancel();
                }
                _ = token.cancelled() => {}
            }
        });
    }
}

impl CancelRegistry {
    /// Starts a query on `key`, replacing the previous query's entry, stopped after `timeout`
    /// when there is one; `running` lives as long as the query, and its rows are counted in
    /// `sent`.
    pub(crate) fn begin(
        &self,
        key: ConnectionKey,
        timeout: Option<Duration>,
        running: Option<RunningQuery>,
        sent: Arc<RowsSent>,
    ) -> QueryStop {
        let stop = QueryStop {
            token: CancellationToken::new(),
            timed_out: Arc::default(),
            sent,
            _running: running.map(Arc::new),
        };
        if let Some(timeout) = timeout {
            stop.stop_after(timeout);
        }
        self.running
            .lock()
            .expect("cancel registry poisoned")
            .insert(key, stop.token.clone());
        stop
    }

    /// Forgets a closed connection.
    pub(crate) fn remove(&self, key: &ConnectionKey) {
        self.running
            .lock()
            .expect("cancel registry poisoned")
            .remove(key);
    }

    fn cancel(&self, key: &ConnectionKey) -> bool {
        match self
            .running
            .lock()
            .expect("cancel registry poisoned")
            .get(key)
        {
            Some(token) => {
                token.cancel();
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
    let stopped = Box::pin(stop.token.clone().cancelled_owned());
    query.data_rows = Box::pin(StoppableRows {
        rows: Some(rows),
        stop,
        stopped,
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
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
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
            if this.stop.token.is_cancelled() {
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
            Poll::Pending => match this.stopped.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.rows = None;
                    Poll::Ready(Some(Err(this.stop.error())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
