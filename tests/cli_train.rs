//! `asgd train`, `eval` and `grads` as a user runs them: on the embedded digits set, small and
//! quick on lavapipe. Checks determinism, resume, metrics, and one clear line for bad input.

mod common;

use std::path::Path;

use asgd::engine::io::checkpoint::{load_safetensors, save_batch, save_safetensors, NamedTensor};
use common::{asgd, assert_clean_failure, assert_success, fresh_dir, text};

fn dir(name: &str) -> std::path::PathBuf {
    fresh_dir("cli_train", name)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A short MLP run on digits; returns stdout.
fn train(extra: &[&str]) -> String {
    let mut args = vec!["train", "--hidden", "32", "--batch", "64", "-q"];
    args.extend_from_slice(extra);
    assert_success(&asgd(&args))
}

fn tensors(path: &Path) -> Vec<NamedTensor> {
    load_safetensors(path).unwrap().0
}

#[test]
fn digits_training_learns_and_is_deterministic() {
    let d = dir("determinism");
    let (a, b) = (d.join("a.safetensors"), d.join("b.safetensors"));
    let metrics = d.join("m.jsonl");
    let out = train(&["--epochs", "8", "--checkpoint", p(&a), "--metrics", p(&metrics), "--target-acc", "80"]);
    train(&["--epochs", "8", "--checkpoint", p(&b)]);
    assert_eq!(tensors(&a), tensors(&b), "same seed, same device: the same parameters");

    // The metrics follow the contract: events with wall_s, a final done line.
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&metrics).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().all(|l| l["event"].is_string() && l["wall_s"].is_number()));
    let epochs: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "epoch").collect();
    assert_eq!(epochs.len(), 8);
    for e in &epochs {
        for key in ["epoch", "step", "train_loss", "test_acc", "samples_per_s"] {
            assert!(e[key].is_number(), "epoch event lacks {key}: {e}");
        }
    }
    let done = lines.last().unwrap();
    assert_eq!(done["event"], "done");
    let acc = done["test_acc"].as_f64().unwrap();
    assert!(acc > 0.85, "an MLP on digits reaches 85% in 8 epochs, got {acc}");
    assert!(done["time_to_target_s"].as_f64().unwrap() > 0.0);
    assert!(out.contains("done: test accuracy"), "{out}");

    // Another seed gives other parameters.
    let c = d.join("c.safetensors");
    train(&["--epochs", "1", "--checkpoint", p(&c), "--seed", "1"]);
    assert_ne!(tensors(&a), tensors(&c));

    // eval agrees with the accuracy training reported.
    let json = assert_success(&asgd(&["eval", "--checkpoint", p(&a), "--json"]));
    let e: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert!((e["test_acc"].as_f64().unwrap() - acc).abs() < 1e-9, "{e} vs {acc}");
}

#[test]
fn resume_continues_exactly_where_the_run_stopped() {
    let d = dir("resume");
    let (full, half) = (d.join("full.safetensors"), d.join("half.safetensors"));
    let metrics = d.join("half.jsonl");
    train(&["--epochs", "3", "--checkpoint", p(&full)]);
    // Stop mid-epoch (step 40 of 22 per epoch), then resume to the end.
    let m = ["--metrics", p(&metrics), "--eval-every", "10"];
    train(&[&["--epochs", "3", "--max-steps", "40", "--checkpoint", p(&half)][..], &m].concat());
    let meta = load_safetensors(&half).unwrap().1;
    assert_eq!(meta["step"], "40");
    let saved_wall: f64 = meta["wall_s"].parse().unwrap();
    assert!(saved_wall > 0.0, "the checkpoint records the run's time: {meta:?}");
    train(&[&["--epochs", "3", "--resume", p(&half), "--checkpoint", p(&half)][..], &m].concat());
    assert_eq!(tensors(&full), tensors(&half), "resumed run must equal the uninterrupted one");

    // The resumed process's clock goes on from the checkpoint's: one run's times, in order.
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&metrics).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let starts: Vec<usize> = (0..lines.len()).filter(|&i| lines[i]["event"] == "start").collect();
    assert_eq!(starts.len(), 2, "one start event per process");
    let resumed = &lines[starts[1]];
    assert_eq!(resumed["start_step"], 40);
    // serde_json's default parsing may miss the last bit of a float it reads back.
    let at = resumed["wall_s"].as_f64().unwrap();
    assert!(
        (at - saved_wall).abs() <= 1e-12 * saved_wall,
        "the resumed start is at the checkpoint's time: {at} vs {saved_wall}"
    );
    let time = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    for pair in lines[starts[1]..].windows(2) {
        assert!(time(&pair[1], "wall_s") >= time(&pair[0], "wall_s"), "wall_s goes back: {pair:?}");
    }
    let evals: Vec<&serde_json::Value> = lines.iter().filter(|v| v["event"] == "eval").collect();
    for pair in evals.windows(2) {
        assert!(time(pair[1], "train_s") > time(pair[0], "train_s"), "train_s goes back: {pair:?}");
    }
    let done: Vec<&serde_json::Value> = lines.iter().filter(|v| v["event"] == "done").collect();
    assert!(time(done[1], "wall_s") > time(done[0], "wall_s") && time(done[1], "train_s") > time(done[0], "train_s"));
}

#[test]
fn adam_state_is_saved_and_resumed_exactly_and_another_optimisers_refused() {
    let d = dir("resume_adam");
    let (full, half) = (d.join("full.safetensors"), d.join("half.safetensors"));
    let adam = ["--optim", "adamw", "--epochs", "3"];
    train(&[&adam[..], &["--checkpoint", p(&full)]].concat());
    train(&[&adam[..], &["--max-steps", "40", "--checkpoint", p(&half)]].concat());
    let (saved, meta) = load_safetensors(&half).unwrap();
    assert_eq!(meta["optim"], "adamw");
    let step = saved.iter().find(|t| t.name == "optim.step.fc1.weight").expect("Adam's step count is saved");
    assert_eq!(step.data, [40.0]);
    for state in ["optim.exp_avg.fc2.bias", "optim.exp_avg_sq.fc1.weight"] {
        assert!(saved.iter().any(|t| t.name == state), "{state} missing");
    }
    let line = assert_clean_failure(&asgd(&["train", "--resume", p(&half)]));
    assert!(line.contains("optimiser adamw, not sgd"), "{line}");
    train(&[&adam[..], &["--resume", p(&half), "--checkpoint", p(&half)]].concat());
    assert_eq!(tensors(&full), tensors(&half), "a resumed AdamW run must equal the uninterrupted one");
}

#[test]
fn resnet_trains_on_digits_and_checkpoints_its_buffers() {
    let d = dir("resnet");
    let ck = d.join("r8.safetensors");
    let out = assert_success(&asgd(&[
        "train",
        "--model",
        "resnet",
        "--depth",
        "8",
        "--max-steps",
        "30",
        "-q",
        "--checkpoint",
        p(&ck),
    ]));
    let acc: f64 = out.split("test accuracy ").nth(1).unwrap().split('%').next().unwrap().parse().unwrap();
    assert!(acc > 30.0, "30 steps of a ResNet on digits beat chance (10%) by far: {out}");
    let saved = tensors(&ck);
    let count = saved.iter().find(|t| t.name == "layer2.0.downsample.1.num_batches_tracked").unwrap();
    assert_eq!(count.data, [30.0]);
    let json = assert_success(&asgd(&["eval", "--checkpoint", p(&ck), "--json"]));
    let e: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert!((e["test_acc"].as_f64().unwrap() * 100.0 - acc).abs() < 0.01, "{e} vs {acc}");
}

#[test]
fn grads_writes_every_parameter_gradient_and_the_loss() {
    let d = dir("grads");
    let ck = d.join("ck.safetensors");
    train(&["--epochs", "1", "--checkpoint", p(&ck)]);
    let batch = d.join("batch.safetensors");
    let images: Vec<f32> = (0..5 * 64).map(|i| ((i * 7919) % 97) as f32 / 50.0 - 1.0).collect();
    save_batch(&batch, &[5, 1, 8, 8], &images, &[0, 3, 9, 3, 1]).unwrap();
    let out = d.join("grads.safetensors");
    assert_success(&asgd(&["grads", "--model", "mlp", "--checkpoint", p(&ck), "--batch", p(&batch), "--out", p(&out)]));
    let grads = tensors(&out);
    let params: Vec<NamedTensor> = tensors(&ck).into_iter().filter(|t| !t.name.starts_with("optim.")).collect();
    for param in &params {
        let g = grads.iter().find(|g| g.name == param.name).unwrap_or_else(|| panic!("no gradient for {}", param.name));
        assert_eq!(g.shape, param.shape);
        assert!(g.data.iter().any(|&v| v != 0.0), "{} gradient is all zero", param.name);
    }
    let loss = grads.iter().find(|g| g.name == "loss").unwrap();
    assert!(loss.shape.is_empty() && loss.data[0] > 0.0 && loss.data[0].is_finite());
    // d(mean loss)/d(logits) sums to zero over the classes of each sample, so the last
    // layer's bias gradient sums to zero.
    let fc2_bias: f32 = grads.iter().find(|g| g.name == "fc2.bias").unwrap().data.iter().sum();
    assert!(fc2_bias.abs() < 1e-5, "{fc2_bias}");
}

#[test]
fn bad_flag_values_are_one_clear_line() {
    for (args, expect) in [
        (vec!["train", "--lr", "-1"], "--lr"),
        (vec!["train", "--momentum", "1.5"], "--momentum"),
        (vec!["train", "--target-acc", "250"], "--target-acc"),
        (vec!["train", "--model", "vgg16"], "unknown model"),
        (vec!["train", "--model", "resnet9000"], "6n+2"),
        (vec!["train", "--model", "lenet"], "use mlp or a 28x28 dataset"),
        (vec!["train", "--optim", "adam", "--momentum", "0.9"], "--momentum"),
        (vec!["train", "--betas", "0.9"], "--betas"),
        (vec!["train", "--batch", "5000"], "larger than the 1437 training samples"),
        (vec!["train", "--data", "mnist", "--data-dir", "/nonexistent/asgd"], "/nonexistent/asgd"),
        (vec!["eval", "--checkpoint", "/nonexistent/ck.safetensors"], "/nonexistent/ck.safetensors"),
        (vec!["train", "--backend", "directx9"], "unknown backend"),
        (vec!["train", "--adapter", "99"], "adapter index 99"),
        (vec!["train", "--algo", "pdasgd", "--queue", "100000"], "more than the 64 allowed"),
        (vec!["train", "--algo", "pdasgd", "--bwd-threads", "100000"], "more than 64"),
        (vec!["train", "--algo", "pdasgd", "--workers", "100000"], "more than 256"),
    ] {
        let out = asgd(&args);
        let line = if text(&out.stderr).contains("For more information") {
            // clap's own usage errors: exit code 2, the first line names the flag.
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            text(&out.stderr).lines().next().unwrap().to_string()
        } else {
            assert_clean_failure(&out)
        };
        assert!(line.contains(expect), "{args:?}: '{line}' does not mention '{expect}'");
    }
    let out = asgd(&["train", "--epochs", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("at least 1"));
}

#[test]
fn a_checkpoint_of_another_model_or_shape_is_refused() {
    let d = dir("mismatch");
    let ck = d.join("mlp32.safetensors");
    train(&["--epochs", "1", "--checkpoint", p(&ck)]);
    let line = assert_clean_failure(&asgd(&["eval", "--model", "lenet", "--checkpoint", p(&ck)]));
    assert!(line.contains("holds model mlp:32"), "{line}");
    let line = assert_clean_failure(&asgd(&["train", "--hidden", "64", "--resume", p(&ck)]));
    assert!(line.contains("written for model mlp:32, not mlp:64"), "{line}");
    let mnist = d.join("mnist");
    common::files::write_mnist_like(&mnist, 10, 10);
    let line =
        assert_clean_failure(&asgd(&["eval", "--checkpoint", p(&ck), "--data", "mnist", "--data-dir", p(&mnist)]));
    assert!(line.contains("pass --data digits"), "{line}");

    // A checkpoint whose tensor shapes contradict its own description.
    let (mut tensors, meta) = load_safetensors(&ck).unwrap();
    let w = tensors.iter_mut().find(|t| t.name == "fc1.weight").unwrap();
    w.shape = vec![16, 128];
    let bad = d.join("bad.safetensors");
    save_safetensors(&bad, &tensors, &meta).unwrap();
    let line = assert_clean_failure(&asgd(&["eval", "--checkpoint", p(&bad)]));
    assert!(line.contains("'fc1.weight' has shape [16, 128]"), "{line}");

    // Not a checkpoint at all.
    let junk = d.join("junk.safetensors");
    std::fs::write(&junk, b"definitely not safetensors").unwrap();
    assert_clean_failure(&asgd(&["eval", "--checkpoint", p(&junk)]));
}
