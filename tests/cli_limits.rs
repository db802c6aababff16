//! Inputs that must not crash the process: sizes the device cannot hold, models too large
//! to allocate, checkpoints with non-finite weights or impossible metadata, paths that are
//! not regular files, and resumes with another configuration. Each ends in one clear line
//! and a failing exit (never a panic's 101 or an abort's 134), or succeeds where it can.

mod common;

use std::path::{Path, PathBuf};

use asgd::engine::io::checkpoint::{load_safetensors, save_safetensors};
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
    // LeNet's first activation for a batch of 8192 is 147 MiB (its im2col buffer, where that
    // form is chosen, 612 MiB), over the 128 MiB lavapipe (and many GPUs) allow in one binding.
    let d = dir("batch_limit");
    let mnist = d.join("mnist");
    files::write_mnist_like(&mnist, 8200, 10);
    let line =
        refused(&["train", "--model", "lenet", "--data", "mnist", "--data-dir", p(&mnist), "--batch", "8192", "-q"]);
    assert!(line.contains("layer conv1") && line.contains("for a batch of 8192"), "{line}");
    assert!(line.trim_end().ends_with("use a smaller --batch"), "{line}");

    let line = refused(&["train", "--hidden", "9000,9000", "-q"]);
    assert!(line.contains("parameter fc2.weight of shape [9000, 9000] needs 309.0 MiB"), "{line}");
    assert!(line.contains("--hidden"), "{line}");
}

#[test]
fn eval_splits_a_batch_too_large_for_the_device() {
    let d = dir("eval_split");
    // Trained on a set with a small test split, evaluated on one of 1800 test images in one
    // batch and in three: where the tuner picks im2col for LeNet's first convolution, its buffer
    // for one batch of 1800 is 135 MiB, over the limit, and the evaluation is split; the direct
    // form fits. Either way the results must agree.
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

/// A short MLP checkpoint on digits.
fn digits_checkpoint(d: &Path) -> PathBuf {
    let ck = d.join("mlp.safetensors");
    assert_success(&asgd(&[
        "train",
        "--hidden",
        "16",
        "--batch",
        "64",
        "--max-steps",
        "3",
        "-q",
        "--checkpoint",
        p(&ck),
    ]));
    ck
}

/// A copy of checkpoint `ck` at `name` with `edit` applied to its tensors and metadata.
fn edited(
    ck: &Path,
    name: &str,
    edit: impl FnOnce(&mut Vec<asgd::engine::io::NamedTensor>, &mut std::collections::BTreeMap<String, String>),
) -> PathBuf {
    let (mut tensors, mut meta) = load_safetensors(ck).unwrap();
    edit(&mut tensors, &mut meta);
    let out = ck.with_file_name(name);
    save_safetensors(&out, &tensors, &meta).unwrap();
    out
}

#[test]
fn a_checkpoint_with_non_finite_weights_is_refused_naming_the_tensor() {
    let d = dir("nan");
    let ck = digits_checkpoint(&d);
    let nan = edited(&ck, "nan.safetensors", |t, _| {
        t.iter_mut().find(|t| t.name == "fc1.weight").unwrap().data.fill(f32::NAN);
    });
    let line = refused(&["eval", "--checkpoint", p(&nan)]);
    assert!(line.contains("tensor `fc1.weight` holds 1024 non-finite value(s) of 1024"), "{line}");
    let out = d.join("out.safetensors");
    let line = refused(&["train", "--resume", p(&nan), "--max-steps", "5", "-q", "--checkpoint", p(&out)]);
    assert!(line.contains("`fc1.weight`"), "{line}");
    assert!(!out.exists(), "nothing written");
    let inf = edited(&ck, "inf.safetensors", |t, _| {
        t.iter_mut().find(|t| t.name == "fc2.bias").unwrap().data[3] = f32::INFINITY;
    });
    let line = refused(&["eval", "--checkpoint", p(&inf)]);
    assert!(line.contains("`fc2.bias` holds 1 non-finite value(s) of 10 (the first, inf, at index 3)"), "{line}");
}

#[test]
fn model_sizes_too_large_to_allocate_are_refused_before_allocating() {
    let line = refused(&["train", "--hidden", "100000,100000", "-q"]);
    assert!(line.contains("would have 10007600010 parameters") && line.contains("--hidden"), "{line}");
    let d = dir("huge_meta");
    let ck = digits_checkpoint(&d);
    let huge = edited(&ck, "huge.safetensors", |_, m| {
        m.insert("model".into(), "mlp:99999999999,1".into());
    });
    let line = refused(&["eval", "--checkpoint", p(&huge)]);
    assert!(line.contains("mlp:99999999999,1") && line.contains("parameters, more than"), "{line}");
    let line = refused(&["train", "--resume", p(&huge), "-q"]);
    assert!(line.contains("mlp:99999999999,1") && line.contains("parameters, more than"), "{line}");
    let classes = edited(&ck, "classes.safetensors", |_, m| {
        m.insert("classes".into(), "1000000000000".into());
    });
    let line = refused(&["eval", "--checkpoint", p(&classes)]);
    assert!(line.contains("1000000000000 classes"), "{line}");
}

#[cfg(unix)]
#[test]
fn checkpoint_and_metrics_paths_that_are_not_files_are_refused_and_links_written_through() {
    let d = dir("paths");
    let fifo = d.join("pipe");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let line = refused(&["train", "--max-steps", "1", "-q", "--checkpoint", p(&fifo)]);
    assert!(line.contains("named pipe (FIFO), not a regular file"), "{line}");
    let line = refused(&["train", "--max-steps", "1", "-q", "--metrics", p(&fifo)]);
    assert!(line.contains("cannot write metrics to"), "{line}");
    let line = refused(&["eval", "--checkpoint", p(&fifo)]);
    assert!(line.contains("named pipe (FIFO), not a file"), "{line}");
    let line = refused(&["train", "--max-steps", "1", "-q", "--checkpoint", p(&d)]);
    assert!(line.contains("it is a folder"), "{line}");

    // Through a link: the link stays, its target gets the checkpoint.
    std::fs::create_dir(d.join("real")).unwrap();
    let link = d.join("link.safetensors");
    std::os::unix::fs::symlink("real/ck.safetensors", &link).unwrap();
    assert_success(&asgd(&["train", "--hidden", "8", "--max-steps", "2", "-q", "--checkpoint", p(&link)]));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(!load_safetensors(&d.join("real/ck.safetensors")).unwrap().0.is_empty());
}

/// `asgd train` resuming from `ck` on digits, with `extra` flags.
fn resume_from(ck: &Path, extra: &[&str]) -> Vec<String> {
    let fixed = ["train", "--hidden", "8", "-q", "--epochs", "1", "--max-steps", "5", "--resume", p(ck)];
    fixed.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_resume_with_another_batch_seed_or_dataset_is_refused_unless_forced() {
    let d = dir("resume_config");
    let ck = d.join("ck.safetensors");
    let first = ["train", "--hidden", "8", "-q", "--epochs", "1", "--batch", "64", "--seed", "3", "--max-steps", "3"];
    assert_success(&asgd(&[&first[..], &["--checkpoint", p(&ck)]].concat()));
    let line = refused(&strs(&resume_from(&ck, &["--batch", "32"])));
    assert!(
        line.contains("was written with --batch 64, not 32; drop --batch") && line.contains("--force-resume"),
        "{line}"
    );
    let line = refused(&strs(&resume_from(&ck, &["--seed", "4"])));
    assert!(line.contains("--seed 3, not 4"), "{line}");
    let line = refused(&strs(&resume_from(&ck, &["--train-samples", "500"])));
    assert!(line.contains("1437 training samples, not 500 training samples"), "{line}");
    let mnist = d.join("mnist");
    files::write_mnist_like(&mnist, 70, 10);
    let line = refused(&strs(&resume_from(&ck, &["--data", "mnist", "--data-dir", p(&mnist)])));
    assert!(line.contains("--data digits, not mnist"), "{line}");

    // Without the flags, the checkpoint's settings; with --force-resume, the flags'.
    let (same, forced) = (d.join("same.safetensors"), d.join("forced.safetensors"));
    assert_success(&asgd(&strs(&resume_from(&ck, &["--checkpoint", p(&same)]))));
    let meta = load_safetensors(&same).unwrap().1;
    assert_eq!((meta["batch"].as_str(), meta["seed"].as_str()), ("64", "3"));
    assert_success(&asgd(&strs(&resume_from(&ck, &["--batch", "32", "--force-resume", "--checkpoint", p(&forced)]))));
    assert_eq!(load_safetensors(&forced).unwrap().1["batch"], "32");
}
