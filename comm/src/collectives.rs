//! Running ring schedules ([`crate::plan`]) over the two sockets of a rank: the one to its
//! successor and the one from its predecessor.
//!
//! Large collectives run a sender thread beside the receiving thread, so that sending chunk
//! `k + 1` overlaps receiving and reducing chunk `k`. Chunks move between the two threads as
//! `&mut [f32]` borrows through channels: a chunk is either being sent or being received into,
//! never both, and Rust checks that without locks or unsafe code. Collectives whose whole
//! traffic fits in the kernel's socket buffer run on one thread (send all, then receive),
//! which saves the thread start on latency-bound small messages.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{CommError, Op};
use crate::frame::Kind;
use crate::liveness::Liveness;
use crate::plan::Plan;
use crate::transport::connection::{Connection, LinkError, PIECE_ELEMS};
use crate::transport::messages::AbortNotice;
use crate::transport::socket::send_buffer_bytes;

/// Largest traffic, in bytes, that a collective sends from one thread before receiving.
const MAX_INLINE_BYTES: usize = 64 * 1024;
/// How long a failed collective waits for its sender thread to reach a frame boundary before
/// cutting the connection under it.
const SENDER_GRACE: Duration = Duration::from_millis(200);

/// A rank's place in the ring: a connection to its successor and one from its predecessor.
pub(crate) struct Ring {
    pub rank: usize,
    pub world_size: usize,
    next: Connection,
    prev: Connection,
    /// Clones used to wake a thread blocked on the other socket.
    next_waker: TcpStream,
    prev_waker: TcpStream,
    timeout: Duration,
    scratch: Vec<f32>,
    inline_bytes: usize,
    /// The heartbeat service over the control links to rank 0, which names the culprit when
    /// a collective times out; `None` until the rendezvous hands it over.
    liveness: Option<Liveness>,
}

/// Which side of a collective failed first.
enum Failure {
    Send(LinkError),
    Recv(LinkError),
}

impl Ring {
    /// Joins the two connected, authenticated sockets into a ring.
    pub(crate) fn new(
        rank: usize,
        world_size: usize,
        next: Connection,
        prev: Connection,
        timeout: Duration,
    ) -> std::io::Result<Ring> {
        let next_waker = next.try_clone_stream()?;
        let prev_waker = prev.try_clone_stream()?;
        // Half the send buffer: the kernel counts its own overhead in SO_SNDBUF.
        let inline_bytes = (send_buffer_bytes(next.stream()) / 2).min(MAX_INLINE_BYTES);
        next.set_timeout(timeout)?;
        prev.set_timeout(timeout)?;
        Ok(Ring {
            rank,
            world_size,
            next,
            prev,
            next_waker,
            prev_waker,
            timeout,
            scratch: vec![0.0; PIECE_ELEMS],
            inline_bytes,
            liveness: None,
        })
    }

    /// Reports progress to `liveness` and asks it who is to blame when a collective fails.
    pub(crate) fn watched_by(mut self, liveness: Liveness) -> Ring {
        self.liveness = Some(liveness);
        self
    }

    pub(crate) fn next_rank(&self) -> usize {
        (self.rank + 1) % self.world_size
    }

    pub(crate) fn prev_rank(&self) -> usize {
        (self.rank + self.world_size - 1) % self.world_size
    }

    /// Runs `plan` on `buf` with data frames tagged `tag`.
    ///
    /// Errors: the first failure, naming the peer and `op`. The ring must not be used for
    /// another collective afterwards, except to send an abort notice.
    ///
    /// A timeout names the rank that the liveness service suspects, when it suspects one,
    /// rather than the neighbour this rank was waiting on.
    pub(crate) fn run(&mut self, plan: &Plan, buf: &mut [f32], op: Op, tag: u32) -> Result<(), CommError> {
        if let Some(liveness) = &self.liveness {
            liveness.begin();
        }
        let result = if plan.sent_elems() * 4 <= self.inline_bytes {
            self.run_inline(plan, buf, tag)
        } else {
            self.run_threaded(plan, buf, tag)
        };
        if let Some(liveness) = &self.liveness {
            liveness.end();
        }
        result.map_err(|failure| {
            let err = match failure {
                Failure::Send(e) => e.into_comm(self.next_rank(), op, self.timeout),
                Failure::Recv(e) => e.into_comm(self.prev_rank(), op, self.timeout),
            };
            match &self.liveness {
                Some(liveness) => liveness.name_culprit(err, self.timeout),
                None => err,
            }
        })
    }

    fn run_inline(&mut self, plan: &Plan, buf: &mut [f32], tag: u32) -> Result<(), Failure> {
        for &c in &plan.first_sends {
            self.next.write_data(tag, &buf[plan.chunks[c].clone()], None).map_err(Failure::Send)?;
        }
        for rv in &plan.recvs {
            let chunk = &mut buf[plan.chunks[rv.chunk].clone()];
            let crc = self.prev.read_data(tag, chunk, rv.mode, &mut self.scratch, rv.forward).map_err(Failure::Recv)?;
            if rv.forward {
                self.next.write_data(tag, chunk, crc).map_err(Failure::Send)?;
            }
        }
        Ok(())
    }

    fn run_threaded(&mut self, plan: &Plan, buf: &mut [f32], tag: u32) -> Result<(), Failure> {
        let Ring { next, prev, next_waker, prev_waker, scratch, .. } = self;
        // slots[c] holds chunk c while the receiving side owns it.
        let mut slots: Vec<Option<&mut [f32]>> = Vec::with_capacity(plan.chunks.len());
        let mut rest: &mut [f32] = buf;
        let mut at = 0;
        for range in &plan.chunks {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(range.start - at);
            let (chunk, tail) = tail.split_at_mut(range.len());
            slots.push(Some(chunk));
            rest = tail;
            at = range.end;
        }
        let stop = AtomicBool::new(false);
        let recv_done = AtomicBool::new(false);
        let cut_by_us = AtomicBool::new(false);

        thread::scope(|s| {
            // (chunk index, chunk, its CRC when the receiving side already computed it)
            let (to_send, send_queue) = flume::unbounded::<(usize, &mut [f32], Option<u32>)>();
            let (give_back, returned) = flume::unbounded::<(usize, &mut [f32])>();
            let (stop, recv_done) = (&stop, &recv_done);
            let prev_waker = &*prev_waker;
            let sender = s.spawn(move || -> Result<(), LinkError> {
                for (id, chunk, crc) in send_queue.iter() {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    if let Err(e) = next.write_data(tag, chunk, crc) {
                        stop.store(true, Ordering::Relaxed);
                        // A successor that went away has usually just failed itself, and its
                        // reason is on its way round the ring: let the receiving side hear it
                        // before waking it up with a cut.
                        let start = Instant::now();
                        while !recv_done.load(Ordering::Relaxed) && start.elapsed() < SENDER_GRACE {
                            thread::sleep(Duration::from_millis(1));
                        }
                        let _ = prev_waker.shutdown(Shutdown::Read);
                        return Err(e);
                    }
                    if give_back.send((id, chunk)).is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            });

            let received = (|| -> Result<(), Option<LinkError>> {
                for &c in &plan.first_sends {
                    let chunk = slots[c].take().ok_or(None)?;
                    to_send.send((c, chunk, None)).map_err(|_| None)?;
                }
                for rv in &plan.recvs {
                    let chunk = match slots[rv.chunk].take() {
                        Some(chunk) => chunk,
                        // Still with the sender: collect returns until it comes back.
                        None => loop {
                            let (id, chunk) = returned.recv().map_err(|_| None)?;
                            if id == rv.chunk {
                                break chunk;
                            }
                            slots[id] = Some(chunk);
                        },
                    };
                    let crc = prev.read_data(tag, chunk, rv.mode, scratch, rv.forward).map_err(Some)?;
                    if rv.forward {
                        to_send.send((rv.chunk, chunk, crc)).map_err(|_| None)?;
                    }
                }
                Ok(())
            })();
            drop(to_send);
            recv_done.store(true, Ordering::Relaxed);

            if received.is_err() {
                stop.store(true, Ordering::Relaxed);
                let start = Instant::now();
                while !sender.is_finished() && start.elapsed() < SENDER_GRACE {
                    thread::sleep(Duration::from_millis(1));
                }
                if !sender.is_finished() {
                    // Blocked mid-frame on a peer that does not read: cut the socket so the
                    // thread returns; the connection is unusable after that anyway.
                    cut_by_us.store(true, Ordering::Relaxed);
                    let _ = next_waker.shutdown(Shutdown::Write);
                }
            }
            let sent =
                sender.join().unwrap_or_else(|_| Err(LinkError::Unexpected("the sender thread panicked".into())));
            // The failure that explains the others: an abort notice names the culprit; a send
            // error we caused by cutting the socket explains nothing.
            let sent = if cut_by_us.load(Ordering::Relaxed) { Ok(()) } else { sent };
            match (received, sent) {
                (Err(Some(e @ LinkError::Abort(_))), _) => Err(Failure::Recv(e)),
                (_, Err(e)) => Err(Failure::Send(e)),
                (Err(Some(e)), Ok(())) => Err(Failure::Recv(e)),
                (Err(None), Ok(())) => {
                    Err(Failure::Recv(LinkError::Unexpected("the sender thread stopped early".into())))
                }
                (Ok(()), Ok(())) => Ok(()),
            }
        })
    }

    /// Tells the successor that this rank is giving up, so the news travels around the ring
    /// faster than timeouts would. Best effort: the successor may be the one that died.
    pub(crate) fn send_abort(&mut self, err: &CommError, op: Op) {
        let notice = match err {
            CommError::PeerFailed { rank, op, reporter, reason } => AbortNotice {
                suspect: *rank as u32,
                reporter: *reporter as u32,
                op: *op,
                tampered: false,
                reason: reason.clone(),
            },
            CommError::Tampered { from, to, op } => AbortNotice {
                suspect: *from as u32,
                reporter: to.unwrap_or(self.rank) as u32,
                op: *op,
                tampered: true,
                reason: err.to_string(),
            },
            other => AbortNotice {
                suspect: other.suspect_rank().unwrap_or(self.rank) as u32,
                reporter: self.rank as u32,
                op,
                tampered: false,
                reason: other.to_string(),
            },
        };
        // A suspect that is the successor has usually died, so telling it is pointless; but a
        // tampered link leaves both of its ends alive, and the sender must hear of it too.
        if (notice.suspect as usize == self.next_rank() && !notice.tampered) || self.next.is_broken() {
            return;
        }
        // A short write timeout: a successor that does not read must not hold up the error.
        let _ = self.next.stream().set_write_timeout(Some(self.timeout.min(Duration::from_secs(1))));
        let _ = self.next.write_frame(Kind::Abort, 0, &notice.encode());
    }

    /// Tells the successor this rank is leaving cleanly, then closes both connections.
    pub(crate) fn close(mut self, clean: bool) {
        if clean && !self.next.is_broken() {
            let _ = self.next.stream().set_write_timeout(Some(self.timeout.min(Duration::from_secs(1))));
            let _ = self.next.write_frame(Kind::Bye, 0, &[]);
        }
        self.liveness = None;
        self.next.shutdown();
        self.prev.shutdown();
    }
}
