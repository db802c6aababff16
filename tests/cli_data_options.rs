//! `asgd train` and `eval` with the data options: CIFAR-10, a safetensors dataset of one's own
//! with its test set, and seeded augmentation. Small made-up files, quick on lavapipe.

mod common;

use std::path::Path;

use asgd::engine::io::checkpoint::load_safetensors;
use common::{asgd, assert_clean_failure, assert_success, files, fresh_dir, text};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn params(path: &Path) -> Vec<asgd::engine::io::checkpoint::NamedTensor> {
    load_safetensors(path).unwrap().0
}

#[test]
fn cifar10_trains_and_evaluates_with_augmentation_on_by_default() {
    let d = fresh_dir("cli_data_options", "cifar");
    files::write_cifar(&d.join("data"), 8);
    let data = d.join("data");
    let run = |name: &str, extra: &[&str]| {
        let ck = d.join(name);
        let mut args = vec!["train", "--data", "cifar10", "--data-dir", p(&data), "--hidden", "16", "--epochs", "2"];
        args.extend_from_slice(&["--batch", "8", "-q", "--checkpoint", p(&ck)]);
        args.extend_from_slice(extra);
        assert_success(&asgd(&args));
        ck
    };
    let (a, b) = (run("a.safetensors", &[]), run("b.safetensors", &[]));
    assert_eq!(params(&a), params(&b), "augmentation is seeded: the same run twice is the same model");
    let on = run("on.safetensors", &["--augment", "on"]);
    assert_eq!(params(&a), params(&on), "on is the default for cifar10");
    let off = run("off.safetensors", &["--augment", "off"]);
    assert_ne!(params(&a), params(&off), "augmentation changes what is trained on");
    let other_seed = run("seed.safetensors", &["--seed", "9"]);
    assert_ne!(params(&a), params(&other_seed));
    let (_, meta) = load_safetensors(&a).unwrap();
    assert!(meta.values().any(|v| v.contains("cifar10")), "{meta:?}");

    // Evaluation never augments: --augment makes no difference to it.
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--checkpoint", p(&a), "--data", "cifar10", "--data-dir", p(&data), "--json"];
        args.extend_from_slice(extra);
        assert_success(&asgd(&args))
    };
    let plain = eval(&[]);
    assert!(plain.contains("\"samples\":8"), "{plain}");
    assert_eq!(plain, eval(&["--augment", "on"]));
    assert_eq!(plain, eval(&["--augment", "off"]));
}

#[test]
fn augmentation_is_off_by_default_elsewhere_and_seeded_when_on() {
    let d = fresh_dir("cli_data_options", "digits");
    let run = |name: &str, extra: &[&str]| {
        let ck = d.join(name);
        let mut args = vec!["train", "--hidden", "16", "--epochs", "1", "--batch", "64", "-q", "--checkpoint", p(&ck)];
        args.extend_from_slice(extra);
        assert_success(&asgd(&args));
        params(&ck)
    };
    let plain = run("plain.safetensors", &[]);
    assert_eq!(plain, run("off.safetensors", &["--augment", "off"]), "off is the default for digits");
    let on = run("on.safetensors", &["--augment", "on"]);
    assert_ne!(plain, on);
    assert_eq!(on, run("on-again.safetensors", &["--augment", "on"]));
}

#[test]
fn a_safetensors_dataset_trains_with_a_test_split_or_a_test_file() {
    let d = fresh_dir("cli_data_options", "own");
    let (train, test) = (d.join("train.safetensors"), d.join("test.safetensors"));
    files::write_dataset(&train, 48, [1, 4, 4], |i| (i % 3) as i64);
    files::write_dataset(&test, 12, [1, 4, 4], |i| (i % 3) as i64);
    let ck = d.join("ck.safetensors");
    let out = assert_success(&asgd(&[
        "train",
        "--data",
        p(&train),
        "--test-split",
        "0.25",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--batch",
        "6",
        "-q",
        "--checkpoint",
        p(&ck),
    ]));
    assert!(out.contains("done: test accuracy"), "{out}");
    let out = asgd(&["eval", "--checkpoint", p(&ck), "--data", p(&train), "--test-split", "0.25", "--json"]);
    let json = assert_success(&out);
    assert!(json.contains("\"samples\":12") && json.contains("\"data\":\"train.safetensors\""), "{json}");
    let out = asgd(&["eval", "--checkpoint", p(&ck), "--data", p(&train), "--test-data", p(&test), "--json"]);
    assert!(assert_success(&out).contains("\"samples\":12"));
    assert_success(&asgd(&[
        "train",
        "--data",
        p(&train),
        "--test-data",
        p(&test),
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--batch",
        "6",
        "-q",
    ]));
}

#[test]
fn bad_data_options_are_one_clear_line() {
    let d = fresh_dir("cli_data_options", "bad");
    let file = d.join("x.safetensors");
    files::write_dataset(&file, 8, [1, 2, 2], |i| i as i64 % 2);
    let junk = d.join("junk.safetensors");
    std::fs::write(&junk, b"nope").unwrap();
    let f = p(&file);
    for (args, expect) in [
        (vec!["train", "--data", f], "needs a test set; pass --test-data FILE.safetensors or --test-split F"),
        (vec!["train", "--data", "mnist", "--test-split", "0.1"], "apply to --data FILE.safetensors only"),
        (vec!["train", "--data", f, "--test-split", "0.5", "--data-dir", "/tmp"], "drop --data-dir"),
        (
            vec!["train", "--data", p(&junk), "--test-split", "0.5"],
            "junk.safetensors: the file is not a safetensors file",
        ),
        (
            vec!["train", "--data", "/nonexistent/y.safetensors", "--test-split", "0.5"],
            "y.safetensors: the file does not exist",
        ),
        (vec!["train", "--data", f, "--test-split", "1.5"], "not a fraction between 0 and 1"),
        (vec!["train", "--augment", "maybe"], "neither on nor off"),
        (vec!["train", "--data", "imagenet"], "or a FILE.safetensors"),
        (vec!["train", "--data", f, "--test-split", "0.5", "--test-data", f], "cannot be used with"),
    ] {
        let out = asgd(&args);
        let line = if text(&out.stderr).contains("For more information") {
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            text(&out.stderr).lines().next().unwrap().to_string()
        } else {
            assert_clean_failure(&out)
        };
        assert!(line.contains(expect), "{args:?}: '{line}' does not mention '{expect}'");
    }
}
