//! Each client connection on a thread of its own, as PostgreSQL gives each one a backend.
//!
//! The connection's thread sleeps on its one socket; a client's message wakes that thread,
//! which moves to its client's core ([`super::client_core`]), so the answer is usually written
//! before the client next reads. Served by a pool of worker threads, a message waits until a worker
//! next looks at its event loop, and a client on the same machine sleeps again meanwhile
//! (docs/benchmarks.md measures both). Only the socket belongs to the connection's thread:
//! everything the connection starts (a query's parallel parts, timers, object storage requests)
//! goes to the server's shared runtime, so a large query still runs on every core.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Serves `socket` with `serve` on a new thread, under the shared runtime `shared`; completes
/// when the connection ends. Dropping the returned future (a drain timeout) closes the
/// connection as dropping its task would.
pub(crate) async fn serve_on_own_thread<F, Fut>(
    shared: Handle,
    socket: TcpStream,
    serve: F,
) -> io::Result<()>
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let socket = socket.into_std()?;
    let (closed, stop) = oneshot::channel::<()>();
    let (ended, end) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("quantatom-connection".into())
        .spawn(move || {
            let own = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(own) => own,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a connection's event loop");
                    return;
                }
            };
            own.block_on(async move {
                let socket = match TcpStream::from_std(socket) {
                    Ok(socket) => socket,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register a connection's socket");
                        return;
                    }
                };
                let served = InRuntime {
                    runtime: shared,
                    future: Some(Box::pin(serve(socket))),
                };
                tokio::select! {
                    () = served => {}
                    _ = stop => {}
                }
            });
            let _ = ended.send(());
        })?;
    // Dropped with this future: the connection's thread stops serving.
    let _closed = closed;
    let _ = end.await;
    Ok(())
}

/// `future` polled, and dropped, with `runtime` as the current runtime: what it spawns, and
/// its timers, go there rather than to the connection's own event loop.
struct InRuntime<F> {
    runtime: Handle,
    /// Taken when dropped, to be dropped inside `runtime`.
    future: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _entered = this.runtime.enter();
        let future = this.future.as_mut().expect("taken only when dropped");
        future.as_mut().poll(cx)
    }
}

impl<F> Drop for InRuntime<F> {
    fn drop(&mut self) {
        let _entered = self.runtime.enter();
        self.future = None;
    }
}
