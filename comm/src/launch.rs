//! Starting N local ranks of a program, as torchrun does: each child gets `RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT`; every line
//! it prints goes through a sink (by default prefixed with `[rank K]`); when one rank fails,
//! the others are stopped and the failure names that rank.
//!
//! With [`LaunchSpec::max_restarts`] above 0 a rank other than 0 that fails is started again
//! (same variables), up to that many times in all, for jobs that take a restarted rank back
//! (`train --elastic`); rank 0 failing still stops the job.
//!
//! Stopping is in steps, so that ranks can exit cleanly: first a few seconds to exit by
//! themselves (a rank whose peer died notices and says so), then SIGTERM, then after another
//! grace period SIGKILL. A stop flag ([`LaunchSpec::stop`], set by a Ctrl-C handler) skips
//! the first step.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How often the launcher checks whether a child has exited.
const POLL: Duration = Duration::from_millis(10);
/// How long output from stopped ranks may keep draining after a failure.
const PUMP_GRACE: Duration = Duration::from_secs(1);
/// How long the other ranks may take to exit by themselves after one failed, before they are
/// sent SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long ranks may take to exit after SIGTERM before they are killed (SIGKILL).
const TERM_GRACE: Duration = Duration::from_secs(3);

/// What to start.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Number of ranks (processes), at least 1.
    pub nproc: usize,
    /// Where rank 0 listens, as (host, port); `None` picks a free port on 127.0.0.1.
    pub master: Option<(String, u16)>,
    /// The program each rank runs.
    pub program: PathBuf,
    /// Its arguments (the same for every rank).
    pub args: Vec<OsString>,
    /// Extra environment variables for every rank.
    pub env: Vec<(OsString, OsString)>,
    /// When set (e.g. by a SIGINT handler), the launch stops every rank and returns
    /// [`LaunchError::Interrupted`].
    pub stop: Option<Arc<AtomicBool>>,
    /// How many times in all a failed rank other than 0 is started again instead of stopping
    /// the job (0: fail-stop).
    pub max_restarts: usize,
}

impl LaunchSpec {
    /// `nproc` ranks of `program args`, with a free loopback port and no extra variables.
    pub fn new(nproc: usize, program: impl Into<PathBuf>, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        LaunchSpec {
            nproc,
            master: None,
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            stop: None,
            max_restarts: 0,
        }
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The child's standard output.
    Stdout,
    /// The child's standard error.
    Stderr,
}

/// Why a launch failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Bad arguments (no ranks, or a malformed master address).
    #[error("{0}")]
    Invalid(String),
    /// No free port could be found for rank 0.
    #[error("could not find a free port on 127.0.0.1 for rank 0: {0}; give rank 0's address and port")]
    NoFreePort(io::Error),
    /// A child could not be started.
    #[error("could not start rank {rank} ({program}): {source}")]
    Spawn {
        /// The rank being started.
        rank: usize,
        /// The program path.
        program: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The stop flag was set (Ctrl-C); every rank was stopped.
    #[error("interrupted; stopped every rank (SIGTERM, then SIGKILL for those still running after {TERM_GRACE:?})")]
    Interrupted,
    /// A rank exited unsuccessfully; the others were stopped.
    #[error("rank {rank} {status}; stopped the other ranks")]
    RankFailed {
        /// The first rank seen to fail.
        rank: usize,
        /// How it ended, in words ("exited with code 3", "was killed by signal 9").
        status: String,
    },
}

/// Parses `HOST:PORT`, where HOST may be a bracketed IPv6 address (`[::1]:29500`).
///
/// Errors: [`LaunchError::Invalid`] with the expected form.
pub fn parse_master(s: &str) -> Result<(String, u16), LaunchError> {
    let bad = || {
        LaunchError::Invalid(format!("the master address {s:?} is not HOST:PORT (e.g. 127.0.0.1:29500 or [::1]:29500)"))
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(LaunchError::Invalid(format!(
            "the master address {s:?} has port 0, which the other ranks could not know; give a free port (1-65535), or no address for a free loopback port"
        )));
    }
    Ok((host.to_owned(), port))
}

/// A port that was free on 127.0.0.1 a moment ago (the OS picks it; the small race before
/// rank 0 binds it is the same one torchrun accepts).
///
/// Errors: the OS's, when no socket can be bound.
pub fn free_loopback_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The default sink: writes `[rank K] line` to this process's stdout or stderr.
pub fn print_prefixed(rank: usize, stream: Stream, line: &[u8]) {
    let mut out: Box<dyn Write> = match stream {
        Stream::Stdout => Box::new(io::stdout().lock()),
        Stream::Stderr => Box::new(io::stderr().lock()),
    };
    let _ = write!(out, "[rank {rank}] ");
    let _ = out.write_all(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Describes how a process ended, for error messages.
pub fn describe_status(status: &ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("was killed by signal {sig}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => "ended without an exit code".to_owned(),
    }
}

fn killed_by_signal(status: &ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        status.signal().is_some()
    }
    #[cfg(not(unix))]
    {
        let _ = status;
        false
    }
}

fn pump(rank: usize, stream: Stream, pipe: impl Read, sink: &impl Fn(usize, Stream, &[u8])) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                sink(rank, stream, text);
            }
        }
    }
}

/// Starts the ranks, passes their output lines to `sink`, and waits for all of them.
///
/// When a rank exits unsuccessfully, the others get 3 s to exit by themselves and are then
/// killed; the error names the failed rank. If several are seen failing in the same instant,
/// one killed by a signal is named first (the others usually exit because it died), then the
/// lowest rank.
///
/// Errors: [`LaunchError`]; `Ok(())` means every rank exited with status 0.
pub fn launch(
    spec: &LaunchSpec,
    sink: impl Fn(usize, Stream, &[u8]) + Send + Sync + 'static,
) -> Result<(), LaunchError> {
    if spec.nproc == 0 {
        return Err(LaunchError::Invalid("a launch needs at least 1 rank".into()));
    }
    let (host, port) = match &spec.master {
        Some((h, p)) => (h.clone(), *p),
        None => ("127.0.0.1".to_owned(), free_loopback_port().map_err(LaunchError::NoFreePort)?),
    };
    let start_rank = |rank: usize| {
        Command::new(&spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", spec.nproc.to_string())
            .env("LOCAL_WORLD_SIZE", spec.nproc.to_string())
            .env("MASTER_ADDR", &host)
            .env("MASTER_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LaunchError::Spawn { rank, program: spec.program.display().to_string(), source })
    };
    let mut children: Vec<Child> = Vec::with_capacity(spec.nproc);
    for rank in 0..spec.nproc {
        match start_rank(rank) {
            Ok(c) => children.push(c),
            Err(e) => {
                stop_all(&mut children, true);
                return Err(e);
            }
        }
    }

    let sink = Arc::new(sink);
    let mut pumps = Vec::with_capacity(2 * spec.nproc);
    let pump_output = |rank: usize, child: &mut Child, pumps: &mut Vec<thread::JoinHandle<()>>| {
        if let Some(out) = child.stdout.take() {
            let sink = Arc::clone(&sink);
            pumps.push(thread::spawn(move || pump(rank, Stream::Stdout, out, &*sink)));
        }
        if let Some(err) = child.stderr.take() {
            let sink = Arc::clone(&sink);
            pumps.push(thread::spawn(move || pump(rank, Stream::Stderr, err, &*sink)));
        }
    };
    for (rank, child) in children.iter_mut().enumerate() {
        pump_output(rank, child, &mut pumps);
    }
    let mut restarts = 0;
    let result = loop {
        match supervise(&mut children, spec.stop.as_deref()) {
            Err(LaunchError::RankFailed { rank, status }) if rank != 0 && restarts < spec.max_restarts => {
                restarts += 1;
                let note = format!(
                    "asgd launch: rank {rank} {status}; starting it again (restart {restarts} of {})",
                    spec.max_restarts
                );
                sink(rank, Stream::Stderr, note.as_bytes());
                match start_rank(rank) {
                    Ok(mut child) => {
                        pump_output(rank, &mut child, &mut pumps);
                        children[rank] = child;
                    }
                    Err(e) => break Err(e),
                }
            }
            other => break other,
        }
    };
    if let Err(e) = &result {
        stop_all(&mut children, !matches!(e, LaunchError::Interrupted));
        // A grandchild may still hold a pipe open; give the output a moment, not forever.
        let start = Instant::now();
        while pumps.iter().any(|p| !p.is_finished()) && start.elapsed() < PUMP_GRACE {
            thread::sleep(POLL);
        }
    } else {
        for p in pumps {
            let _ = p.join();
        }
    }
    result
}

/// Waits until every child has exited successfully, or one has failed.
fn supervise(children: &mut [Child], stop: Option<&AtomicBool>) -> Result<(), LaunchError> {
    let mut done = vec![false; children.len()];
    loop {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(LaunchError::Interrupted);
        }
        let mut failed: Vec<(usize, ExitStatus)> = Vec::new();
        for (rank, child) in children.iter_mut().enumerate() {
            if done[rank] {
                continue;
            }
            match child.try_wait() {
                Ok(Some(status)) => {
                    done[rank] = true;
                    if !status.success() {
                        failed.push((rank, status));
                    }
                }
                Ok(None) => {}
                Err(_) => {
                    // Cannot tell; treat as failed rather than wait forever.
                    done[rank] = true;
                    return Err(LaunchError::RankFailed { rank, status: "could not be waited for".into() });
                }
            }
        }
        if let Some(&(rank, status)) = failed.iter().find(|(_, st)| killed_by_signal(st)).or(failed.first()) {
            return Err(LaunchError::RankFailed { rank, status: describe_status(&status) });
        }
        if done.iter().all(|&d| d) {
            return Ok(());
        }
        thread::sleep(POLL);
    }
}

/// Stops the children still running: with `wait_first`, gives them [`STOP_GRACE`] to exit by
/// themselves (a rank whose peer died notices within milliseconds and exits with an error
/// naming the peer and the operation, which is worth keeping); then sends SIGTERM, waits up
/// to [`TERM_GRACE`], kills the rest and reaps them all.
fn stop_all(children: &mut [Child], wait_first: bool) {
    if wait_first {
        wait_while_running(children, STOP_GRACE);
    }
    for child in children.iter_mut() {
        if let Ok(None) = child.try_wait() {
            terminate(child);
        }
    }
    wait_while_running(children, TERM_GRACE);
    for child in children.iter_mut() {
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
    }
    for child in children.iter_mut() {
        let _ = child.wait();
    }
}

fn wait_while_running(children: &mut [Child], limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit && children.iter_mut().any(|c| matches!(c.try_wait(), Ok(None))) {
        thread::sleep(POLL);
    }
}

/// Asks a child to exit: SIGTERM where there are signals, else the only stop std offers.
fn terminate(child: &mut Child) {
    #[cfg(unix)]
    {
        let _ = rustix::process::kill_process(rustix::process::Pid::from_child(child), rustix::process::Signal::TERM);
    }
    #[cfg(not(unix))]
    {
        let _ = child.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_parses_v4_v6_and_names() {
        assert_eq!(parse_master("127.0.0.1:29500").unwrap(), ("127.0.0.1".into(), 29500));
        assert_eq!(parse_master("[::1]:7").unwrap(), ("::1".into(), 7));
        assert_eq!(parse_master("node-1:80").unwrap(), ("node-1".into(), 80));
        for bad in ["", "host", ":80", "host:", "host:99999", "host:x"] {
            let e = parse_master(bad).unwrap_err().to_string();
            assert!(e.contains("HOST:PORT"), "{bad}: {e}");
        }
        let e = parse_master("127.0.0.1:0").unwrap_err().to_string();
        assert!(e.contains("port 0"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_failed_rank_is_started_again_up_to_max_restarts() {
        let dir = marks_dir("restart");
        // Rank 1 fails the first two times it starts (counted in a file), then succeeds.
        let script = r#"
            if [ $RANK = 1 ]; then
                n=$(cat "$MARKS/count" 2>/dev/null || echo 0); echo $((n + 1)) > "$MARKS/count"
                [ $n -ge 2 ] || exit 5
            fi
            sleep 0.3
        "#;
        let mut spec = LaunchSpec::new(3, "sh", ["-c", script]);
        spec.env.push(("MARKS".into(), dir.clone().into()));
        spec.max_restarts = 2;
        launch(&spec, |_, _, _| {}).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("count")).unwrap().trim(), "3");
        // One restart fewer than it needs: the job fails, naming the rank.
        std::fs::remove_file(dir.join("count")).unwrap();
        spec.max_restarts = 1;
        let err = launch(&spec, |_, _, _| {}).unwrap_err();
        assert!(matches!(&err, LaunchError::RankFailed { rank: 1, .. }), "{err}");
        // Rank 0 is never restarted.
        let mut spec = LaunchSpec::new(2, "sh", ["-c", "[ $RANK = 0 ] && exit 4; sleep 5"]);
        spec.max_restarts = 3;
        let err = launch(&spec, |_, _, _| {}).unwrap_err();
        assert!(matches!(&err, LaunchError::RankFailed { rank: 0, .. }), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn zero_ranks_is_refused() {
        let spec = LaunchSpec::new(0, "true", Vec::<OsString>::new());
        assert!(matches!(launch(&spec, |_, _, _| {}), Err(LaunchError::Invalid(_))));
    }

    #[cfg(unix)]
    #[test]
    fn lines_are_passed_with_rank_and_failures_name_the_rank() {
        use std::sync::Mutex;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let spec = LaunchSpec::new(3, "sh", ["-c", "echo out $RANK/$WORLD_SIZE; echo err $MASTER_ADDR >&2"]);
        let store = Arc::clone(&lines);
        launch(&spec, move |rank, stream, line| {
            store.lock().unwrap().push((rank, stream, String::from_utf8_lossy(line).into_owned()))
        })
        .unwrap();
        let mut lines = lines.lock().unwrap().clone();
        lines.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(&b.0)));
        assert_eq!(lines[0], (0, Stream::Stderr, "err 127.0.0.1".into()));
        assert_eq!(lines[3], (0, Stream::Stdout, "out 0/3".into()));
        assert_eq!(lines[5], (2, Stream::Stdout, "out 2/3".into()));

        let start = std::time::Instant::now();
        let spec = LaunchSpec::new(3, "sh", ["-c", "if [ $RANK = 1 ]; then exit 3; fi; exec sleep 30"]);
        let err = launch(&spec, |_, _, _| {}).unwrap_err();
        assert!(matches!(&err, LaunchError::RankFailed { rank: 1, status } if status == "exited with code 3"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10), "the sleeping ranks were not stopped");
    }

    /// A rank that hangs after another failed: rank 0 cleans up on SIGTERM (and records it),
    /// rank 2 ignores SIGTERM and must be killed after the grace period.
    #[cfg(unix)]
    fn stubborn_world(marks: &std::path::Path) -> LaunchSpec {
        let script = r#"
            case $RANK in
                0) trap 'echo term > "$MARKS/0"; exit 0' TERM ;;
                1) sleep 0.3; exit 3 ;;
                2) trap '' TERM ;;
            esac
            while true; do sleep 0.05; done
        "#;
        let mut spec = LaunchSpec::new(3, "sh", ["-c", script]);
        spec.env.push(("MARKS".into(), marks.into()));
        spec
    }

    #[cfg(unix)]
    fn marks_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("asgd-launch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[cfg(unix)]
    #[test]
    fn failed_launch_sends_sigterm_first_then_sigkill() {
        let dir = marks_dir("term");
        let start = Instant::now();
        let err = launch(&stubborn_world(&dir), |_, _, _| {}).unwrap_err();
        let took = start.elapsed();
        assert!(matches!(&err, LaunchError::RankFailed { rank: 1, .. }), "{err}");
        assert_eq!(std::fs::read_to_string(dir.join("0")).ok().as_deref(), Some("term\n"), "rank 0 got no SIGTERM");
        // Rank 2 ignored SIGTERM: it was killed once the grace period ran out, not before.
        assert!(took >= STOP_GRACE + TERM_GRACE, "SIGKILL came after {took:?}");
        assert!(took < STOP_GRACE + TERM_GRACE + Duration::from_secs(4), "stopping took {took:?}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[cfg(unix)]
    #[test]
    fn the_stop_flag_terminates_every_rank_at_once() {
        let dir = marks_dir("stop");
        let mut spec = stubborn_world(&dir);
        // No rank fails by itself: the flag (what Ctrl-C sets) is the only reason to stop.
        spec.args = vec![
            "-c".into(),
            "trap 'echo term > \"$MARKS/$RANK\"; exit 0' TERM; while true; do sleep 0.05; done".into(),
        ];
        let flag = Arc::new(AtomicBool::new(false));
        spec.stop = Some(Arc::clone(&flag));
        let setter = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            flag.store(true, Ordering::Relaxed);
        });
        let start = Instant::now();
        let err = launch(&spec, |_, _, _| {}).unwrap_err();
        setter.join().unwrap();
        assert!(matches!(err, LaunchError::Interrupted), "{err}");
        assert!(start.elapsed() < STOP_GRACE, "the ranks were given time to exit first: {:?}", start.elapsed());
        for rank in 0..3 {
            assert!(dir.join(rank.to_string()).exists(), "rank {rank} got no SIGTERM");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
