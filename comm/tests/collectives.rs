//! Every collective across real processes on 127.0.0.1, checked in each worker against an
//! f64 reference (see src/bin/worker.rs), for 1 to 8 ranks and odd sizes, including sizes
//! smaller than the world and sizes that span many chunks.

mod common;

use common::{assert_ok, run_world};

/// Sizes: 1 and 3 (below most world sizes), 7, 1001, and 100_003 (past the one-thread limit,
/// so the pipelined two-thread path runs).
const SIZES: &str = "1,3,7,1001,100003";

fn check_world(n: usize, env: &[(&str, &str)]) {
    let (result, lines) = run_world(n, &["check", "--sizes", SIZES], env);
    assert_ok(&result, &lines);
    for rank in 0..n {
        for len in SIZES.split(',') {
            let want = format!("rank {rank}: ok len={len}");
            assert!(lines.iter().any(|(r, _, l)| *r == rank && *l == want), "missing {want:?}");
        }
        let want = format!("rank {rank}: ok non-blocking");
        assert!(lines.iter().any(|(r, _, l)| *r == rank && *l == want), "missing {want:?}");
    }
}

#[test]
fn world_of_one_needs_no_network() {
    check_world(1, &[]);
}

#[test]
fn two_ranks() {
    check_world(2, &[]);
}

#[test]
fn three_ranks_with_small_chunks() {
    // 4 KiB chunks: a segment of 100_003 / 3 floats streams as ~33 frames per step.
    check_world(3, &[("ASGD_COMM_CHUNK_BYTES", "4096")]);
}

#[test]
fn four_ranks_without_checksums() {
    check_world(4, &[("ASGD_COMM_CHECKSUM", "0")]);
}

#[test]
fn five_ranks_with_a_secret() {
    check_world(5, &[("ASGD_SECRET", "correct horse battery staple")]);
}

#[test]
fn six_ranks_with_odd_chunks() {
    // 1000-byte chunks (250 floats) do not divide the segments evenly.
    check_world(6, &[("ASGD_COMM_CHUNK_BYTES", "1000")]);
}

#[test]
fn seven_ranks() {
    check_world(7, &[]);
}

#[test]
fn eight_ranks() {
    check_world(8, &[]);
}

#[test]
fn three_ranks_over_ipv6() {
    check_world(3, &[("MASTER_ADDR", "::1")]);
}

#[test]
fn explicit_bind_and_advertise_addresses() {
    check_world(3, &[("ASGD_BIND_ADDR", "127.0.0.1"), ("ASGD_ADVERTISE_ADDR", "127.0.0.1")]);
}

#[test]
fn emulated_slow_network_still_computes_the_sum() {
    // 1 ms per frame and 200 MB/s: slower, same answer.
    let (result, lines) =
        run_world(2, &["check", "--sizes", "7,1001"], &[("ASGD_NET_DELAY_MS", "1"), ("ASGD_NET_RATE_MBPS", "200")]);
    assert_ok(&result, &lines);
}
