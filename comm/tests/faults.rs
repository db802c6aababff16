//! Failures across real processes: a killed rank, a hung rank, wrong secrets, strangers on
//! the rendezvous port (idle, garbage), mismatched buffers. Every surviving rank must fail with an error
//! naming the rank and the operation, within the configured timeout, and never hang.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{free_port, run_world, spawn_rank, Rank};

const TIMEOUT_S: &str = "2";
const TIMEOUT: Duration = Duration::from_secs(2);

/// Starts `n` looping ranks (1 MiB all-reduces, the two-thread path) and waits until all run.
fn looping_world(n: usize, args: &[&str]) -> Vec<Rank> {
    looping_world_with(n, args, &[])
}

/// [`looping_world`] with extra environment variables for every rank.
fn looping_world_with(n: usize, args: &[&str], env: &[(&str, &str)]) -> Vec<Rank> {
    let port = free_port();
    let env: Vec<(&str, &str)> = [("ASGD_COMM_TIMEOUT_S", TIMEOUT_S)].into_iter().chain(env.iter().copied()).collect();
    let ranks: Vec<Rank> = (0..n).map(|r| spawn_rank(r, n, port, args, &env)).collect();
    for r in &ranks {
        assert!(
            r.wait_for_stdout("ready", Duration::from_secs(30)),
            "rank {} never got going: {}",
            r.rank,
            r.stderr_text()
        );
    }
    ranks
}

#[test]
fn killed_rank_fails_every_other_rank_within_the_timeout() {
    let mut ranks = looping_world(4, &["loop", "--elems", "262144"]);
    std::thread::sleep(Duration::from_millis(100));
    ranks[1].child.kill().unwrap();
    let killed_at = Instant::now();
    for r in [0, 2, 3] {
        let (status, at) = ranks[r]
            .wait_for_exit(TIMEOUT + Duration::from_secs(3))
            .unwrap_or_else(|| panic!("rank {r} still running well past the timeout"));
        let err = ranks[r].stderr_text();
        assert!(!status.success(), "rank {r} exited successfully: {err}");
        assert!(at - killed_at < TIMEOUT, "rank {r} took {:?} to fail", at - killed_at);
        assert!(
            err.contains("rank 1") && err.contains("all_reduce"),
            "rank {r} did not name rank 1 and the operation: {err}"
        );
    }
}

#[test]
fn hung_rank_turns_into_timeouts_not_hangs() {
    // Rank 1 takes part in three all-reduces, then stops calling with its sockets open.
    let mut ranks = looping_world(3, &["stall", "1", "--elems", "262144"]);
    let started = Instant::now();
    for r in [0, 2] {
        let (status, at) =
            ranks[r].wait_for_exit(TIMEOUT + Duration::from_secs(5)).unwrap_or_else(|| panic!("rank {r} hung"));
        let err = ranks[r].stderr_text();
        assert!(!status.success(), "{err}");
        // Up to one timeout of no progress, plus the 200 ms a failed collective may wait for
        // its sender thread, plus scheduling on a loaded machine.
        assert!(at - started < TIMEOUT + Duration::from_millis(1500), "rank {r} took {:?}", at - started);
        assert!(err.contains("all_reduce"), "{err}");
        // Rank 2 reads from rank 1 directly; rank 0 waits on rank 2, yet must name rank 1
        // too: rank 0's heartbeat service sees that it stopped starting collectives.
        assert!(err.contains("rank 1 stopped calling collectives"), "rank {r}: {err}");
        assert!(!blames(&err, 0) && !blames(&err, 2), "rank {r}: {err}");
    }
}

/// Sends `signal` (`STOP`, `CONT`) to a worker; `kill` is used because std can only SIGKILL.
fn signal(rank: &Rank, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &rank.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// Whether `err` blames rank `r`: by name as the one hung, stalled, failed, closed, or waited for.
fn blames(err: &str, r: usize) -> bool {
    [
        format!("rank {r} is hung"),
        format!("rank {r} stopped calling"),
        format!("rank {r} failed"),
        format!("rank {r} closed"),
        format!("waiting for rank {r}"),
    ]
    .iter()
    .any(|s| err.contains(s.as_str()))
}

/// Freezes rank `stopped` of 4 looping ranks with its sockets open (SIGSTOP) and checks that
/// every other rank fails within the timeout naming it as hung, and no other rank.
fn stopped_rank_is_named(stopped: usize, env: &[(&str, &str)]) {
    let mut ranks = looping_world_with(4, &["loop", "--elems", "262144"], env);
    std::thread::sleep(Duration::from_millis(100));
    signal(&ranks[stopped], "STOP");
    let stopped_at = Instant::now();
    let others: Vec<usize> = (0..4).filter(|&r| r != stopped).collect();
    let mut failures = Vec::new();
    for &r in &others {
        let exited = ranks[r].wait_for_exit(TIMEOUT + Duration::from_secs(5));
        failures.push((r, exited, ranks[r].stderr_text()));
    }
    signal(&ranks[stopped], "CONT");
    let _ = ranks[stopped].child.kill();
    for (r, exited, err) in failures {
        let (status, at) = exited.unwrap_or_else(|| panic!("rank {r} still running well past the timeout"));
        assert!(!status.success(), "rank {r} exited successfully: {err}");
        // One timeout of silence, the wait for a fresh verdict (a beat), the sender thread's
        // 200 ms grace, and scheduling on a loaded machine.
        assert!(at - stopped_at < TIMEOUT + Duration::from_secs(2), "rank {r} took {:?}", at - stopped_at);
        assert!(err.contains("all_reduce") && err.contains("hung"), "rank {r}: {err}");
        assert!(blames(&err, stopped), "rank {r} did not name rank {stopped}: {err}");
        for &other in &others {
            assert!(!blames(&err, other), "rank {r} blamed rank {other}: {err}");
        }
    }
}

#[test]
fn stopped_rank_is_named_by_every_other_rank() {
    // Its successor times out reading from it, but its other peers time out at the same
    // moment waiting on their own neighbours; rank 0's heartbeat service knows which rank
    // went silent.
    stopped_rank_is_named(2, &[]);
}

#[test]
fn stopped_rank_0_is_named_by_every_member() {
    // Rank 0 runs the heartbeat service itself: its members notice that it stopped answering.
    // With a secret, so the heartbeats travel sealed like every other frame.
    stopped_rank_is_named(0, &[("ASGD_SECRET", "s3cret")]);
}

#[test]
fn wrong_secret_is_refused_on_both_sides() {
    let port = free_port();
    let env0 = [("ASGD_SECRET", "right"), ("ASGD_COMM_TIMEOUT_S", TIMEOUT_S)];
    let env1 = [("ASGD_SECRET", "wrong"), ("ASGD_COMM_TIMEOUT_S", TIMEOUT_S)];
    let mut r0 = spawn_rank(0, 2, port, &["join"], &env0);
    let mut r1 = spawn_rank(1, 2, port, &["join"], &env1);
    let (s1, _) = r1.wait_for_exit(Duration::from_secs(10)).expect("rank 1 hung");
    let e1 = r1.stderr_text();
    assert!(!s1.success());
    assert!(e1.contains("authentication with rank 0") && e1.contains("ASGD_SECRET"), "{e1}");
    let (s0, _) = r0.wait_for_exit(Duration::from_secs(10)).expect("rank 0 hung");
    let e0 = r0.stderr_text();
    assert!(!s0.success());
    // Rank 1 checks rank 0's proof first and hangs up on it; rank 0 logs that.
    assert!(
        e0.contains("dropped a connection") && e0.contains("different secret"),
        "rank 0 did not log the refusal: {e0}"
    );
    assert!(e0.contains("rendezvous did not finish") && e0.contains("[1]"), "{e0}");
}

#[test]
fn impostor_and_garbage_are_dropped_and_the_job_goes_on() {
    let port = free_port();
    let secret = [("ASGD_SECRET", "s3cret")];
    let r0 = spawn_rank(0, 2, port, &["join"], &secret);
    // A process with the wrong secret claiming rank 1 gets there first.
    let mut impostor = spawn_rank(1, 2, port, &["join"], &[("ASGD_SECRET", "guess")]);
    assert!(r0.wait_for_stderr("dropped a connection", Duration::from_secs(10)), "{}", r0.stderr_text());
    let (status, _) = impostor.wait_for_exit(Duration::from_secs(10)).expect("impostor hung");
    assert!(!status.success());
    // Something that is not asgd at all.
    let mut stranger = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stranger.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // Handshakes run side by side, so wait for this one to be turned away before rank 1 comes:
    // once the job has formed, unfinished strangers are cut without a verdict.
    assert!(r0.wait_for_stderr("bad magic", Duration::from_secs(10)), "{}", r0.stderr_text());
    let mut r1 = spawn_rank(1, 2, port, &["join"], &secret);
    let mut r0 = r0;
    for r in [&mut r0, &mut r1] {
        let (status, _) = r.wait_for_exit(Duration::from_secs(20)).expect("hung");
        assert!(status.success(), "rank {}: {}", r.rank, r.stderr_text());
        assert!(r.wait_for_stdout("joined", Duration::from_secs(1)));
    }
}

#[test]
fn no_secret_on_a_public_address_is_refused_with_the_fix() {
    let (result, lines) = run_world(2, &["join"], &[("ASGD_BIND_ADDR", "0.0.0.0")]);
    assert!(result.is_err());
    let err = lines.iter().map(|(_, _, l)| l.as_str()).collect::<Vec<_>>().join("\n");
    assert!(err.contains("ASGD_SECRET") && err.contains("ASGD_ALLOW_INSECURE=1"), "{err}");
}

#[test]
fn different_buffer_lengths_are_an_error_not_corruption() {
    let (result, lines) = run_world(2, &["mismatch"], &[("ASGD_COMM_TIMEOUT_S", TIMEOUT_S)]);
    assert!(result.is_err());
    let err = lines.iter().map(|(_, _, l)| l.as_str()).collect::<Vec<_>>().join("\n");
    assert!(err.contains("same length"), "{err}");
}

/// Connects to 127.0.0.1:`port`, retrying while the listener is not up yet.
fn connect_when_listening(port: u16) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if start.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("rank 0 never listened on {port}: {e}"),
        }
    }
}

#[test]
fn idle_and_garbage_connections_do_not_hold_up_the_job() {
    // Rank 0 would wait 40 s for rank 1; strangers that connect first and then say nothing
    // (or too little, or nonsense) must not make rank 1 wait for their handshakes to time out.
    let port = free_port();
    let env = [("ASGD_SECRET", "s3cr3t"), ("ASGD_COMM_TIMEOUT_S", "40")];
    let mut r0 = spawn_rank(0, 2, port, &["join"], &env);
    let mut strangers: Vec<TcpStream> = (0..3).map(|_| connect_when_listening(port)).collect();
    // Half a frame header, then silence.
    let mut slow = connect_when_listening(port);
    slow.write_all(b"AG\x02\x01").unwrap();
    strangers.push(slow);
    let mut garbage = connect_when_listening(port);
    garbage.write_all(&[0xff; 64]).unwrap();
    strangers.push(garbage);
    // The garbage is turned away while the silent ones are still waiting.
    assert!(r0.wait_for_stderr("not the asgd handshake", Duration::from_secs(10)), "{}", r0.stderr_text());

    let started = Instant::now();
    let mut r1 = spawn_rank(1, 2, port, &["join"], &env);
    for r in [&mut r1, &mut r0] {
        let (status, at) = r.wait_for_exit(Duration::from_secs(30)).expect("hung");
        assert!(status.success(), "rank {}: {}", r.rank, r.stderr_text());
        // A handshake takes milliseconds; 5 s leaves room for a loaded machine, and is half
        // of what one stranger used to cost.
        assert!(at - started < Duration::from_secs(5), "rank {} took {:?}", r.rank, at - started);
    }
    drop(strangers);
}
