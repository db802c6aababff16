//! Inputs that must not crash the process: sizes the device cannot hold, models too large
//! to allocate, checkpoints with non-finite weights or impossible metadata, paths that are
//! not regular files, and resumes with another configuration. Each ends in one clear line
//! and a failing exit (never a panic's 101 or an abort's 134), or succeeds where it can.

mod common;

use std::path::{Path, PathBuf};

use common::{asgd, assert_clean_failure, assert_success, files, fresh_dir};

fn dir(name: &str) -> PathBuf {
    fresh_dir("cli_limits", name)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// One clear line, and an exit code that is neither a panic's nor an abort's.
fn refused(args: &[&str]) -> String {
    let out = asgd(args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", common::text(&out.stderr));
    assert_clean_failure(&out)
}

#[test]
fn a_batch_or_layer_over_the_device_limit_names_the_flag_to_lower() {
    // LeNet's first im2col buffer for a batch of 4096 is 306 MiB, over the 128 MiB lavapipe
    // (and many GPUs) allow in one binding.
    let d = dir("batch_limit");
    let mnist = d.join("mnist");
    files::write_mnist_like(&mnist, 4100, 10);
    let line =
        refused(&["train", "--model", "lenet", "--data", "mnist", "--data-dir", p(&mnist), "--batch", "4096", "-q"]);
    assert!(line.contains("layer conv1") && line.contains("for a batch of 4096"), "{line}");
    assert!(line.trim_end().ends_with("use a smaller --batch"), "{line}");

    let line = refused(&["train", "--hidden", "9000,9000", "-q"]);
    assert!(line.contains("parameter fc2.weight of shape [9000, 9000] needs 309.0 MiB"), "{line}");
    assert!(line.contains("--hidden"), "{line}");
}

#[test]
fn eval_splits_a_batch_too_large_for_the_device() {
    let d = dir("eval_split");
    // Trained on a set with a small test split, evaluated on one of 1800 test images: LeNet's
    // im2col for one batch of 1800 is 135 MiB, over the limit.
    let (small, large) = (d.join("small"), d.join("large"));
    files::write_mnist_like(&small, 16, 10);
    files::write_mnist_like(&large, 16, 1800);
    let ck = d.join("lenet.safetensors");
    assert_success(&asgd(&[
        "train",
        "--model",
        "lenet",
        "--data",
        "mnist",
        "--data-dir",
        p(&small),
        "--batch",
        "8",
        "--max-steps",
        "1",
        "-q",
        "--checkpoint",
        p(&ck),
    ]));
    let eval = |batch: &str| -> serde_json::Value {
        let out = asgd(&[
            "eval",
            "--checkpoint",
            p(&ck),
            "--data",
            "mnist",
            "--data-dir",
            p(&large),
            "--batch",
            batch,
            "--json",
        ]);
        serde_json::from_str(&assert_success(&out)).unwrap()
    };
    let (whole, parts) = (eval("1800"), eval("600"));
    assert_eq!(whole["samples"], 1800);
    assert_eq!(whole["test_acc"], parts["test_acc"], "{whole} vs {parts}");
    let (a, b) = (whole["test_loss"].as_f64().unwrap(), parts["test_loss"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-5, "{whole} vs {parts}");
}
