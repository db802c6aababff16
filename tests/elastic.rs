//! Elastic jobs across processes on 127.0.0.1 (`train --elastic`): four ranks of localsgd, of
//! dasgd and of lasgd lose one rank to `kill -9` mid-run, go on without it, take it back when it is
//! started again, and all end with the same model; a rank stopped with SIGSTOP is dropped by
//! name after the comm timeout while the others finish; settings that differ are still found
//! before training. One test function, so that its runs of four processes never overlap.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::fresh_dir;

/// Comm timeout of these jobs, in seconds.
const TIMEOUT_S: u64 = 3;

struct Rank {
    rank: usize,
    child: Child,
    stderr: PathBuf,
    metrics: PathBuf,
}

impl Rank {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the rank has exited; panics after `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!("rank {} still running after {limit:?}: {}", self.rank, self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last metrics event (`done` once the run finished).
    fn last_event(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.metrics).unwrap_or_default();
        text.lines().last().map(|l| serde_json::from_str(l).unwrap()).unwrap_or(serde_json::Value::Null)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig} rank {}", self.rank);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts rank `rank` of a 4-rank elastic job by hand, as a scheduler would.
fn spawn(d: &Path, rank: usize, port: u16, args: &[&str], tag: &str) -> Rank {
    let stderr = d.join(format!("err{rank}{tag}.txt"));
    let metrics = d.join(format!("m{rank}{tag}.jsonl"));
    let child = Command::new(env!("CARGO_BIN_EXE_asgd"))
        .args(args)
        .args(["--metrics", metrics.to_str().unwrap()])
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", "4")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("ASGD_COMM_TIMEOUT_S", TIMEOUT_S.to_string())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    // A rank's metrics file is its own: rank 0 writes the named one, others add `.rankN`.
    let metrics = if rank == 0 { metrics } else { d.join(format!("m{rank}{tag}.rank{rank}.jsonl")) };
    Rank { rank, child, stderr, metrics }
}

/// Waits until `f` holds, checking every 20 ms; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The args of a job slow enough (20 ms a step) that a kill lands mid-run on any machine.
fn job_args(algo: &str) -> Vec<String> {
    let a = "train --elastic --hidden 32 --batch 16 --epochs 30 -q --inject-delay all:fixed=20ms --avg-period 4";
    let mut v: Vec<String> = a.split(' ').map(String::from).collect();
    let delay = if algo == "localsgd" { "0" } else { "2" };
    v.extend(["--algo".into(), algo.into(), "--avg-delay".into(), delay.into()]);
    v
}

fn done(r: &Rank) -> serde_json::Value {
    let e = r.last_event();
    assert_eq!(e["event"], "done", "rank {}: {}", r.rank, r.stderr());
    e
}

/// Kills rank 2 mid-run, checks the others go on, starts it again and checks it joins.
fn survive_and_rejoin(algo: &str) {
    let d = fresh_dir("elastic", algo);
    let port = free_port();
    let args = job_args(algo);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut ranks: Vec<Rank> = (0..4).map(|r| spawn(&d, r, port, &args, "")).collect();
    // Mid-run: rank 0 has finished two epochs (of 30).
    wait_until(Duration::from_secs(180), "rank 0's second epoch", || {
        ranks[0].last_event()["epoch"].as_u64() >= Some(2)
    });
    ranks[2].signal("-KILL");
    let killed = Instant::now();
    let _ = ranks[2].child.wait();
    wait_until(Duration::from_secs(30), "rank 0 dropping rank 2", || ranks[0].stderr().contains("rank 2 left the job"));
    let noticed = killed.elapsed();
    assert!(ranks[0].stderr().contains("its connection closed"), "{}", ranks[0].stderr());
    // Started again with the same RANK and flags, it comes back in at a later round.
    let mut back = spawn(&d, 2, port, &args, "b");
    for r in [0, 1, 3] {
        let status = ranks[r].wait(Duration::from_secs(240));
        assert!(status.success(), "{algo}: rank {r} failed after rank 2 was killed: {}", ranks[r].stderr());
    }
    let status = back.wait(Duration::from_secs(60));
    assert!(status.success(), "{algo}: the restarted rank 2 failed: {}", back.stderr());
    assert!(back.stderr().contains("joins the running job"), "{}", back.stderr());
    let log = ranks[0].stderr();
    assert!(log.contains("rank 2 joined the job"), "{algo}: rank 0 never took rank 2 back: {log}");

    let events: Vec<serde_json::Value> = [&ranks[0], &ranks[1], &back, &ranks[3]].iter().map(|r| done(r)).collect();
    let sum = events[0]["model_checksum"].as_str().unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["model_checksum"].as_str(), Some(sum), "{algo}: rank {i} ends with another model");
        assert_eq!(e["elastic"]["ranks"], serde_json::json!([0, 1, 2, 3]), "{algo}: rank {i}");
    }
    // The restarted rank trained only the steps after its join.
    assert!(events[2]["steps"].as_u64() < events[0]["steps"].as_u64(), "{:?}", events[2]["steps"]);
    let changes = &events[0]["elastic"]["changes"];
    assert_eq!(changes.as_array().map(Vec::len), Some(2), "{changes}");
    assert_eq!((changes[0]["rank"].as_u64(), changes[0]["joined"].as_bool()), (Some(2), Some(false)));
    assert_eq!((changes[1]["rank"].as_u64(), changes[1]["joined"].as_bool()), (Some(2), Some(true)));
    let acc = events[0]["test_acc"].as_f64().unwrap();
    assert!(acc > 0.85, "{algo}: test accuracy {acc} after losing and regaining a rank");
    eprintln!("{algo}: rank 0 dropped the killed rank {noticed:?} after the kill; test accuracy {acc}");
}

/// Stops rank 1 with SIGSTOP: rank 0 names it as hung after the timeout and the others
/// finish; woken up, rank 1 learns it was dropped and fails with that.
fn hung_rank_is_dropped_by_name() {
    let d = fresh_dir("elastic", "hung");
    let port = free_port();
    let args = job_args("localsgd");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut ranks: Vec<Rank> = (0..4).map(|r| spawn(&d, r, port, &args, "")).collect();
    wait_until(Duration::from_secs(180), "rank 0's second epoch", || {
        ranks[0].last_event()["epoch"].as_u64() >= Some(2)
    });
    ranks[1].signal("-STOP");
    let stopped = Instant::now();
    wait_until(Duration::from_secs(30), "rank 0 dropping rank 1", || ranks[0].stderr().contains("rank 1 left the job"));
    let after = stopped.elapsed();
    assert!(after >= Duration::from_secs(TIMEOUT_S) - Duration::from_millis(500), "dropped after only {after:?}");
    assert!(ranks[0].stderr().contains("hung"), "{}", ranks[0].stderr());
    for r in [0, 2, 3] {
        let status = ranks[r].wait(Duration::from_secs(240));
        assert!(status.success(), "rank {r} failed after rank 1 hung: {}", ranks[r].stderr());
        let text = ranks[r].stderr();
        assert!(
            !text.contains("rank 0 left") && !text.contains("rank 2 left") && !text.contains("rank 3 left"),
            "{text}"
        );
    }
    ranks[1].signal("-CONT");
    let status = ranks[1].wait(Duration::from_secs(60));
    let err = ranks[1].stderr();
    assert!(!status.success(), "the hung rank succeeded after being dropped: {err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: rank 0 dropped this rank from the elastic job"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let sums: Vec<serde_json::Value> = [0, 2, 3].iter().map(|&r| done(&ranks[r])["model_checksum"].clone()).collect();
    assert!(sums.iter().all(|s| *s == sums[0]), "{sums:?}");
    eprintln!("the stopped rank was dropped {after:?} after SIGSTOP");
}

/// A rank that comes in with other settings is refused with the setting named; at the start
/// that fails the job (as without --elastic).
fn other_settings_are_refused_by_name() {
    let d = fresh_dir("elastic", "settings");
    let port = free_port();
    let base = ["train", "--elastic", "--hidden", "32", "--batch", "32", "--epochs", "1", "-q"];
    let with = |algo: &'static str| {
        let mut v = base.to_vec();
        v.extend(["--algo", algo]);
        v
    };
    let mut ranks = vec![spawn(&d, 0, port, &with("localsgd"), "")];
    ranks.extend((1..4).map(|r| spawn(&d, r, port, &with(if r == 3 { "dasgd" } else { "localsgd" }), "")));
    let mut r3 = ranks.remove(3);
    assert!(!r3.wait(Duration::from_secs(60)).success());
    let expected =
        "error: rank 3 runs --algo dasgd but rank 0 runs localsgd; every rank of a job must use the same settings";
    assert_eq!(r3.stderr().trim_end().lines().last(), Some(expected), "{}", r3.stderr());
    let status = ranks[0].wait(Duration::from_secs(60));
    assert!(!status.success());
    assert_eq!(ranks[0].stderr().trim_end().lines().last(), Some(expected), "{}", ranks[0].stderr());
    for r in ranks.iter_mut().skip(1) {
        assert!(!r.wait(Duration::from_secs(60)).success(), "rank {} succeeded", r.rank);
    }
    // DDP cannot drop a rank: refused with the algorithms that can.
    let out = common::asgd_with(
        &["train", "--elastic", "--algo", "sync", "-q"],
        &[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", &free_port().to_string())],
    );
    let line = common::assert_clean_failure(&out);
    assert!(line.contains("--algo sync cannot run with --elastic"), "{line}");
}

/// The child of process `parent` whose environment has `RANK=rank` (read from /proc).
fn child_with_rank(parent: u32, rank: usize) -> Option<u32> {
    let want = format!("RANK={rank}");
    std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(|pid| {
        // /proc/PID/stat: "PID (name) STATE PPID ..."; the name may hold spaces, not ')'.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        ppid == Some(parent) && env.split(|&b| b == 0).any(|kv| kv == want.as_bytes())
    })
}

/// `asgd launch --max-restarts 1`: rank 2 killed, started again at once by the launcher (so
/// it asks to come back before rank 0 has seen it go), let back in; the launch succeeds.
fn launcher_restarts_a_killed_rank() {
    let d = fresh_dir("elastic", "launch");
    let metrics = d.join("m.jsonl");
    let mut args = vec!["launch".to_string(), "--nproc".into(), "4".into(), "--max-restarts".into(), "1".into()];
    args.push("--".into());
    args.extend(job_args("localsgd"));
    args.extend(["--metrics".into(), metrics.to_str().unwrap().into()]);
    let launcher = Command::new(env!("CARGO_BIN_EXE_asgd"))
        .args(&args)
        .env("ASGD_COMM_TIMEOUT_S", TIMEOUT_S.to_string())
        .stdout(Stdio::null())
        .stderr(File::create(d.join("launch.err")).unwrap())
        .spawn()
        .unwrap();
    let mut launcher = Rank { rank: 0, child: launcher, stderr: d.join("launch.err"), metrics: metrics.clone() };
    wait_until(Duration::from_secs(180), "rank 0's second epoch", || {
        launcher.last_event()["epoch"].as_u64() >= Some(2)
    });
    let pid = child_with_rank(launcher.child.id(), 2).expect("rank 2's process");
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    let status = launcher.wait(Duration::from_secs(240));
    let log = launcher.stderr();
    assert!(status.success(), "the launch failed after rank 2 was killed and restarted: {log}");
    assert!(log.contains("starting it again (restart 1 of 1)"), "{log}");
    assert!(log.contains("rank 2 left the job") && log.contains("rank 2 joined the job"), "{log}");
    let sums: Vec<serde_json::Value> = (0..4)
        .map(|r| {
            let path = if r == 0 { metrics.clone() } else { d.join(format!("m.rank{r}.jsonl")) };
            let text = std::fs::read_to_string(&path).unwrap();
            let done: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
            assert_eq!(done["event"], "done", "rank {r}");
            done["model_checksum"].clone()
        })
        .collect();
    assert!(sums.iter().all(|s| *s == sums[0]), "{sums:?}");
}

#[test]
fn elastic_jobs_survive_lost_and_hung_ranks_and_take_ranks_back() {
    other_settings_are_refused_by_name();
    survive_and_rejoin("localsgd");
    survive_and_rejoin("dasgd");
    survive_and_rejoin("lasgd");
    hung_rank_is_dropped_by_name();
    launcher_restarts_a_killed_rank();
}
