//! Seeded epoch order and batching.
//!
//! The order of epoch `e` depends only on `(seed, e)`, never on the epochs before it, so a run
//! resumed at epoch `e` sees exactly the samples an uninterrupted run would have seen.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{EngineError, Result};

/// A permutation of `0..n` for epoch `epoch` of a run seeded with `seed`.
///
/// The generator is ChaCha8 keyed by `seed` on stream `epoch`; the shuffle is Fisher-Yates with
/// the index drawn by a widening multiply of one `u64` (bias below `n / 2^64`), written out here
/// rather than taken from `rand` so the order cannot change when `rand`'s algorithms do.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

/// Number of batches of `batch` samples in an epoch of `n` samples: with `drop_last` a final
/// partial batch is left out. Zero when `batch` is zero.
pub fn num_batches(n: usize, batch: usize, drop_last: bool) -> usize {
    match (batch, drop_last) {
        (0, _) => 0,
        (b, true) => n / b,
        (b, false) => n.div_ceil(b),
    }
}

/// Consecutive chunks of an epoch order, each `batch` indices long except perhaps the last,
/// which is left out when `drop_last` is set.
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    order: &'a [usize],
    batch: usize,
    drop_last: bool,
}

impl<'a> Batches<'a> {
    /// Batches over `order` (typically from [`epoch_order`]). `batch` must be at least 1.
    pub fn new(order: &'a [usize], batch: usize, drop_last: bool) -> Result<Self> {
        if batch == 0 {
            return Err(EngineError::InvalidArgument(
                "the batch size is 0; pass a batch size of at least 1".to_string(),
            ));
        }
        Ok(Self { order, batch, drop_last })
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = &'a [usize];

    fn next(&mut self) -> Option<&'a [usize]> {
        let take = self.batch.min(self.order.len());
        if take == 0 || (self.drop_last && take < self.batch) {
            return None;
        }
        let (chunk, rest) = self.order.split_at(take);
        self.order = rest;
        Some(chunk)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = num_batches(self.order.len(), self.batch, self.drop_last);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batches<'_> {}
