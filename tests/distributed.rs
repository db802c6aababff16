//! Training across processes on 127.0.0.1: every algorithm leaves all ranks with the same model,
//! DaSGD with no delay is local SGD, and a rank killed mid-training stops the others with a
//! clear error within the timeout while the last checkpoint stays usable for --resume; ranks
//! started with different settings all stop before training, naming the setting.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{asgd, assert_success, fresh_dir, text};

fn dir(name: &str) -> PathBuf {
    fresh_dir("distributed", name)
}

fn done_event(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let last = text.lines().last().unwrap_or_else(|| panic!("{} is empty", path.display()));
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["event"], "done", "{}", path.display());
    v
}

/// Runs `asgd launch --nproc n -- train ...` on digits and returns each rank's done event.
fn launch_train(d: &Path, n: usize, extra: &[&str]) -> Vec<serde_json::Value> {
    let metrics = d.join("m.jsonl");
    let nproc = n.to_string();
    let mut args = vec!["launch", "--nproc", &nproc, "--", "train", "--hidden", "32", "--batch", "32", "-q"];
    args.extend_from_slice(&["--metrics", metrics.to_str().unwrap()]);
    args.extend_from_slice(extra);
    assert_success(&asgd(&args));
    (0..n).map(|r| done_event(&if r == 0 { metrics.clone() } else { d.join(format!("m.rank{r}.jsonl")) })).collect()
}

#[test]
fn every_algorithm_ends_with_the_same_model_on_every_rank() {
    for algo in ["sync", "localsgd", "dasgd", "lasgd"] {
        let d = dir(algo);
        let done = launch_train(&d, 3, &["--algo", algo, "--epochs", "6", "--avg-period", "4", "--avg-delay", "2"]);
        let sum = done[0]["model_checksum"].as_str().unwrap().to_string();
        assert_eq!(sum.len(), 64, "{algo}");
        for (r, e) in done.iter().enumerate() {
            assert_eq!(e["model_checksum"], sum, "{algo}: rank {r} ends with another model");
            assert_eq!(e["steps"], done[0]["steps"], "{algo}: rank {r} ran another number of steps");
        }
        let acc = done[0]["test_acc"].as_f64().unwrap();
        assert!(acc > 0.8, "{algo}: 3 ranks x 6 epochs of digits reach 80%, got {acc}");
        assert!(done[1]["test_acc"].is_null(), "{algo}: only rank 0 evaluates");
        if algo == "dasgd" || algo == "localsgd" || algo == "lasgd" {
            let rounds = done[0]["averaging"]["rounds"].as_u64().unwrap();
            assert!(rounds >= 5, "{algo}: {rounds} averaging rounds");
            // dasgd applies every average exactly --avg-delay steps late; lasgd as soon as it
            // is back and at the latest then (no step starts past the fence; its lag counts
            // steps started, whatever the lanes).
            let lags: Vec<u64> = done.iter().map(|e| e["averaging"]["max_lag_steps"].as_u64().unwrap()).collect();
            match algo {
                "localsgd" => assert_eq!(lags, [0, 0, 0], "{algo}"),
                "dasgd" => assert_eq!(lags, [2, 2, 2], "{algo}"),
                _ => assert!(
                    lags.iter().all(|&l| l <= 2),
                    "{algo}: averages applied {lags:?} steps late, past --avg-delay 2"
                ),
            }
        }
    }
}

#[test]
fn lasgd_with_no_delay_waits_for_every_average() {
    let done =
        launch_train(&dir("lasgd0"), 2, &["--algo", "lasgd", "--epochs", "3", "--avg-period", "3", "--avg-delay", "0"]);
    for (r, e) in done.iter().enumerate() {
        assert_eq!(e["averaging"]["max_lag_steps"], 0, "rank {r}");
        assert!(e["averaging"]["rounds"].as_u64().unwrap() >= 5, "rank {r}");
    }
    assert_eq!(done[0]["model_checksum"], done[1]["model_checksum"]);
}

#[test]
fn dasgd_with_no_delay_is_local_sgd() {
    let local = launch_train(&dir("local"), 2, &["--algo", "localsgd", "--epochs", "3", "--avg-period", "3"]);
    let dasgd =
        launch_train(&dir("dasgd0"), 2, &["--algo", "dasgd", "--epochs", "3", "--avg-period", "3", "--avg-delay", "0"]);
    assert_eq!(local[0]["model_checksum"], dasgd[0]["model_checksum"]);
    let delayed =
        launch_train(&dir("dasgd2"), 2, &["--algo", "dasgd", "--epochs", "3", "--avg-period", "3", "--avg-delay", "2"]);
    assert_ne!(local[0]["model_checksum"], delayed[0]["model_checksum"], "a delay must change the trajectory");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts rank `rank` of `world` by hand, as a scheduler would, with a short comm timeout.
fn spawn_rank(rank: usize, world: usize, port: u16, args: &[&str]) -> Child {
    spawn_rank_with_timeout(rank, world, port, args, 3)
}

/// As [`spawn_rank`], with a comm timeout of `timeout_s` seconds.
fn spawn_rank_with_timeout(rank: usize, world: usize, port: u16, args: &[&str], timeout_s: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_asgd"))
        .args(args)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("ASGD_COMM_TIMEOUT_S", timeout_s.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn ranks_with_different_settings_all_fail_naming_the_setting() {
    let port = free_port();
    let args = |algo: &'static str| ["train", "--algo", algo, "--hidden", "32", "--batch", "32", "--epochs", "1", "-q"];
    let t0 = Instant::now();
    let ranks = [spawn_rank(0, 2, port, &args("localsgd")), spawn_rank(1, 2, port, &args("dasgd"))];
    for (r, child) in ranks.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "rank {r} succeeded with another rank's --algo: {stderr}");
        let last = stderr.trim_end().lines().last().unwrap_or_default();
        assert_eq!(
            last,
            "error: rank 1 runs --algo dasgd but rank 0 runs localsgd; every rank of a job must use the same settings",
            "rank {r}: {stderr}"
        );
    }
    // Found before training, not after an epoch or a timeout.
    assert!(t0.elapsed() < Duration::from_secs(15), "the ranks took {:?} to stop", t0.elapsed());
}

#[test]
fn a_killed_rank_stops_the_others_and_the_checkpoint_resumes() {
    let d = dir("fault");
    let ck = d.join("ck.safetensors");
    let ck_s = ck.to_str().unwrap().to_string();
    let port = free_port();
    // Slow steps so that the kill lands mid-training.
    let args = [
        "train",
        "--algo",
        "sync",
        "--hidden",
        "32",
        "--batch",
        "32",
        "--epochs",
        "40",
        "-q",
        "--inject-delay",
        "all:fixed=30ms",
        "--checkpoint",
        &ck_s,
        "--checkpoint-every",
        "5",
    ];
    let mut ranks: Vec<Child> = (0..4).map(|r| spawn_rank(r, 4, port, &args)).collect();
    let t0 = Instant::now();
    while !ck.exists() {
        // Generous: four lavapipe ranks share the CI machine's two cores with other tests.
        assert!(t0.elapsed() < Duration::from_secs(180), "no checkpoint after 180 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    ranks[2].kill().unwrap();
    let killed_at = Instant::now();
    let _ = ranks[2].wait();
    for (r, child) in ranks.iter_mut().enumerate().filter(|(r, _)| *r != 2) {
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(killed_at.elapsed() < Duration::from_secs(30), "rank {r} still running 30 s after rank 2 died");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "rank {r} succeeded after its peer died");
        assert!(!stderr.contains("panicked"), "rank {r}: {stderr}");
        let last = stderr.trim_end().lines().last().unwrap_or_default();
        assert!(last.starts_with("error: ") && last.contains("rank"), "rank {r}: {stderr}");
        eprintln!("rank {r} after {:?}: {last}", killed_at.elapsed());
    }
    // The timeout is 3 s; failing ranks may wait for it once or twice, never for long.
    assert!(killed_at.elapsed() < Duration::from_secs(20), "ranks took {:?} to stop", killed_at.elapsed());

    // The checkpoint is intact and a new job resumes from it.
    let meta = asgd::engine::io::checkpoint::load_safetensors(&ck).unwrap().1;
    let step: u64 = meta["step"].parse().unwrap();
    assert!(step >= 5, "checkpoint at step {step}");
    assert_success(&asgd(&["eval", "--checkpoint", &ck_s]));
    let port = free_port();
    let resume =
        ["train", "--algo", "sync", "--hidden", "32", "--batch", "32", "--epochs", "3", "-q", "--resume", &ck_s];
    // A timeout that outlasts loading on a busy machine: rank 0 reads the checkpoint and may
    // reach the first collective seconds after the others (with 3 s the others gave up on it).
    let children: Vec<Child> = (0..4).map(|r| spawn_rank_with_timeout(r, 4, port, &resume, 30)).collect();
    for (r, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "resumed rank {r}: {}", text(&out.stderr));
    }
}
