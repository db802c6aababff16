//! The all-reduce benchmark behind `asgd bench allreduce`.
//!
//! One program plays every part. Run plainly, it is the orchestrator: it re-executes itself
//! (the `program` and `args` given to [`run`]) as rank processes through [`crate::launch`],
//! with [`ROLE_ENV`] saying which part each plays:
//!
//! - `tcp-stream`: two processes, one plain TCP stream from one to the other; the ceiling of a
//!   single link on this machine;
//! - `tcp-ring`: `n` processes, each streaming to its successor while receiving from its
//!   predecessor over plain TCP; the ceiling for a ring of `n`, since a ring all-reduce makes
//!   every rank send and receive at once;
//! - `allreduce`: `n` processes timing [`Communicator::all_reduce`] for each size.
//!
//! Run as a rank of a job (e.g. under `asgd launch`), it is an `allreduce` rank of that job
//! and rank 0 prints the table itself.
//!
//! Each all-reduce run is made with frames sealed (ChaCha20-Poly1305), unsealed, or both, as
//! [`BenchOptions::encryption`] says; both ranks of a pair of rows hold the same secret (the
//! caller's `ASGD_SECRET`, or a random one for the run), so the rows differ only in sealing.
//!
//! Bus bandwidth is `2(n-1)/n * bytes / time`, the bytes each rank sends per second in a ring
//! all-reduce, so it compares directly with the plain-TCP throughput per rank.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use crate::config::CommConfig;
use crate::error::CommError;
use crate::launch::{self, LaunchError, LaunchSpec, Stream};
use crate::transport::socket::{accept_until, connect_until, listen, tune};
use crate::Communicator;

/// The variable that tells a re-executed process which part it plays.
pub const ROLE_ENV: &str = "ASGD_BENCH_ROLE";

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// Buffer sizes in bytes (multiples of 4).
    pub sizes: Vec<usize>,
    /// Rank counts to run; each needs that many processes.
    pub ranks: Vec<usize>,
    /// Timed iterations per size; `None` picks enough to move about 512 MiB (3 to 1000).
    pub iters: Option<usize>,
    /// Bytes each plain-TCP ceiling run sends per process.
    pub stream_bytes: usize,
    /// Memory the plain-TCP runs send from and receive into, cycled through in writes of
    /// the chunk size; `None` reuses one chunk-sized buffer, which stays in cache (as iperf
    /// does). A buffer as large as the all-reduce's shows what memory traffic costs.
    pub stream_buffer_bytes: Option<usize>,
    /// Which all-reduce runs to make: frames sealed, unsealed, or one of each.
    pub encryption: Encryption,
}

/// Whether the all-reduce runs seal their frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// Authenticated, frames unsealed (`ASGD_COMM_ENCRYPT=0`).
    Off,
    /// Authenticated, every frame sealed (the default whenever there is a secret).
    On,
    /// One run of each, to show what sealing costs.
    Both,
}

impl Encryption {
    /// Parses `off`, `on` or `both`. Errors: a sentence naming the value.
    pub fn parse(s: &str) -> Result<Encryption, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "0" => Ok(Encryption::Off),
            "on" | "1" => Ok(Encryption::On),
            "both" => Ok(Encryption::Both),
            _ => Err(format!("{s:?} is not an encryption choice; use off, on or both")),
        }
    }

    fn modes(self) -> &'static [bool] {
        match self {
            Encryption::Off => &[false],
            Encryption::On => &[true],
            Encryption::Both => &[false, true],
        }
    }
}

impl BenchOptions {
    /// Sizes from `min` to `max` bytes in powers of 4, ranks 2, 4 and 8, and ceiling streams
    /// of four times the largest size (64 MiB to 1 GiB).
    pub fn new(min: usize, max: usize) -> BenchOptions {
        BenchOptions::with_sizes(size_ladder(min, max))
    }

    /// These exact sizes, with the other defaults of [`BenchOptions::new`].
    pub fn with_sizes(sizes: Vec<usize>) -> BenchOptions {
        let largest = sizes.iter().copied().max().unwrap_or(0);
        BenchOptions {
            sizes,
            ranks: vec![2, 4, 8],
            iters: None,
            stream_bytes: (4 * largest).clamp(64 * MIB, GIB),
            stream_buffer_bytes: None,
            encryption: Encryption::Both,
        }
    }
}

impl Default for BenchOptions {
    /// 4 KiB to 256 MiB.
    fn default() -> Self {
        BenchOptions::new(4 * KIB, 256 * MIB)
    }
}

/// Why the benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A collective or the rendezvous failed.
    #[error(transparent)]
    Comm(#[from] CommError),
    /// The rank processes could not be run or one failed.
    #[error("a benchmark run failed: {0}")]
    Launch(#[from] LaunchError),
    /// A socket of the plain-TCP ceiling failed.
    #[error("the plain TCP ceiling run failed: {0}")]
    Io(#[from] io::Error),
    /// Bad options, or a result that fails its check.
    #[error("{0}")]
    Invalid(String),
}

/// Powers of 4 times `min` up to `max`, plus `max` itself when the ladder misses it.
pub fn size_ladder(min: usize, max: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut s = min.max(4);
    while s <= max {
        sizes.push(s);
        s = match s.checked_mul(4) {
            Some(next) => next,
            None => break,
        };
    }
    if sizes.last() != Some(&max) && max >= min {
        sizes.push(max);
    }
    sizes
}

/// Parses `4096`, `4K`, `4KiB`, `1M`, `1MiB`, `1G`, `1GiB` (binary units) into bytes.
///
/// Errors: a sentence naming the value and the accepted forms.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => KIB,
        "m" | "mib" | "mb" => MIB,
        "g" | "gib" | "gb" => GIB,
        _ => 0,
    };
    let n: usize = num.parse().map_err(|_| format!("{s:?} is not a size; write e.g. 4096, 64KiB or 16MiB"))?;
    if mult == 0 {
        return Err(format!("{s:?} has an unknown unit; use KiB, MiB or GiB"));
    }
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// `4 KiB`, `16 MiB`, or bytes when not a whole unit.
pub fn format_size(bytes: usize) -> String {
    match bytes {
        b if b >= GIB && b % GIB == 0 => format!("{} GiB", b / GIB),
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} B"),
    }
}

/// Which part this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Orchestrate,
    AllReduce { table: bool },
    TcpStream,
    TcpRing,
}

fn role_from_env() -> Result<Role, BenchError> {
    match std::env::var(ROLE_ENV).ok().as_deref() {
        Some("allreduce") => Ok(Role::AllReduce { table: false }),
        Some("tcp-stream") => Ok(Role::TcpStream),
        Some("tcp-ring") => Ok(Role::TcpRing),
        Some(other) => Err(BenchError::Invalid(format!("{ROLE_ENV} is {other:?}; unset it to run the benchmark"))),
        None if CommConfig::from_env()?.world_size > 1 => Ok(Role::AllReduce { table: true }),
        None => Ok(Role::Orchestrate),
    }
}

/// Runs the benchmark, or this process's part of it (see the module docs). `program` and
/// `args` re-execute the current command, e.g. `current_exe()` and `bench allreduce ...`.
///
/// Errors: [`BenchError`].
pub fn run(opts: &BenchOptions, program: &Path, args: &[OsString]) -> Result<(), BenchError> {
    if opts.sizes.is_empty() || opts.sizes.iter().any(|&s| s < 4 || s % 4 != 0) {
        return Err(BenchError::Invalid("every size must be a positive multiple of 4 bytes (whole f32s)".into()));
    }
    if opts.ranks.iter().any(|&n| n < 2) {
        return Err(BenchError::Invalid("every rank count must be at least 2".into()));
    }
    match role_from_env()? {
        Role::Orchestrate => orchestrate(opts, program, args),
        Role::AllReduce { table } => allreduce_rank(opts, table),
        Role::TcpStream => tcp_stream_rank(opts),
        Role::TcpRing => tcp_ring_rank(opts),
    }
}

/// Runs `n` ranks of this program in `role`; returns rank 0's JSON lines. Other output of the
/// ranks goes to stderr, prefixed.
fn run_ranks(
    n: usize,
    role: &str,
    env: &[(OsString, OsString)],
    program: &Path,
    args: &[OsString],
) -> Result<Vec<String>, BenchError> {
    let mut spec = LaunchSpec::new(n, program, args.iter().cloned());
    spec.env.extend(env.iter().cloned());
    spec.env.push((ROLE_ENV.into(), role.into()));
    let json = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&json);
    launch::launch(&spec, move |rank, stream, line| {
        if rank == 0 && stream == Stream::Stdout && line.starts_with(b"{") {
            if let Ok(mut j) = store.lock() {
                j.push(String::from_utf8_lossy(line).into_owned());
            }
        } else {
            launch::print_prefixed(rank, Stream::Stderr, line);
        }
    })?;
    let lines = json.lock().map(|j| j.clone()).unwrap_or_default();
    Ok(lines)
}

/// The number after `"key":` in one of our own JSON lines.
fn json_number(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

fn gbps(bytes: f64, seconds: f64) -> f64 {
    bytes / seconds / 1e9
}

const TABLE_HEADER: &str = "ranks       size  iters  latency (us)  algbw (GB/s)  busbw (GB/s)";

fn table_row(ranks: usize, bytes: usize, iters: usize, seconds: f64) -> String {
    let bus = 2.0 * (ranks as f64 - 1.0) / ranks as f64;
    format!(
        "{ranks:>5}  {:>9}  {iters:>5}  {:>12.1}  {:>12.3}  {:>12.3}",
        format_size(bytes),
        seconds * 1e6,
        gbps(bytes as f64, seconds),
        gbps(bus * bytes as f64, seconds)
    )
}

fn orchestrate(opts: &BenchOptions, program: &Path, args: &[OsString]) -> Result<(), BenchError> {
    let cfg = CommConfig::from_env()?;
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# asgd bench allreduce: loopback TCP, {cpus} CPUs, chunk {}, checksum {} (unencrypted rows), encryption {}, socket buffers {}, plain TCP from {}",
        format_size(cfg.chunk_bytes),
        if cfg.checksum { "on" } else { "off" },
        match opts.encryption {
            Encryption::Off => "off",
            Encryption::On => "on (ChaCha20-Poly1305)",
            Encryption::Both => "off and on (ChaCha20-Poly1305)",
        },
        cfg.socket_buffer_bytes.map_or_else(|| "kernel autotuning".to_owned(), format_size),
        opts.stream_buffer_bytes.map_or_else(|| "one chunk-sized buffer".to_owned(), |b| format!("a {} buffer", format_size(b))),
    );
    if opts.ranks.iter().any(|&n| n > cpus) {
        println!("# more ranks than CPUs: those runs measure CPU contention as much as the transport");
    }
    let mut json = Vec::new();

    let stream = run_ranks(2, "tcp-stream", &[], program, args)?;
    let stream_gbps = stream.first().and_then(|l| json_number(l, "gbps")).unwrap_or(f64::NAN);
    println!("plain TCP, one stream between 2 processes:     {stream_gbps:>6.3} GB/s");
    json.extend(stream);

    let mut ring_gbps = Vec::new();
    for &n in &opts.ranks {
        let ring = run_ranks(n, "tcp-ring", &[], program, args)?;
        let g = ring.first().and_then(|l| json_number(l, "gbps")).unwrap_or(f64::NAN);
        println!("plain TCP ring of {n} (send + receive at once): {g:>6.3} GB/s per rank");
        ring_gbps.push((n, g));
        json.extend(ring);
    }

    println!();
    let secret = match &cfg.secret {
        Some(_) => None,
        None => Some(("ASGD_SECRET".into(), random_secret()?.into())),
    };
    println!("{TABLE_HEADER}  % of 1 stream  % of TCP ring  encrypted");
    for &n in &opts.ranks {
        let ring = ring_gbps.iter().find(|(m, _)| *m == n).map_or(f64::NAN, |(_, g)| *g);
        for &sealed in opts.encryption.modes() {
            let mut env: Vec<(OsString, OsString)> = secret.iter().cloned().collect();
            env.push(("ASGD_COMM_ENCRYPT".into(), if sealed { "1" } else { "0" }.into()));
            for line in run_ranks(n, "allreduce", &env, program, args)? {
                let (Some(bytes), Some(iters), Some(us)) =
                    (json_number(&line, "bytes"), json_number(&line, "iters"), json_number(&line, "latency_us"))
                else {
                    continue;
                };
                let bus = json_number(&line, "busbw_gbps").unwrap_or(f64::NAN);
                println!(
                    "{}  {:>12.0}%  {:>12.0}%  {:>9}",
                    table_row(n, bytes as usize, iters as usize, us / 1e6),
                    100.0 * bus / stream_gbps,
                    100.0 * bus / ring,
                    if sealed { "yes" } else { "no" }
                );
                json.push(line);
            }
        }
    }
    println!();
    for line in json {
        println!("{line}");
    }
    Ok(())
}

/// A secret for the benchmark's own ranks, when the caller gave none: 32 random hex digits.
fn random_secret() -> Result<String, BenchError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| BenchError::Invalid(format!("the OS gave no random bytes for the benchmark's secret: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Iterations that move about 512 MiB, between 3 and 1000.
fn auto_iters(bytes: usize) -> usize {
    (512 * MIB / bytes.max(1)).clamp(3, 1000)
}

fn allreduce_rank(opts: &BenchOptions, table: bool) -> Result<(), BenchError> {
    let comm = Communicator::from_env()?;
    let cfg = CommConfig::from_env()?;
    let (n, rank) = (comm.world_size(), comm.rank());
    if table {
        eprintln!("rank {rank} of {n} (pid {}) joined", std::process::id());
        if rank == 0 {
            println!("{TABLE_HEADER}");
        }
    }
    for &bytes in &opts.sizes {
        let elems = bytes / 4;
        // Check before timing: a sum of ones is exactly n everywhere.
        let mut buf = vec![1.0f32; elems];
        comm.all_reduce(&mut buf)?;
        if let Some(i) = buf.iter().position(|&x| x != n as f32) {
            return Err(BenchError::Invalid(format!(
                "all_reduce of {bytes} bytes gave {} at element {i}, not {n}",
                buf[i]
            )));
        }
        // Zeros keep the values finite however many times they are summed.
        buf.fill(0.0);
        let iters = opts.iters.unwrap_or_else(|| auto_iters(bytes)).max(1);
        comm.all_reduce(&mut buf)?;
        comm.barrier()?;
        let start = Instant::now();
        for _ in 0..iters {
            comm.all_reduce(&mut buf)?;
        }
        let mine = start.elapsed().as_secs_f64() / iters as f64;
        // The slowest rank's time is the collective's time.
        let seconds = comm.all_gather(&[mine as f32])?.into_iter().fold(0.0f32, f32::max) as f64;
        if rank == 0 {
            let bus = 2.0 * (n as f64 - 1.0) / n as f64;
            if table {
                println!("{}", table_row(n, bytes, iters, seconds));
            }
            println!(
                "{{\"bench\":\"allreduce\",\"ranks\":{n},\"bytes\":{bytes},\"iters\":{iters},\"latency_us\":{:.3},\"algbw_gbps\":{:.4},\"busbw_gbps\":{:.4},\"chunk_bytes\":{},\"checksum\":{},\"encrypted\":{}}}",
                seconds * 1e6,
                gbps(bytes as f64, seconds),
                gbps(bus * bytes as f64, seconds),
                cfg.chunk_bytes,
                cfg.checksum,
                cfg.seals()
            );
            let _ = io::stdout().flush();
        }
    }
    Ok(())
}

/// A listening socket on the loopback (or the configured bind address), with the same
/// socket options as the comm layer, and its port gathered by every rank.
fn exchange_ports(
    comm: &Communicator,
    cfg: &CommConfig,
) -> Result<(std::net::TcpListener, Vec<SocketAddr>), BenchError> {
    let ip = cfg.bind_addr.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let listener = listen(SocketAddr::new(ip, 0), cfg.socket_buffer_bytes)?;
    let port = listener.local_addr()?.port();
    // Ports are below 2^16, exact in f32.
    let ports = comm.all_gather(&[f32::from(port)])?;
    let addrs = ports.into_iter().map(|p| SocketAddr::new(ip, p as u16)).collect();
    Ok((listener, addrs))
}

/// Memory for a plain-TCP run: `buffer` bytes (at least one `piece`), moved in `piece`s.
struct StreamBuffer {
    mem: Vec<u8>,
    piece: usize,
}

impl StreamBuffer {
    fn new(total: usize, piece: usize, buffer: Option<usize>) -> StreamBuffer {
        let piece = piece.min(total).max(1);
        StreamBuffer { mem: vec![7u8; buffer.unwrap_or(piece).max(piece)], piece }
    }

    /// Moves `total` bytes with `io` (one write or read of a piece), cycling through memory.
    fn stream(&mut self, total: usize, mut io: impl FnMut(&mut [u8]) -> io::Result<()>) -> io::Result<()> {
        let (mut left, mut at) = (total, 0);
        while left > 0 {
            let n = left.min(self.piece);
            if at + n > self.mem.len() {
                at = 0;
            }
            io(&mut self.mem[at..at + n])?;
            at += n;
            left -= n;
        }
        Ok(())
    }
}

fn accept_one(listener: &std::net::TcpListener, cfg: &CommConfig) -> Result<std::net::TcpStream, BenchError> {
    accept_until(listener, Instant::now() + cfg.timeout, None)?
        .map(|(s, _)| s)
        .ok_or_else(|| BenchError::Invalid("no peer connected for the plain TCP run".into()))
}

/// Rank 0 streams `stream_bytes` to rank 1 over plain TCP, then waits for a one-byte ack.
fn tcp_stream_rank(opts: &BenchOptions) -> Result<(), BenchError> {
    let comm = Communicator::from_env()?;
    let cfg = CommConfig::from_env()?;
    let (listener, addrs) = exchange_ports(&comm, &cfg)?;
    let total = opts.stream_bytes;
    match comm.rank() {
        0 => {
            let mut s = connect_until(&addrs[1..2], cfg.socket_buffer_bytes, Instant::now() + cfg.timeout)?;
            tune(&s, cfg.timeout)?;
            comm.barrier()?;
            let mut mem = StreamBuffer::new(total, cfg.chunk_bytes, opts.stream_buffer_bytes);
            let start = Instant::now();
            mem.stream(total, |piece| s.write_all(piece))?;
            s.read_exact(&mut [0u8; 1])?;
            let seconds = start.elapsed().as_secs_f64();
            println!(
                "{{\"bench\":\"tcp_stream\",\"processes\":2,\"bytes\":{total},\"seconds\":{seconds:.4},\"gbps\":{:.4}}}",
                gbps(total as f64, seconds)
            );
        }
        1 => {
            let mut s = accept_one(&listener, &cfg)?;
            tune(&s, cfg.timeout)?;
            let mut mem = StreamBuffer::new(total, cfg.chunk_bytes, opts.stream_buffer_bytes);
            comm.barrier()?;
            mem.stream(total, |piece| s.read_exact(piece))?;
            s.write_all(&[1])?;
        }
        _ => comm.barrier()?,
    }
    Ok(())
}

/// Every rank streams `stream_bytes` to its successor while reading as much from its
/// predecessor; the slowest rank's time gives the per-rank throughput.
fn tcp_ring_rank(opts: &BenchOptions) -> Result<(), BenchError> {
    let comm = Communicator::from_env()?;
    let cfg = CommConfig::from_env()?;
    let (n, rank) = (comm.world_size(), comm.rank());
    let (listener, addrs) = exchange_ports(&comm, &cfg)?;
    let next_addr = addrs[(rank + 1) % n];
    let (next, prev) = thread::scope(|s| {
        let acceptor = s.spawn(|| accept_one(&listener, &cfg));
        let next = connect_until(&[next_addr], cfg.socket_buffer_bytes, Instant::now() + cfg.timeout);
        (next, acceptor.join())
    });
    let mut next = next?;
    let mut prev = prev.map_err(|_| BenchError::Invalid("the accepting thread panicked".into()))??;
    tune(&next, cfg.timeout)?;
    tune(&prev, cfg.timeout)?;
    let total = opts.stream_bytes;
    let mut out = StreamBuffer::new(total, cfg.chunk_bytes, opts.stream_buffer_bytes);
    let mut inp = StreamBuffer::new(total, cfg.chunk_bytes, opts.stream_buffer_bytes);
    comm.barrier()?;
    let start = Instant::now();
    let (sent, received) = thread::scope(|s| {
        let sender = s.spawn(|| out.stream(total, |piece| next.write_all(piece)));
        let received = inp.stream(total, |piece| prev.read_exact(piece));
        (sender.join(), received)
    });
    sent.map_err(|_| BenchError::Invalid("the sending thread panicked".into()))??;
    received?;
    let mine = start.elapsed().as_secs_f64();
    let seconds = comm.all_gather(&[mine as f32])?.into_iter().fold(0.0f32, f32::max) as f64;
    if rank == 0 {
        println!(
            "{{\"bench\":\"tcp_ring\",\"ranks\":{n},\"bytes_per_rank\":{total},\"seconds\":{seconds:.4},\"gbps\":{:.4}}}",
            gbps(total as f64, seconds)
        );
    }
    // Keep the sockets open until everyone has finished reading.
    comm.barrier()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("16M"), Ok(16 * MIB));
        assert_eq!(parse_size(" 1 GiB "), Ok(GIB));
        assert!(parse_size("4 parsecs").unwrap_err().contains("unit"));
        assert!(parse_size("lots").is_err());
        assert_eq!(format_size(4096), "4 KiB");
        assert_eq!(format_size(256 * MIB), "256 MiB");
        assert_eq!(format_size(1000), "1000 B");
    }

    #[test]
    fn ladder_is_powers_of_four_and_ends_at_max() {
        assert_eq!(size_ladder(4 * KIB, 256 * MIB).len(), 9);
        assert_eq!(size_ladder(4 * KIB, 64 * KIB), vec![4 * KIB, 16 * KIB, 64 * KIB]);
        assert_eq!(size_ladder(4 * KIB, 32 * KIB), vec![4 * KIB, 16 * KIB, 32 * KIB]);
        assert_eq!(size_ladder(4 * KIB, 4 * KIB), vec![4 * KIB]);
    }

    #[test]
    fn encryption_choices_parse() {
        assert_eq!(Encryption::parse("both"), Ok(Encryption::Both));
        assert_eq!(Encryption::parse("OFF"), Ok(Encryption::Off));
        assert_eq!(Encryption::Both.modes(), &[false, true]);
        assert!(Encryption::parse("maybe").unwrap_err().contains("off, on or both"));
    }

    #[test]
    fn json_numbers_are_found() {
        let l = "{\"bench\":\"allreduce\",\"ranks\":4,\"bytes\":4096,\"busbw_gbps\":1.5000}";
        assert_eq!(json_number(l, "ranks"), Some(4.0));
        assert_eq!(json_number(l, "busbw_gbps"), Some(1.5));
        assert_eq!(json_number(l, "missing"), None);
    }
}
