//! Ring schedules as data: which pieces of a buffer a rank sends first, and which it
//! receives, in order, and what it does with each. Pure, so it is tested without sockets.
//!
//! The buffer is cut into `n` segments (segment `i` = elements `i*len/n .. (i+1)*len/n`) and
//! each segment into chunks of at most `chunk_elems`. Every rank sends only to its successor
//! and receives only from its predecessor. A rank sends its `first_sends`, then forwards each
//! received chunk marked `forward` in the order received, so chunk `k` of step `s + 1` leaves
//! as soon as chunk `k` of step `s` has arrived: large buffers stream through the ring
//! instead of moving segment by segment.
//!
//! Ring all-reduce, rank `r`, `n` ranks (indices mod `n`):
//! - reduce-scatter, step `s` in `0..n-1`: receive segment `r-s-1` and add it in;
//!   afterwards rank `r` holds the full sum of segment `r+1`;
//! - all-gather, step `s` in `0..n-1`: receive segment `r-s` and copy it in.
//!
//! Every received chunk is forwarded except those of the last all-gather step.

use std::ops::Range;

use crate::transport::connection::Mode;

/// One receive in a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recv {
    /// Index into [`Plan::chunks`].
    pub chunk: usize,
    /// Add into the chunk or overwrite it.
    pub mode: Mode,
    /// Send the chunk on to the successor once received.
    pub forward: bool,
}

/// A rank's schedule for one collective.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Element ranges of the buffer, in increasing order, disjoint.
    pub chunks: Vec<Range<usize>>,
    /// Chunks sent before anything is received.
    pub first_sends: Vec<usize>,
    /// Receives, in the order they arrive.
    pub recvs: Vec<Recv>,
}

impl Plan {
    /// Total elements this rank sends.
    pub(crate) fn sent_elems(&self) -> usize {
        let first: usize = self.first_sends.iter().map(|&c| self.chunks[c].len()).sum();
        let fwd: usize = self.recvs.iter().filter(|r| r.forward).map(|r| self.chunks[r.chunk].len()).sum();
        first + fwd
    }
}

/// Chunks of a buffer of `len` elements split into `n` segments: returns the chunk ranges
/// and, for each segment, the range of chunk indices it owns. Empty segments own no chunk.
fn segment_chunks(len: usize, n: usize, chunk_elems: usize) -> (Vec<Range<usize>>, Vec<Range<usize>>) {
    let chunk_elems = chunk_elems.max(1);
    let mut chunks = Vec::new();
    let mut owned = Vec::with_capacity(n);
    for i in 0..n {
        let (start, end) = (i * len / n, (i + 1) * len / n);
        let first = chunks.len();
        let mut at = start;
        while at < end {
            let stop = (at + chunk_elems).min(end);
            chunks.push(at..stop);
            at = stop;
        }
        owned.push(first..chunks.len());
    }
    (chunks, owned)
}

fn wrap(i: isize, n: usize) -> usize {
    i.rem_euclid(n as isize) as usize
}

/// Appends the all-gather half of a ring: in step `s` of `n - 1` this rank receives segment
/// `first - s` and copies it in, forwarding it except in the last step.
fn push_gather_steps(recvs: &mut Vec<Recv>, owned: &[Range<usize>], n: usize, first: isize) {
    for s in 0..n as isize - 1 {
        let forward = s < n as isize - 2;
        recvs.extend(owned[wrap(first - s, n)].clone().map(|chunk| Recv { chunk, mode: Mode::Copy, forward }));
    }
}

/// Sum of `len`-element buffers across `n` ranks, seen from `rank`.
pub(crate) fn all_reduce(len: usize, n: usize, rank: usize, chunk_elems: usize) -> Plan {
    let (chunks, owned) = segment_chunks(len, n, chunk_elems);
    if n < 2 {
        return Plan { chunks, first_sends: vec![], recvs: vec![] };
    }
    let r = rank as isize;
    let first_sends = owned[rank].clone().collect();
    let mut recvs = Vec::new();
    for s in 0..n as isize - 1 {
        let seg = wrap(r - s - 1, n);
        recvs.extend(owned[seg].clone().map(|chunk| Recv { chunk, mode: Mode::Add, forward: true }));
    }
    // The last reduce-scatter step left segment r + 1 complete here; it has just been
    // forwarded, so the successor's gather starts from it and ours from segment r.
    push_gather_steps(&mut recvs, &owned, n, r);
    Plan { chunks, first_sends, recvs }
}

/// Concatenation of every rank's `seg_len` elements (rank order) into an `n * seg_len`
/// buffer whose segment `rank` already holds this rank's part.
pub(crate) fn all_gather(seg_len: usize, n: usize, rank: usize, chunk_elems: usize) -> Plan {
    let (chunks, owned) = segment_chunks(seg_len * n, n, chunk_elems);
    if n < 2 {
        return Plan { chunks, first_sends: vec![], recvs: vec![] };
    }
    let first_sends = owned[rank].clone().collect();
    let mut recvs = Vec::new();
    push_gather_steps(&mut recvs, &owned, n, rank as isize - 1);
    Plan { chunks, first_sends, recvs }
}

/// `root`'s buffer copied to every rank, pipelined along the ring starting at `root`.
pub(crate) fn broadcast(len: usize, n: usize, rank: usize, root: usize, chunk_elems: usize) -> Plan {
    // One segment: the chunking alone gives the pipeline.
    let (chunks, _) = segment_chunks(len, 1, chunk_elems);
    let all: Vec<usize> = (0..chunks.len()).collect();
    let hops_from_root = wrap(rank as isize - root as isize, n);
    if n < 2 {
        Plan { chunks, first_sends: vec![], recvs: vec![] }
    } else if hops_from_root == 0 {
        Plan { chunks, first_sends: all, recvs: vec![] }
    } else {
        let forward = hops_from_root < n - 1;
        let recvs = all.into_iter().map(|chunk| Recv { chunk, mode: Mode::Copy, forward }).collect();
        Plan { chunks, first_sends: vec![], recvs }
    }
}

#[cfg(test)]
pub(crate) mod sim {
    //! An in-memory ring that runs plans, to check them without sockets.
    use super::*;
    use std::collections::VecDeque;

    /// Runs one plan per rank over FIFO links (rank i sends to i+1); returns the buffers.
    /// Panics (test-only) if the plans deadlock or disagree on sizes.
    pub(crate) fn run(plans: &[Plan], mut bufs: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
        let n = plans.len();
        // links[i] carries rank i -> rank i+1.
        let mut links: Vec<VecDeque<Vec<f64>>> = vec![VecDeque::new(); n];
        let mut next_recv = vec![0usize; n];
        for (i, p) in plans.iter().enumerate() {
            for &c in &p.first_sends {
                links[i].push_back(bufs[i][p.chunks[c].clone()].to_vec());
            }
        }
        loop {
            let mut progressed = false;
            for i in 0..n {
                let prev = (i + n - 1) % n;
                let p = &plans[i];
                while next_recv[i] < p.recvs.len() {
                    let Some(data) = links[prev].pop_front() else { break };
                    let rv = p.recvs[next_recv[i]];
                    let range = p.chunks[rv.chunk].clone();
                    assert_eq!(data.len(), range.len(), "size mismatch at rank {i}");
                    for (d, s) in bufs[i][range.clone()].iter_mut().zip(&data) {
                        match rv.mode {
                            Mode::Add => *d += s,
                            Mode::Copy => *d = *s,
                        }
                    }
                    if rv.forward {
                        links[i].push_back(bufs[i][range].to_vec());
                    }
                    next_recv[i] += 1;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        for i in 0..n {
            assert_eq!(next_recv[i], plans[i].recvs.len(), "rank {i} starved");
            assert!(links[i].is_empty(), "rank {i} sent more than was received");
        }
        bufs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(rank: usize, len: usize) -> Vec<f64> {
        (0..len).map(|i| (rank * 1000 + i) as f64).collect()
    }

    #[test]
    fn all_reduce_plans_sum_for_odd_sizes_and_chunkings() {
        for n in 1..=8 {
            for len in [0, 1, 2, 7, 13, 100] {
                for chunk in [1, 3, 64] {
                    let plans: Vec<Plan> = (0..n).map(|r| all_reduce(len, n, r, chunk)).collect();
                    let out = sim::run(&plans, (0..n).map(|r| input(r, len)).collect());
                    let want: Vec<f64> = (0..len).map(|i| (0..n).map(|r| input(r, len)[i]).sum()).collect();
                    for (r, o) in out.iter().enumerate() {
                        assert_eq!(o, &want, "n={n} len={len} chunk={chunk} rank={r}");
                    }
                    // Bandwidth-optimal: 2(n-1)/n of the buffer leaves each rank (up to rounding of segments).
                    if n > 1 {
                        let sent: usize = plans.iter().map(|p| p.sent_elems()).sum();
                        assert_eq!(sent, 2 * (n - 1) * len, "n={n} len={len}");
                    }
                }
            }
        }
    }

    #[test]
    fn all_gather_plans_concatenate() {
        for n in 1..=6 {
            for seg in [0, 1, 5] {
                let plans: Vec<Plan> = (0..n).map(|r| all_gather(seg, n, r, 2)).collect();
                let bufs = (0..n)
                    .map(|r| {
                        let mut b = vec![-1.0; n * seg];
                        b[r * seg..(r + 1) * seg].copy_from_slice(&input(r, seg));
                        b
                    })
                    .collect();
                let want: Vec<f64> = (0..n).flat_map(|r| input(r, seg)).collect();
                for o in sim::run(&plans, bufs) {
                    assert_eq!(o, want);
                }
            }
        }
    }

    #[test]
    fn broadcast_plans_copy_from_any_root() {
        for n in 1..=5 {
            for root in 0..n {
                let plans: Vec<Plan> = (0..n).map(|r| broadcast(9, n, r, root, 4)).collect();
                for o in sim::run(&plans, (0..n).map(|r| input(r, 9)).collect()) {
                    assert_eq!(o, input(root, 9));
                }
            }
        }
    }
}
