//! A client connection's reads, asking a plain TCP socket itself before the event loop.
//!
//! tokio marks a socket unreadable after every read that leaves the read buffer less than full
//! (the sign, under epoll, that the socket had no more), so the next read waits for the
//! runtime's event loop to see the socket again: an `epoll_wait` and a turn of its driver,
//! even when the client's next message arrived while the response was being sent, as it does
//! on a busy connection. PostgreSQL's backend just calls `recv`. A plain connection's reads do
//! the same first (`recv` without waiting) and go through tokio, which then waits for the
//! socket, only when the socket has nothing. Readiness tokio keeps from before a direct read
//! costs at most one `recv` that finds nothing; no wake-up is lost, as every arrival of bytes is
//! an epoll event of its own.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use pgwire::tokio::server::MaybeTls;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A negotiated client stream whose reads ask a plain TCP socket directly first (bytes over
/// TLS must pass through its session).
pub(crate) struct EagerReads {
    stream: MaybeTls,
}

impl EagerReads {
    /// Reads from `stream`, eagerly when it is plain TCP.
    pub(crate) fn new(stream: MaybeTls) -> Self {
        Self { stream }
    }
}

/// What a `recv` without waiting found: bytes (or the end of the stream, 0) placed in `buf`,
/// an error, or `None` when the socket has nothing yet.
fn receive_now(socket: RawFd, buf: &mut ReadBuf<'_>) -> Option<io::Result<()>> {
    // SAFETY: `recv` writes only initialised bytes, and only the count it returns.
    let unfilled = unsafe { buf.unfilled_mut() };
    // SAFETY: the pointer and length are those of `unfilled`, writable for the whole call.
    let received = unsafe {
        libc::recv(
            socket,
            unfilled.as_mut_ptr().cast(),
            unfilled.len(),
            libc::MSG_DONTWAIT,
        )
    };
    match usize::try_from(received) {
        Ok(count) => {
            // SAFETY: `recv` initialised the first `count` bytes of the unfilled part.
            unsafe { buf.assume_init(count) };
            buf.advance(count);
            Some(Ok(()))
        }
        Err(_) => {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => None,
                _ => Some(Err(error)),
            }
        }
    }
}

impl AsyncRead for EagerReads {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let MaybeTls::Plain(tcp) = &self.stream
            && buf.remaining() > 0
            && let Some(received) = receive_now(tcp.as_raw_fd(), buf)
        {
            return Poll::Ready(received);
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for EagerReads {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use pgwire::tokio::server::MaybeTls;
    use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
    use tokio::net::{TcpListener, TcpStream};

    use super::EagerReads;

    /// One read of `reads` without waiting: what it gave, or `None` when it would wait.
    fn read_without_waiting(reads: &mut EagerReads) -> Option<Vec<u8>> {
        let mut bytes = [0u8; 64];
        let mut buf = ReadBuf::new(&mut bytes);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(reads).poll_read(&mut cx, &mut buf) {
            Poll::Ready(read) => {
                read.expect("read");
                Some(buf.filled().to_vec())
            }
            Poll::Pending => None,
        }
    }

    /// The first read of `reads` that gives bytes, trying again for up to two seconds (the
    /// kernel may hand a loopback segment over a moment after the write returns) without ever
    /// letting the runtime look at its sockets: this blocks its only thread.
    fn read_soon_without_the_event_loop(reads: &mut EagerReads) -> Option<Vec<u8>> {
        for _ in 0..2000 {
            if let Some(bytes) = read_without_waiting(reads) {
                return Some(bytes);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    /// A connected pair: the client's end and the server's, read eagerly.
    async fn connected() -> (TcpStream, EagerReads) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let client = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, EagerReads::new(MaybeTls::Plain(server)))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bytes_already_on_the_socket_are_read_before_the_event_loop_sees_them() {
        let (mut client, mut reads) = connected().await;
        client.write_all(b"first").await.expect("write");
        // A read of fewer bytes than the buffer holds leaves tokio's readiness cleared.
        assert_eq!(
            read_soon_without_the_event_loop(&mut reads).as_deref(),
            Some(&b"first"[..])
        );
        client.write_all(b"second").await.expect("write");
        // The runtime does not look at its sockets meanwhile: a read through tokio alone
        // would wait for the event loop however long the bytes have been there.
        assert_eq!(
            read_soon_without_the_event_loop(&mut reads).as_deref(),
            Some(&b"second"[..])
        );
        assert_eq!(read_without_waiting(&mut reads), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_empty_socket_waits_for_the_next_bytes_and_then_for_its_end() {
        let (mut client, mut reads) = connected().await;
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(b"later").await.expect("write");
            // Dropped: the stream ends.
        });
        let mut bytes = [0u8; 64];
        let mut buf = ReadBuf::new(&mut bytes);
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            poll_fn(|cx| Pin::new(&mut reads).poll_read(cx, &mut buf)),
        )
        .await;
        waited.expect("woken by the bytes").expect("read");
        assert_eq!(buf.filled(), b"later");
        writer.await.expect("writer");
        let mut rest = [0u8; 8];
        let mut end = ReadBuf::new(&mut rest);
        poll_fn(|cx| Pin::new(&mut reads).poll_read(cx, &mut end))
            .await
            .expect("end");
        assert!(
            end.filled().is_empty(),
            "the end of the stream reads as no bytes"
        );
    }
}
