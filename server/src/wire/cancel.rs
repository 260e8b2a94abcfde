//! Query cancellation: a CancelRequest stops the running query's execution, not only its
//! planning.
//!
//! pgwire interrupts a query only while its handler is planning it; rows are streamed after the
//! handler returns. So each query gets a fresh [`CancellationToken`] that guards both the
//! planning future and the row stream. The rows are produced in a task of their own and
//! forwarded over a channel: some DataFusion operators (a cross join emitting from its
//! buffered side) run long stretches without yielding, and a stream polled inline would keep
//! the connection deaf to its cancel. On cancel the client gets `57014` at once and the
//! producing task is aborted, which drops DataFusion's execution at its next yield point. Tokens are keyed by the (process id, secret key) pair the client received
//! in BackendKeyData, so only the connection's own client can cancel it.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::results::Response;
use pgwire::error::PgWireError;
use pgwire::messages::cancel::CancelRequest;
use tokio_util::sync::CancellationToken;

/// Identifies a connection the way a CancelRequest does.
pub(crate) type ConnectionKey = (i32, Bytes);

/// The running query of every connection, by key.
#[derive(Debug, Default)]
pub(crate) struct CancelRegistry {
    running: Mutex<HashMap<ConnectionKey, CancellationToken>>,
}

impl CancelRegistry {
    /// Starts a query on `key`: a new token replaces the previous query's.
    pub(crate) fn begin(&self, key: ConnectionKey) -> CancellationToken {
        let token = CancellationToken::new();
        self.running.lock().expect("cancel registry poisoned").insert(key, token.clone());
        token
    }

    /// Forgets a closed connection.
    pub(crate) fn remove(&self, key: &ConnectionKey) {
        self.running.lock().expect("cancel registry poisoned").remove(key);
    }

    fn cancel(&self, key: &ConnectionKey) -> bool {
        match self.running.lock().expect("cancel registry poisoned").get(key) {
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

/// Rows produced ahead of the client; small, so memory stays bounded by the client's pace.
const FORWARDED_ROWS: usize = 64;

/// Aborts the producing task when the row stream is dropped (done, cancelled or disconnected).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Produces a response's rows in their own task and ends the stream with `QueryCanceled`
/// (SQLSTATE 57014) as soon as `token` fires.
pub(crate) fn cancellable(response: Response, token: CancellationToken) -> Response {
    let Response::Query(mut query) = response else { return response };
    let mut rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
    let (sender, receiver) = tokio::sync::mpsc::channel(FORWARDED_ROWS);
    let producer = tokio::spawn(async move {
        while let Some(row) = rows.next().await {
            if sender.send(row).await.is_err() {
                break;
            }
        }
    });
    let state = Some((receiver, token, AbortOnDrop(producer.abort_handle())));
    let guarded = futures::stream::unfold(state, |state| async move {
        let (mut receiver, token, producer) = state?;
        tokio::select! {
            biased;
            _ = token.cancelled() => Some((Err(PgWireError::QueryCanceled), None)),
            row = receiver.recv() => row.map(|row| (row, Some((receiver, token, producer)))),
        }
    });
    query.data_rows = Box::pin(guarded);
    Response::Query(query)
}
