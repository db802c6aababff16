//! asgd-comm-worker: joins a job from the environment (RANK, WORLD_SIZE, MASTER_ADDR,
//! MASTER_PORT, ASGD_*) and runs collectives. The multi-process tests start it; it is also a
//! quick way to try the comm layer by hand:
//!
//! ```text
//! asgd-comm-worker check [--sizes 1,7,1001]   every collective, checked against an f64 reference
//! asgd-comm-worker loop [--elems N]           all-reduce forever; prints "ready" once going
//! asgd-comm-worker stall RANK [--elems N]     like loop, but RANK stops calling after 3 rounds
//! asgd-comm-worker join                       join, barrier, exit
//! asgd-comm-worker mismatch                   all-reduce with a different length on each rank
//! ```
//!
//! Exit status 0 means every check passed; errors go to stderr as one line.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use asgd_comm::{CommError, Communicator};

/// Rank `rank`'s input at index `i`: fractional values of both signs, so that a missing or
/// doubled contribution is far outside rounding error.
fn input(rank: usize, i: usize) -> f32 {
    ((rank * 7 + i * 13) % 101) as f32 * 0.37 - 15.0
}

/// Checks `got` against `want` (an f64 reference) with a bound on f32 summation error over
/// `terms` terms whose absolute values sum to `abs[i]`.
fn check_close(what: &str, got: &[f32], want: &[f64], abs: &[f64], terms: usize) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: length {} where {} was expected", got.len(), want.len()));
    }
    for i in 0..got.len() {
        let tol = 2.0 * terms as f64 * f32::EPSILON as f64 * abs[i] + 1e-6;
        if (got[i] as f64 - want[i]).abs() > tol {
            return Err(format!(
                "{what}: element {i} is {} but the reference is {} (tolerance {tol:e})",
                got[i], want[i]
            ));
        }
    }
    Ok(())
}

fn check_all(comm: &Communicator, sizes: &[usize]) -> Result<(), String> {
    let (n, rank) = (comm.world_size(), comm.rank());
    let e = |e: CommError| e.to_string();
    for &len in sizes {
        let want: Vec<f64> = (0..len).map(|i| (0..n).map(|r| input(r, i) as f64).sum()).collect();
        let abs: Vec<f64> = (0..len).map(|i| (0..n).map(|r| (input(r, i) as f64).abs()).sum()).collect();
        let mine: Vec<f32> = (0..len).map(|i| input(rank, i)).collect();

        let mut buf = mine.clone();
        comm.all_reduce(&mut buf).map_err(e)?;
        check_close(&format!("all_reduce len={len}"), &buf, &want, &abs, n)?;

        let mut buf = mine.clone();
        comm.average(&mut buf).map_err(e)?;
        let mean: Vec<f64> = want.iter().map(|w| w / n as f64).collect();
        let abs_mean: Vec<f64> = abs.iter().map(|a| a / n as f64).collect();
        check_close(&format!("average len={len}"), &buf, &mean, &abs_mean, n + 1)?;

        for root in 0..n {
            let mut buf = if rank == root { (0..len).map(|i| input(root, i)).collect() } else { vec![-1.0; len] };
            comm.broadcast(&mut buf, root).map_err(e)?;
            let want: Vec<f32> = (0..len).map(|i| input(root, i)).collect();
            if buf != want {
                return Err(format!("broadcast from {root} len={len}: wrong values"));
            }
        }

        let gathered = comm.all_gather(&mine).map_err(e)?;
        let want_gather: Vec<f32> = (0..n).flat_map(|r| (0..len).map(move |i| input(r, i))).collect();
        if gathered != want_gather {
            return Err(format!("all_gather len={len}: wrong values"));
        }
        comm.barrier().map_err(e)?;
        println!("rank {rank}: ok len={len}");
    }

    // Non-blocking: several collectives in flight at once, collected in another order.
    let len = sizes.iter().copied().max().unwrap_or(1);
    let mine: Vec<f32> = (0..len).map(|i| input(rank, i)).collect();
    let sum = comm.start_all_reduce(mine.clone());
    let bcast = comm.start_broadcast(if rank == 0 { mine.clone() } else { vec![0.0; len] }, 0);
    let barrier = comm.start_barrier();
    let gather = comm.start_all_gather(vec![rank as f32]);
    let mut busy = 0.0f64;
    while !gather.is_done() {
        busy += 1.0; // stands in for training work
        std::hint::black_box(busy);
    }
    let gather = gather.wait().map_err(e)?;
    if gather != (0..n).map(|r| r as f32).collect::<Vec<_>>() {
        return Err(format!("non-blocking all_gather: {gather:?}"));
    }
    barrier.wait().map_err(e)?;
    let bcast = bcast.wait().map_err(e)?;
    if bcast != (0..len).map(|i| input(0, i)).collect::<Vec<_>>() {
        return Err("non-blocking broadcast: wrong values".into());
    }
    let sum = match sum.try_wait() {
        Ok(result) => result.map_err(e)?,
        Err(_) => return Err("try_wait: the all-reduce is not done although later collectives are".into()),
    };
    let want: Vec<f64> = (0..len).map(|i| (0..n).map(|r| input(r, i) as f64).sum()).collect();
    let abs: Vec<f64> = (0..len).map(|i| (0..n).map(|r| (input(r, i) as f64).abs()).sum()).collect();
    check_close("non-blocking all_reduce", &sum, &want, &abs, n)?;
    println!("rank {rank}: ok non-blocking");
    Ok(())
}

fn run_loop(comm: &Communicator, elems: usize, stalled: Option<usize>) -> Result<(), String> {
    let rank = comm.rank();
    let mut buf = vec![0.0f32; elems];
    let mut iters = 0u64;
    let mut last_ok = Instant::now();
    loop {
        if let Err(err) = comm.all_reduce(&mut buf) {
            return Err(format!(
                "{err} (after {iters} all-reduces, {} ms after the last success)",
                last_ok.elapsed().as_millis()
            ));
        }
        last_ok = Instant::now();
        iters += 1;
        if iters == 3 {
            println!("rank {rank}: ready");
            if stalled == Some(rank) {
                // Hang mid-job with the sockets open, as a stuck process would.
                std::thread::sleep(Duration::from_secs(60));
                return Ok(());
            }
        }
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("check");
    let comm = match Communicator::from_env() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let elems = flag(&args, "--elems").and_then(|v| v.parse().ok()).unwrap_or(1 << 20);
    let result = match mode {
        "check" => {
            let sizes: Vec<usize> = flag(&args, "--sizes")
                .unwrap_or_else(|| "1,7,1001,100003".into())
                .split(',')
                .filter_map(|s| s.parse().ok())
                .collect();
            check_all(&comm, &sizes)
        }
        "loop" => run_loop(&comm, elems, None),
        "stall" => run_loop(&comm, elems, args.get(1).and_then(|r| r.parse().ok())),
        "join" => comm.barrier().map(|()| println!("rank {}: joined", comm.rank())).map_err(|e| e.to_string()),
        "mismatch" => {
            let mut buf = vec![1.0; 10 + 2 * comm.rank()];
            comm.all_reduce(&mut buf).map_err(|e| e.to_string())
        }
        other => Err(format!("unknown mode {other:?}; see the doc comment of asgd-comm-worker")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
