//! One client connection's message loop, with PostgreSQL's output buffering.
//!
//! pgwire's handlers flush after many single messages (ParseComplete, BindComplete,
//! RowDescription, CommandComplete), so a prepared statement's Bind/Describe/Execute/Sync cost
//! four `sendto`s where PostgreSQL sends one. PostgreSQL flushes only when it is about to wait
//! for the client; this loop does the same: writes collect in a buffer (written out whenever it
//! fills, so a large result still streams) and go to the socket when no further complete message
//! from the client is already buffered. The loop is otherwise pgwire's own (`process_socket`):
//! its TLS negotiation, message dispatch and error handling, except that an error during
//! startup (a failed login) ends the connection.
//!
//! Between a response and the client's next message the loop may poll for a moment before it
//! sleeps ([`IdlePoll`]): a thread woken from sleep by the network costs a round trip tens of
//! microseconds on a virtual machine, more than a one-row query takes to run.

use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{SinkExt, Stream, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::PgWireError;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::messages::response::TransactionStatus;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::{Framed, FramedParts};

use super::authentication::fatal;
use super::client_core::ClientCore;
use super::eager_reads::EagerReads;
use super::query_metrics::QueryMetrics;

/// How long a client has to finish startup, as PostgreSQL's `authentication_timeout`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes written to the socket at once at most while a response is being produced.
const WRITE_BUFFER: usize = 64 * 1024;

/// A stream whose flushes are held back until [`HeldFlushes::flush_now`] allows one.
struct HeldFlushes<S> {
    io: BufWriter<S>,
    hold: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeldFlushes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HeldFlushes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.hold {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Whether `buffer` starts with a whole regular message (type byte, then a length that counts
/// itself): the loop will handle it without waiting for the client.
fn holds_whole_message(buffer: &[u8]) -> bool {
    match buffer.get(1..5) {
        Some(length) => {
            let length = u32::from_be_bytes(length.try_into().expect("four bytes")) as usize;
            buffer.len() > length
        }
        None => false,
    }
}

/// How connections wait for their clients' next message: by polling for up to `budget` after
/// a response before sleeping, as ScyllaDB's Seastar reactor does (`idle-poll-time-us`).
///
/// Sleeping in `epoll_wait` and being woken by the client's next message costs a virtual
/// machine's CPU an exit and an inter-processor interrupt: on a 2-core VM a loopback round trip
/// between two sleeping threads takes about 85 µs, between a sleeping and a polling one about
/// 35 µs. Polling pays only for a client that answers quickly, as a driver, a pool or a BI
/// tool sending statement after statement from the same machine or the same node does, so a
/// connection polls only while its client's last wait was shorter than the budget (a remote
/// client's network round trip stops it after one try), and only one connection of the server
/// polls at a time: at most one core spins, and the spinning yields to every other task and to
/// any other thread that wants the core.
#[derive(Debug, Clone)]
pub(crate) struct IdlePoll {
    budget: Duration,
    /// Taken by the connection polling now.
    polling: Arc<AtomicBool>,
    /// Where each poll is counted.
    metrics: Arc<QueryMetrics>,
}

impl IdlePoll {
    /// Connections polling for up to `budget` (zero: never) before they sleep, each poll
    /// counted in `metrics`.
    pub(crate) fn new(budget: Duration, metrics: Arc<QueryMetrics>) -> Self {
        Self {
            budget,
            polling: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }
}

/// One connection's waits for its client ([`IdlePoll`]).
struct ClientWaits {
    poll: IdlePoll,
    /// When the last response went to the socket.
    answered_at: Option<Instant>,
    /// Whether the client's last wait was short enough for polling to have caught it.
    answers_quickly: bool,
}

/// The connection polling now: gives polling back when dropped.
struct PollingTurn<'a>(&'a AtomicBool);

impl Drop for PollingTurn<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl ClientWaits {
    fn new(poll: IdlePoll) -> Self {
        Self {
            poll,
            answered_at: None,
            answers_quickly: false,
        }
    }

    /// Records that a response has just gone to the client.
    fn answered(&mut self) {
        self.answered_at = Some(Instant::now());
    }

    /// Records that the client's next message woke the connection from sleep.
    fn woken(&mut self) {
        self.answers_quickly = self
            .answered_at
            .is_some_and(|answered| answered.elapsed() < self.poll.budget);
    }

    /// The client's next message from `messages` if it comes within the budget of the last
    /// response, while the client answers quickly and no other connection polls; else
    /// `Pending`, without waiting, and the caller sleeps until the message comes.
    async fn poll_briefly<S: Stream + Unpin>(&mut self, messages: &mut S) -> Poll<Option<S::Item>> {
        let Some(answered) = self.answered_at.filter(|_| self.answers_quickly) else {
            return Poll::Pending;
        };
        let polling = &self.poll.polling;
        if polling
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Poll::Pending;
        }
        let _turn = PollingTurn(polling);
        let started = Instant::now();
        let deadline = answered + self.poll.budget;
        loop {
            // One poll without waiting: a plain connection asks its socket itself
            // (`EagerReads`); a TLS one sees the bytes once the runtime's event loop, which a
            // yielding task makes look again without sleeping, has.
            let next = std::future::poll_fn(|cx| Poll::Ready(messages.poll_next_unpin(cx))).await;
            let now = Instant::now();
            if next.is_ready() || now >= deadline {
                self.answers_quickly = next.is_ready();
                (self.poll.metrics).observe_idle_poll(next.is_ready(), now - started);
                return next;
            }
            // Polling uses only time this core would otherwise idle: any other thread that
            // wants the core gets it first, such as a client on the same machine that this
            // response woke here, whose next message then comes sooner (docs/benchmarks.md
            // measures polling). Then the connection's event loop looks at its socket again.
            std::thread::yield_now();
            tokio::task::yield_now().await;
        }
    }
}

/// Completes when the startup deadline passes; never once the session has started (`None`).
async fn startup_ended(deadline: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match deadline {
        Some(deadline) => deadline.await,
        None => std::future::pending().await,
    }
}

/// What ends a connection besides its client: the server shutting down, or the server being
/// full when it arrived.
pub(crate) struct Ending {
    /// Becomes `true` when the server shuts down: the connection is closed with 57P01 as soon
    /// as it is not running a statement.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// When set, the client's startup is answered with this error (53300: too many clients);
    /// a cancel request is still served.
    pub(crate) refusal: Option<PgWireError>,
}

/// Serves one client connection with `handlers` until it ends, telling `handled` the
/// connection's transaction status after each client message; `client_core`, on a
/// connection's own thread, keeps that thread on its client's core.
pub(crate) async fn serve_connection<H: PgWireServerHandlers>(
    tcp: TcpStream,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    handlers: H,
    handled: impl Fn(TransactionStatus),
    mut ending: Ending,
    idle_poll: IdlePoll,
    mut client_core: Option<ClientCore>,
) -> io::Result<()> {
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();

    // Dropped once the session starts: an idle connection keeps no timer in tokio's wheel.
    let mut startup_deadline = Some(Box::pin(tokio::time::sleep(STARTUP_TIMEOUT)));
    let negotiated = tokio::select! {
        _ = startup_ended(&mut startup_deadline) => return Ok(()),
        negotiated = negotiate_tls(tcp, tls) => negotiated?,
    };
    let Some(negotiated) = negotiated else {
        return Ok(());
    };
    let parts = negotiated.into_parts();
    let io = HeldFlushes {
        io: BufWriter::with_capacity(WRITE_BUFFER, EagerReads::new(parts.io)),
        hold: true,
    };
    let mut held = FramedParts::new(io, parts.codec);
    held.read_buf = parts.read_buf;
    held.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(held);
    // One wait for the shutdown for the whole connection: registering a fresh one each time
    // the connection waits for its client cost a one-row query about 1% of its time.
    let mut shutdown_watch = ending.shutdown.clone();
    let mut shut_down = pin!(async move {
        let _ = shutdown_watch.wait_for(|stopping| *stopping).await;
    });

    let mut waits = ClientWaits::new(idle_poll);

    // The error that ends the connection, if one does: sent, then the connection closes.
    let last_error = loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        if !starting {
            startup_deadline = None;
        }
        // Between statements: a shutdown closes the connection here, never mid-statement. A
        // message already whole in the buffer (the Bind, Describe and Execute sent with a Sync)
        // is taken without waiting for either; one that comes soon may be polled for first.
        let shutting_down = *ending.shutdown.borrow();
        let message = if !starting && !shutting_down && holds_whole_message(socket.read_buffer()) {
            socket.next().await
        } else {
            let polled = match starting || shutting_down {
                true => Poll::Pending,
                false => waits.poll_briefly(&mut socket).await,
            };
            match polled {
                Poll::Ready(message) => message,
                Poll::Pending => {
                    let message = tokio::select! {
                        biased;
                        _ = startup_ended(&mut startup_deadline) => None,
                        () = &mut shut_down => {
                            let error = fatal("57P01", "terminating connection due to administrator command".into());
                            break Some((error, false));
                        }
                        message = socket.next() => message,
                    };
                    waits.woken();
                    message
                }
            }
        };
        let Some(Ok(message)) = message else {
            break None;
        };
        if let Some(client_core) = &mut client_core {
            client_core.message_received();
        }
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break None;
        }
        if let (Some(_), PgWireFrontendMessage::Startup(_)) = (&ending.refusal, &message) {
            break ending.refusal.take().map(|refusal| (refusal, false));
        }
        let extended_protocol = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended_protocol) => extended_protocol,
            _ => message.is_extended_query(),
        };
        let result = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(mut error) = result {
            errors.on_error(&socket, &mut error);
            if starting {
                // An error before the session starts is FATAL, as in PostgreSQL: the client
                // gets it and the connection ends.
                break Some((error, extended_protocol));
            }
            process_error(&mut socket, error, extended_protocol).await?;
        }
        handled(socket.transaction_status());
        if matches!(socket.state(), PgWireConnectionState::AwaitingStartup)
            || !holds_whole_message(socket.read_buffer())
        {
            socket.get_mut().hold = false;
            let flushed = socket.flush().await;
            socket.get_mut().hold = true;
            flushed.map_err(io::Error::other)?;
            waits.answered();
        }
    };
    if let Some((error, extended_protocol)) = last_error {
        process_error(&mut socket, error, extended_protocol).await?;
        socket.get_mut().hold = false;
        let _ = socket.flush().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::holds_whole_message;

    #[test]
    fn a_message_is_whole_once_its_counted_length_is_buffered() {
        // Sync: 'S', length 4 (the length field only).
        assert!(holds_whole_message(b"S\0\0\0\x04"));
        assert!(holds_whole_message(b"S\0\0\0\x04Q"));
        // Query 'Q' of length 9 with only 4 of its 5 body bytes here.
        assert!(!holds_whole_message(b"Q\0\0\0\x09SELE"));
        assert!(holds_whole_message(b"Q\0\0\0\x09SELE\0"));
        assert!(!holds_whole_message(b"S\0\0"));
        assert!(!holds_whole_message(b""));
    }
}
