//! Seeded augmentation: a crop and flip of a known image give the expected pixels, padding is a
//! raw black pixel, draws depend only on (seed, epoch, position), and test sets stay as they are.

mod support;

use asgd_engine::data::{epoch_order, load, Augment, DataKind, Dataset, Draw};
use support::{files, fresh_dir};

/// `[1, 3, 3]` image 1..=9, row-major.
const IMAGE: [f32; 9] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
const Z: f32 = -7.0;

fn apply(aug: Augment, draw: Draw, shape: [usize; 3], zero: &[f32], src: &[f32]) -> Vec<f32> {
    let mut dst = vec![f32::NAN; src.len()];
    aug.apply(draw, shape, zero, src, &mut dst);
    dst
}

#[test]
fn a_crop_and_a_flip_of_a_known_image() {
    let aug = Augment { pad: 1, flip: true };
    let shape = [1, 3, 3];
    // Crop corner (pad, pad) and no flip: the image itself.
    assert_eq!(apply(aug, Draw { top: 1, left: 1, flip: false }, shape, &[Z], &IMAGE), IMAGE);
    // Corner (0, 2) of the padded 5x5: one row of padding on top, the image moved left by one,
    // padding on the right.
    let shifted = [Z, Z, Z, 2.0, 3.0, Z, 5.0, 6.0, Z];
    assert_eq!(apply(aug, Draw { top: 0, left: 2, flip: false }, shape, &[Z], &IMAGE), shifted);
    // The same crop, then mirrored left to right.
    let flipped = [Z, Z, Z, Z, 3.0, 2.0, Z, 6.0, 5.0];
    assert_eq!(apply(aug, Draw { top: 0, left: 2, flip: true }, shape, &[Z], &IMAGE), flipped);
    // A flip alone.
    let mirror = [3.0, 2.0, 1.0, 6.0, 5.0, 4.0, 9.0, 8.0, 7.0];
    assert_eq!(apply(aug, Draw { top: 1, left: 1, flip: true }, shape, &[Z], &IMAGE), mirror);
    // The far corner of the padded image: the image moved up and left by one.
    let far = [5.0, 6.0, Z, 8.0, 9.0, Z, Z, Z, Z];
    assert_eq!(apply(aug, Draw { top: 2, left: 2, flip: false }, shape, &[Z], &IMAGE), far);
}

#[test]
fn each_channel_is_padded_with_its_own_black() {
    let aug = Augment { pad: 1, flip: false };
    let src: Vec<f32> = (0..18).map(|v| v as f32).collect();
    let out = apply(aug, Draw { top: 0, left: 1, flip: false }, [2, 3, 3], &[-1.0, -2.0], &src);
    assert_eq!(out[..9], [-1.0, -1.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(out[9..], [-2.0, -2.0, -2.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0]);
}

#[test]
fn cifar_padding_is_a_raw_black_pixel_normalised() {
    // torchvision's RandomCrop(32, padding=4) pads raw 0 before Normalize: (0 - mean) / std.
    let dir = fresh_dir("data_augment", "cifar");
    files::write_cifar(&dir, 2);
    let train = load(DataKind::Cifar10, Some(&dir)).unwrap().train;
    let src = &train.images[..3072];
    let out = apply(Augment::CROP_FLIP, Draw { top: 0, left: 4, flip: false }, train.shape, &train.zero, src);
    for c in 0..3 {
        let plane = &out[c * 1024..(c + 1) * 1024];
        let black = (0.0 - [0.4914, 0.4822, 0.4465][c]) / [0.2470, 0.2435, 0.2616][c];
        assert!(plane[..4 * 32].iter().all(|&v| (v - black).abs() < 1e-6), "four padded rows in channel {c}");
        assert_eq!(plane[4 * 32..], src[c * 1024..c * 1024 + 28 * 32], "the rest moved down four rows");
    }
}

#[test]
fn draws_cover_every_offset_and_flip_about_half() {
    let aug = Augment::CROP_FLIP;
    let draws: Vec<Draw> = (0..4000).map(|p| aug.draw(7, 3, p)).collect();
    for offset in 0..=8 {
        let (tops, lefts) =
            (draws.iter().filter(|d| d.top == offset).count(), draws.iter().filter(|d| d.left == offset).count());
        assert!(
            (300..600).contains(&tops) && (300..600).contains(&lefts),
            "offset {offset}: {tops} tops, {lefts} lefts"
        );
    }
    assert!(draws.iter().all(|d| d.top <= 8 && d.left <= 8));
    let flips = draws.iter().filter(|d| d.flip).count();
    assert!((1800..2200).contains(&flips), "{flips} flips of 4000");
    assert!(!(0..100).any(|p| Augment { pad: 4, flip: false }.draw(7, 3, p).flip), "flip off never flips");
    let none = Augment { pad: 0, flip: false };
    assert!((0..100).all(|p| none.draw(1, 1, p) == Draw { top: 0, left: 0, flip: false }));
}

fn digits_train() -> Dataset {
    load(DataKind::Digits, None).unwrap().with_augment(Some(Augment::CROP_FLIP)).train
}

fn batch(d: &Dataset, seed: u64, epoch: u64, b: usize) -> (Vec<f32>, Vec<u32>) {
    let order = epoch_order(d.len(), seed, epoch);
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    d.gather_batch(&order, 16, b, seed, epoch, &mut images, &mut labels);
    (images, labels)
}

#[test]
fn augmentation_is_seeded_by_seed_epoch_and_position() {
    let d = digits_train();
    let a = batch(&d, 5, 2, 3);
    assert_eq!(a, batch(&d, 5, 2, 3), "same seed, epoch and batch: the same images");
    assert_ne!(a.0, batch(&d, 6, 2, 3).0, "another seed");
    assert_ne!(a.0, batch(&d, 5, 3, 3).0, "another epoch");
    // Each sample is its own image augmented with the draw of its position in the order.
    let order = epoch_order(d.len(), 5, 2);
    let s = d.sample_len();
    let mut changed = 0;
    for j in 0..16 {
        let i = order[3 * 16 + j];
        let draw = Augment::CROP_FLIP.draw(5, 2, (3 * 16 + j) as u64);
        let expect = apply(Augment::CROP_FLIP, draw, d.shape, &d.zero, &d.images[i * s..(i + 1) * s]);
        assert_eq!(a.0[j * s..(j + 1) * s], expect[..], "sample {j}");
        assert_eq!(a.1[j], d.labels[i]);
        changed += usize::from(expect[..] != d.images[i * s..(i + 1) * s]);
    }
    assert!(changed >= 12, "most samples are changed, {changed} of 16");
    // Without augmentation gather_batch is gather.
    let plain = Dataset { augment: None, ..d.clone() };
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    plain.gather(&order[48..64], &mut images, &mut labels);
    assert_eq!(batch(&plain, 5, 2, 3), (images, labels));
}

#[test]
fn the_test_set_is_never_augmented() {
    let plain = load(DataKind::Digits, None).unwrap();
    let splits = plain.clone().with_augment(Some(Augment::CROP_FLIP));
    assert_eq!(splits.train.augment, Some(Augment::CROP_FLIP));
    assert_eq!(splits.test, plain.test, "with_augment leaves the test split as it was");
    assert_eq!(batch(&splits.test, 5, 0, 2), batch(&plain.test, 5, 0, 2));
    assert_ne!(batch(&splits.train, 5, 0, 2).0, batch(&plain.train, 5, 0, 2).0);
}
