//! A connection's thread kept on the core where its client's messages arrive.
//!
//! A connection's thread sleeps between its client's messages, and the kernel wakes it where
//! it last ran, or on whichever core is idle: often not the core the client sends from. Every
//! message then costs the two cores an inter-processor interrupt each way, and the client,
//! finding no answer when it next reads, sleeps too; on a virtual machine each of those
//! wake-ups costs tens of microseconds, more than a one-row query takes to run. With 8 pgbench
//! clients on 2 cores, 75–90% of Quantatom's wake-ups crossed cores, and prepared `SELECT 1`
//! ran at 0.7–1.6× PostgreSQL's tps depending on where the threads happened to start; kept on
//! their clients' cores, no wake-up crossed and it ran at 1.25–2.1× in every run
//! (docs/benchmarks.md).
//!
//! The socket says where its client's segments arrive (`SO_INCOMING_CPU`): for a client on the
//! same machine the core it sends from, for a remote one the core that took the network card's
//! interrupt for this connection, where the segment's bytes are already in cache. The thread
//! is moved there by narrowing its allowed cores to that one and giving the whole set back at
//! once: a nudge, not a pin, so the kernel's balancer may still move it later. It looks every
//! [`MESSAGES_BETWEEN_LOOKS`] messages, moves only when two looks in a row agree, and at most
//! once per [`MOVE_INTERVAL`], so a client whose segments arrive on varying cores costs
//! little.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::query_metrics::QueryMetrics;

/// Client messages between two looks at where they arrive.
const MESSAGES_BETWEEN_LOOKS: u32 = 32;

/// The least time between two moves of one connection's thread.
const MOVE_INTERVAL: Duration = Duration::from_millis(100);

/// Keeps the calling connection's thread on its client's core (module docs).
pub(crate) struct ClientCore {
    /// The connection's socket, open for as long as this lives.
    socket: RawFd,
    messages: u32,
    /// The core the last look found the client's messages arriving on, when not this thread's.
    elsewhere: Option<usize>,
    moved_at: Option<Instant>,
    /// Where each move is counted.
    metrics: Arc<QueryMetrics>,
}

impl ClientCore {
    /// Follows the client of `socket`, which must stay open while this is used, counting each
    /// move in `metrics`.
    pub(crate) fn new(socket: RawFd, metrics: Arc<QueryMetrics>) -> Self {
        Self {
            socket,
            messages: 0,
            elsewhere: None,
            moved_at: None,
            metrics,
        }
    }

    /// Counts a message from the client, on the connection's own thread; now and then looks
    /// where the client's messages arrive and moves the thread there.
    pub(crate) fn message_received(&mut self) {
        self.messages = self.messages.wrapping_add(1);
        if !self.messages.is_multiple_of(MESSAGES_BETWEEN_LOOKS) {
            return;
        }
        let (Some(arriving), Some(running)) = (incoming_core(self.socket), current_core()) else {
            return;
        };
        let elsewhere = (arriving != running).then_some(arriving);
        let confirmed = elsewhere.is_some() && elsewhere == self.elsewhere;
        self.elsewhere = elsewhere;
        let recently_moved = self.moved_at.is_some_and(|at| at.elapsed() < MOVE_INTERVAL);
        if confirmed && !recently_moved && move_current_thread(arriving) {
            self.moved_at = Some(Instant::now());
            self.elsewhere = None;
            self.metrics.observe_core_move();
        }
    }
}

/// The core that received `socket`'s last segment, if the kernel knows it.
fn incoming_core(socket: RawFd) -> Option<usize> {
    let mut core: libc::c_int = -1;
    let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `core` and `length` are valid for the kernel to write an int and its size.
    let read = unsafe {
        libc::getsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_INCOMING_CPU,
            (&raw mut core).cast(),
            &raw mut length,
        )
    };
    (read == 0)
        .then_some(core)
        .and_then(|core| usize::try_from(core).ok())
}

/// The core the calling thread runs on.
fn current_core() -> Option<usize> {
    // SAFETY: no arguments; reads the calling thread's core.
    usize::try_from(unsafe { libc::sched_getcpu() }).ok()
}

/// The cores the calling thread may run on.
fn allowed_cores() -> Option<libc::cpu_set_t> {
    // SAFETY: a zeroed plain bit set for the kernel to fill; pid 0 names the calling thread.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, size_of_val(&allowed), &mut allowed) == 0).then_some(allowed)
    }
}

/// Moves the calling thread to `core`, if its allowed cores include it, and allows it its
/// cores again at once; whether it moved.
fn move_current_thread(core: usize) -> bool {
    let Some(allowed) = allowed_cores() else {
        return false;
    };
    // SAFETY: CPU_ISSET reads the set at `core`, checked against its capacity first.
    if core >= libc::CPU_SETSIZE as usize || !unsafe { libc::CPU_ISSET(core, &allowed) } {
        return false;
    }
    // SAFETY: a zeroed plain bit set with one core, checked against its capacity above; pid 0
    // names the calling thread.
    unsafe {
        let mut only: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut only);
        if libc::sched_setaffinity(0, size_of_val(&only), &only) != 0 {
            return false;
        }
        if libc::sched_setaffinity(0, size_of_val(&allowed), &allowed) != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                core,
                "a connection's thread stays on one core: its allowed cores could not be restored"
            );
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's allowed cores, listed.
    fn allowed_core_list() -> Vec<usize> {
        let allowed = allowed_cores().expect("this thread's allowed cores");
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: every core is below the set's capacity.
            .filter(|core| unsafe { libc::CPU_ISSET(*core, &allowed) })
            .collect()
    }

    #[test]
    fn a_moved_thread_runs_on_the_core_and_keeps_all_its_cores() {
        let before = allowed_core_list();
        assert!(
            before.len() >= 2,
            "this test needs two cores, has {before:?}"
        );
        std::thread::spawn(move || {
            for &core in before.iter().rev() {
                assert!(move_current_thread(core));
                // Moved at once: it runs there until the kernel moves it, which an idle
                // test thread gives it no reason to within a few microseconds.
                assert_eq!(current_core(), Some(core));
                assert_eq!(allowed_core_list(), before);
            }
            assert!(!move_current_thread(libc::CPU_SETSIZE as usize));
            assert_eq!(allowed_core_list(), before);
        })
        .join()
        .expect("the moving thread");
    }
}
