//! End-to-end checks of `asgd launch` and `asgd bench allreduce` on 127.0.0.1, through the
//! real binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ASGD: &str = env!("CARGO_BIN_EXE_asgd");

#[test]
fn launch_runs_three_ranks_and_prefixes_their_output() {
    let out = Command::new(ASGD)
        .args(["launch", "--nproc", "3", "--", "bench", "allreduce", "--sizes", "4KiB,64KiB", "--iters", "5"])
        .env("ASGD_COMM_TIMEOUT_S", "30")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for rank in 0..3 {
        let joined = format!("[rank {rank}] rank {rank} of 3 (pid ");
        assert!(stderr.lines().any(|l| l.starts_with(&joined)), "no {joined:?} in:\n{stderr}");
    }
    // Rank 0 prints the results, each line prefixed.
    assert!(stdout.lines().any(|l| l.starts_with("[rank 0] ranks ")), "{stdout}");
    for bytes in [4096, 65536] {
        let json = format!("[rank 0] {{\"bench\":\"allreduce\",\"ranks\":3,\"bytes\":{bytes},\"iters\":5,");
        assert!(stdout.lines().any(|l| l.starts_with(&json)), "no {json:?} in:\n{stdout}");
    }
    assert!(stdout.lines().all(|l| l.starts_with("[rank ")), "an unprefixed line:\n{stdout}");
}

#[test]
fn launch_stops_the_others_when_a_rank_dies_and_names_it() {
    let mut launcher = Command::new(ASGD)
        .args(["launch", "--nproc", "3", "--", "bench", "allreduce", "--sizes", "1MiB", "--iters", "100000000"])
        .env("ASGD_COMM_TIMEOUT_S", "5")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = launcher.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("rank 1 never joined");
        seen.push(line.clone());
        if let Some(rest) = line.strip_prefix("[rank 1] rank 1 of 3 (pid ") {
            break rest.split(')').next().unwrap().to_owned();
        }
    };
    // Let the ranks get into their all-reduces, then kill rank 1 the hard way.
    std::thread::sleep(Duration::from_millis(300));
    assert!(Command::new("kill").args(["-9", &pid]).status().unwrap().success());
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = launcher.try_wait().unwrap() {
            break status;
        }
        if killed.elapsed() > Duration::from_secs(20) {
            let _ = launcher.kill();
            panic!("launch did not stop after rank 1 died:\n{}", seen.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        seen.push(line);
    }
    let text = seen.join("\n");
    assert!(!status.success(), "{text}");
    assert!(text.contains("error: rank 1 was killed by signal 9; stopped the other ranks"), "{text}");
    // The surviving ranks saw it too, and said which rank and which operation.
    assert!(text.contains("rank 1") && text.contains("all_reduce"), "{text}");
}

#[test]
fn bench_allreduce_prints_a_table_and_json_with_the_tcp_ceiling() {
    let out = Command::new(ASGD)
        .args(["bench", "allreduce", "--max-size", "16KiB", "--ranks", "2,3", "--stream-size", "8MiB", "--iters", "20"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("plain TCP, one stream between 2 processes:"), "{stdout}");
    assert!(stdout.contains("plain TCP ring of 3"), "{stdout}");
    assert!(stdout.contains("busbw (GB/s)"), "{stdout}");
    assert!(stdout.contains("{\"bench\":\"tcp_stream\",\"processes\":2,\"bytes\":8388608,"), "{stdout}");
    for ranks in [2, 3] {
        assert!(stdout.contains(&format!("{{\"bench\":\"tcp_ring\",\"ranks\":{ranks},")), "{stdout}");
        for bytes in [4096, 16384] {
            let json = format!("{{\"bench\":\"allreduce\",\"ranks\":{ranks},\"bytes\":{bytes},\"iters\":20,");
            assert!(stdout.contains(&json), "no {json:?} in:\n{stdout}");
        }
    }
}
