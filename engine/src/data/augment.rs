//! Seeded augmentation of training batches: a random crop of a zero-padded image and a
//! horizontal flip, torchvision's `RandomCrop(size, padding=4)` then `RandomHorizontalFlip()`.
//!
//! What a sample gets depends only on `(seed, epoch, position)`, `position` being the sample's
//! place in that epoch's seeded order ([`super::epoch_order`]). So a run is reproducible, any
//! thread may gather any batch, and a run resumed mid-epoch or split across processes sees
//! exactly the images a single-worker run would.
//!
//! Padding adds pixels of raw value 0 (black) before normalisation, as torchvision does
//! (`Pad` comes before `Normalize`): in the stored, normalised values that is
//! [`super::Dataset::zero`], `(0 - mean) / std` per channel, not 0.

/// Which augmentation a training set gets. Test sets are never augmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Pixels of padding on every side before a crop back to the image size (0: no crop).
    pub pad: usize,
    /// Flip horizontally with probability 1/2.
    pub flip: bool,
}

impl Augment {
    /// The usual CIFAR recipe: 4 pixels of padding, a random crop, a horizontal flip.
    pub const CROP_FLIP: Augment = Augment { pad: 4, flip: true };

    /// What the sample at `position` of epoch `epoch` of a run seeded with `seed` gets.
    pub fn draw(&self, seed: u64, epoch: u64, position: u64) -> Draw {
        let r = mix(mix(mix(seed ^ DOMAIN) ^ epoch) ^ position);
        // Each choice takes its own 32 bits (widening multiply: bias below n / 2^32).
        let pick = |bits: u64, n: usize| (((bits & 0xffff_ffff) * n as u64) >> 32) as usize;
        let offsets = 2 * self.pad + 1;
        Draw { top: pick(r, offsets), left: pick(r >> 32, offsets), flip: self.flip && mix(r) & 1 == 1 }
    }

    /// Writes the augmented `src` into `dst`, both `[c, h, w]` of `shape`: with
    /// `P = self.pad`, `dst[c][y][x] = src[c][y + top - P][x' + left - P]` where
    /// `x' = w - 1 - x` when flipped and `x` otherwise, and `zero[c]` where that falls outside
    /// the image (the padding).
    ///
    /// # Panics
    /// If `src` or `dst` is not `c * h * w` long or `zero` not `c` long.
    pub fn apply(&self, draw: Draw, shape: [usize; 3], zero: &[f32], src: &[f32], dst: &mut [f32]) {
        let [c, h, w] = shape;
        assert!(src.len() == c * h * w && dst.len() == src.len() && zero.len() == c, "augment: buffer sizes");
        let shift = |offset: usize, i: usize, n: usize| (i + offset).checked_sub(self.pad).filter(|&v| v < n);
        for ch in 0..c {
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            let out = &mut dst[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                let row = &mut out[y * w..(y + 1) * w];
                let Some(sy) = shift(draw.top, y, h) else {
                    row.fill(zero[ch]);
                    continue;
                };
                for (x, v) in row.iter_mut().enumerate() {
                    let xc = if draw.flip { w - 1 - x } else { x };
                    *v = match shift(draw.left, xc, w) {
                        Some(sx) => plane[sy * w + sx],
                        None => zero[ch],
                    };
                }
            }
        }
    }
}

/// One sample's augmentation: the crop's corner in the padded image (each in `0..=2 * pad`;
/// `pad, pad` is no shift) and whether it is flipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draw {
    /// Row of the crop's top edge in the padded image.
    pub top: usize,
    /// Column of the crop's left edge in the padded image.
    pub left: usize,
    /// Mirror left and right (after the crop).
    pub flip: bool,
}

/// Keeps augmentation draws apart from every other use of the run's seed.
const DOMAIN: u64 = 0x6175_676d_656e_7421; // "augment!"

/// SplitMix64's finaliser: a bijection of `u64` whose outputs look independent for nearby
/// inputs. Written out, not taken from `rand`, so the draws cannot change with its versions.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
