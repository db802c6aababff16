//! Starting worker processes for the multi-process tests.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use asgd_comm::launch::{self, LaunchError, LaunchSpec, Stream};

pub const WORKER: &str = env!("CARGO_BIN_EXE_asgd-comm-worker");

/// One output line: rank, stream, text.
pub type Line = (usize, Stream, String);

/// Runs `n` workers through the launcher with `args` and extra `env`; returns the launch
/// result and every output line.
pub fn run_world(n: usize, args: &[&str], env: &[(&str, &str)]) -> (Result<(), LaunchError>, Vec<Line>) {
    let mut spec = LaunchSpec::new(n, WORKER, args.iter().copied());
    spec.env = env.iter().map(|(k, v)| (k.into(), v.into())).collect();
    // Short enough that a broken test fails fast, long enough for a loaded 2-core machine.
    // Later variables win, so the test's own come after this default.
    spec.env.insert(0, ("ASGD_COMM_TIMEOUT_S".into(), "20".into()));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&lines);
    let result = launch::launch(&spec, move |rank, stream, line| {
        store.lock().unwrap().push((rank, stream, String::from_utf8_lossy(line).into_owned()))
    });
    let lines = lines.lock().unwrap().clone();
    (result, lines)
}

/// Panics with all output when `result` is an error.
pub fn assert_ok(result: &Result<(), LaunchError>, lines: &[Line]) {
    if let Err(e) = result {
        let all: Vec<String> = lines.iter().map(|(r, s, l)| format!("[rank {r} {s:?}] {l}")).collect();
        panic!("launch failed: {e}\n{}", all.join("\n"));
    }
}

/// A worker started by hand, with its own environment, so tests can give ranks different
/// secrets or kill one of them.
pub struct Rank {
    pub rank: usize,
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<(Instant, String)>>>,
    pub stderr: Arc<Mutex<Vec<(Instant, String)>>>,
}

fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<(Instant, String)>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&lines);
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            store.lock().unwrap().push((Instant::now(), line));
        }
    });
    lines
}

/// Starts rank `rank` of `n` meeting at 127.0.0.1:`port` (or `MASTER_ADDR` from `env`).
pub fn spawn_rank(rank: usize, n: usize, port: u16, args: &[&str], env: &[(&str, &str)]) -> Rank {
    let mut child = Command::new(WORKER)
        .args(args)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", n.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("ASGD_COMM_TIMEOUT_S", "20")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the worker");
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    Rank { rank, child, stdout, stderr }
}

impl Rank {
    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<(ExitStatus, Instant)> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some((status, Instant::now()));
            }
            if start.elapsed() > limit {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to `limit` until a stdout line contains `needle`.
    pub fn wait_for_stdout(&self, needle: &str, limit: Duration) -> bool {
        wait_for_line(&self.stdout, needle, limit)
    }

    pub fn wait_for_stderr(&self, needle: &str, limit: Duration) -> bool {
        wait_for_line(&self.stderr, needle, limit)
    }

    /// All stderr so far, one string.
    pub fn stderr_text(&self) -> String {
        // Let the reader thread catch up with a process that just exited.
        thread::sleep(Duration::from_millis(50));
        self.stderr.lock().unwrap().iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Rank {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_line(lines: &Mutex<Vec<(Instant, String)>>, needle: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if lines.lock().unwrap().iter().any(|(_, l)| l.contains(needle)) {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    launch::free_loopback_port().unwrap()
}
