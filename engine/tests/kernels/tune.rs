use asgd_engine::kernel::run_all;
use asgd_engine::ops::matmul::{matmul, MatmulKernel, MatmulSpec};
use asgd_engine::tune::{shape_key, TuneMode, Tuner};

use crate::support::*;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("asgd-tune-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn choices_are_measured_cached_and_reused() {
    let dir = temp_dir("cache");
    let spec = MatmulSpec { trans_b: true, ..MatmulSpec::new(24, 40, 36) };
    let first = Tuner::new(TuneMode::All, dev().info(), Some(&dir));
    let k = first.matmul_kernel(dev(), &spec);
    assert!(asgd_engine::tune::candidates(dev(), &spec).contains(&k), "{k:?} was not a candidate");
    let path = first.cache_path().unwrap().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&shape_key(&spec)) && text.contains(&k.name()), "{text}");
    assert_eq!(first.choices().get(&shape_key(&spec)), Some(&k.name()));

    // A second process with tuning off still takes the cached choice, even one that is not the
    // default: edit the file to a kernel the default would never be.
    let other = if k == MatmulKernel::Blocked { MatmulKernel::Tiled } else { MatmulKernel::Blocked };
    std::fs::write(&path, text.replace(&format!("\"{}\"", k.name()), &format!("\"{}\"", other.name()))).unwrap();
    let second = Tuner::new(TuneMode::Off, dev().info(), Some(&dir));
    assert_eq!(second.matmul_kernel(dev(), &spec), other);

    // Another adapter's file, or garbage, is ignored.
    std::fs::write(&path, "{ not json").unwrap();
    let third = Tuner::new(TuneMode::Off, dev().info(), Some(&dir));
    assert_eq!(third.matmul_kernel(dev(), &spec), MatmulKernel::default_for(dev(), &spec));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn small_products_are_not_timed_unless_asked() {
    let spec = MatmulSpec::new(20, 20, 20);
    let t = Tuner::new(TuneMode::On, dev().info(), None);
    assert_eq!(t.matmul_kernel(dev(), &spec), MatmulKernel::default_for(dev(), &spec));
    assert!(TuneMode::parse("sometimes").is_err());
}

#[test]
fn the_same_choice_gives_the_same_bits() {
    // What "same seed, device and cache, same run" rests on: a kernel's result does not depend
    // on anything but its inputs.
    let spec = MatmulSpec::new(70, 90, 300);
    let a = upload(&[70, 300], &rand_vec(1, 70 * 300));
    let b = upload(&[300, 90], &rand_vec(2, 300 * 90));
    let k = Tuner::new(TuneMode::All, dev().info(), None).matmul_kernel(dev(), &spec);
    let out = || {
        let c = upload(&[70, 90], &vec![0.0; 70 * 90]);
        let d = matmul(dev(), &c, &a, &b, spec, k).unwrap();
        run_all(dev(), &d.iter().collect::<Vec<_>>());
        c.to_vec_f32().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    assert_eq!(out(), out());
}

#[test]
fn subgroup_adapters_keep_their_choices_apart() {
    // Choices timed without the subgroup candidates must not be reused where they exist.
    let dir = temp_dir("features");
    let with = dev().info().clone();
    let mut without = with.clone();
    without.features = Default::default();
    let a = Tuner::new(TuneMode::Off, &with, Some(&dir));
    let b = Tuner::new(TuneMode::Off, &without, Some(&dir));
    assert_eq!(a.cache_path() == b.cache_path(), with.features.fixed_subgroup_size().is_none());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn convolution_choices_are_measured_cached_and_listed() {
    use asgd_engine::ops::conv2d::{ConvAlgo, ConvShape};
    use asgd_engine::tune::conv_key;
    let dir = temp_dir("conv");
    let s = ConvShape { batch: 2, cin: 3, h: 9, w: 9, cout: 4, kh: 3, kw: 3, stride: 1, pad: 1 };
    let first = Tuner::new(TuneMode::All, dev().info(), Some(&dir));
    let a = first.conv_algo(dev(), &s, true);
    let key = conv_key(&s, true);
    assert_eq!(first.choices().get(&key).map(String::as_str), Some(a.name()));
    let path = first.cache_path().unwrap().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&key), "{text}");

    // Tuning off takes the cached choice, even the one the default would not be.
    let other = if a == ConvAlgo::Direct { ConvAlgo::Im2col } else { ConvAlgo::Direct };
    let edited = text.replace(&format!("\"{key}\": \"{}\"", a.name()), &format!("\"{key}\": \"{}\"", other.name()));
    std::fs::write(&path, edited).unwrap();
    assert_eq!(Tuner::new(TuneMode::Off, dev().info(), Some(&dir)).conv_algo(dev(), &s, true), other);

    // Nothing cached and tuning off: the fixed default.
    let fresh = Tuner::new(TuneMode::Off, dev().info(), None);
    assert_eq!(fresh.conv_algo(dev(), &s, true), ConvAlgo::default_for(dev()));
    std::fs::remove_dir_all(&dir).unwrap();
}
