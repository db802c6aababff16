//! Assembling a job: rank 0 listens on `MASTER_ADDR:MASTER_PORT`, every other rank dials it,
//! authenticates and says where it listens; rank 0 answers with everyone's address; then each
//! rank dials its successor and accepts its predecessor, which forms the ring. Each member's
//! connection to rank 0 then stays open as its control link for heartbeats ([`crate::liveness`]).
//!
//! Listeners admit connections concurrently ([`crate::admission`]): one that fails
//! authentication, sends nothing or introduces itself wrongly is logged to stderr and dropped
//! without holding up the others, and the listener keeps waiting for the right peer until the
//! deadline. A rank whose connection is cut before the listener answered it dials again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::admission::{self, Admitted, Next, HANDSHAKE_TIMEOUT};
use crate::auth;
use crate::collectives::Ring;
use crate::config::CommConfig;
use crate::error::{CommError, Op};
use crate::frame::Kind;
use crate::liveness::Liveness;
use crate::transport::connection::{Connection, LinkError, Pacer};
use crate::transport::messages::{decode_table, encode_table, AbortNotice, Hello, Purpose};
use crate::transport::socket::{connect_until, listen, tune};

/// Pause before dialling again a listener that cut this rank's connection unanswered.
const REDIAL_PAUSE: Duration = Duration::from_millis(50);

/// Joins the job described by `cfg`; `None` for a world of one, which needs no socket.
///
/// Errors: bad addresses, the insecure-listen refusal, a bind failure, authentication
/// failures of this rank, and the rendezvous timeout naming the missing ranks.
pub(crate) fn establish(cfg: &CommConfig) -> Result<Option<Ring>, CommError> {
    if cfg.world_size == 1 {
        return Ok(None);
    }
    let deadline = Instant::now() + cfg.timeout;
    let master = resolve(&cfg.master_addr, cfg.master_port)?;
    let bind_ip = bind_ip(cfg, &master)?;
    let ring =
        if cfg.rank == 0 { run_master(cfg, bind_ip, deadline)? } else { run_member(cfg, bind_ip, &master, deadline)? };
    Ok(Some(ring))
}

/// The address this rank listens on: `ASGD_BIND_ADDR`, else [`default_bind`] for the master's
/// address (`master`, as [`resolve`] gave it). Errors: a public address without a secret
/// (unless the insecure opt-in is set).
pub(crate) fn bind_ip(cfg: &CommConfig, master: &[SocketAddr]) -> Result<IpAddr, CommError> {
    let bind_ip = cfg.bind_addr.unwrap_or_else(|| default_bind(master[0].ip()));
    if cfg.secret.is_none() && !bind_ip.is_loopback() && !cfg.allow_insecure {
        return Err(CommError::Insecure { addr: bind_ip });
    }
    Ok(bind_ip)
}

/// Resolves `MASTER_ADDR`, which may be an IPv4 or IPv6 literal (brackets allowed) or a name.
pub(crate) fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, CommError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| CommError::Resolve { host: host.to_owned(), detail: e.to_string() })?
        .collect();
    if addrs.is_empty() {
        return Err(CommError::Resolve { host: host.to_owned(), detail: "no address found".into() });
    }
    Ok(addrs)
}

/// With no bind address given: stay on loopback when the master is local, otherwise listen
/// on every interface of the master's address family.
fn default_bind(master_ip: IpAddr) -> IpAddr {
    match master_ip {
        ip if ip.is_loopback() => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

fn pacer(cfg: &CommConfig) -> Pacer {
    Pacer::new(cfg.net_delay, cfg.net_rate_mbps)
}

fn timeout_error(cfg: &CommConfig, detail: String) -> CommError {
    CommError::RendezvousTimeout { after: cfg.timeout, detail }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
}

/// Dials `addrs`, authenticates as the client and sends `hello`. A connection that the
/// listener cut or left unanswered (it may be busy with strangers) is dialled again until
/// the deadline.
pub(crate) fn dial(
    cfg: &CommConfig,
    addrs: &[SocketAddr],
    peer_rank: usize,
    hello: &Hello,
    deadline: Instant,
) -> Result<Connection, CommError> {
    let peer = format!("rank {peer_rank} at {}", addrs[0]);
    loop {
        let stream = connect_until(addrs, cfg.socket_buffer_bytes, deadline)
            .map_err(|e| timeout_error(cfg, format!("could not reach rank {peer_rank} at {}: {e}", addrs[0])))?;
        let io_err = |e: std::io::Error| CommError::Auth { peer: peer.clone(), reason: e.to_string() };
        tune(&stream, remaining(deadline).min(HANDSHAKE_TIMEOUT)).map_err(io_err)?;
        let mut conn = Connection::new(stream, cfg.max_frame_bytes, cfg.checksum, pacer(cfg)).map_err(io_err)?;
        match auth::client_handshake(&mut conn, cfg.secret.as_ref(), cfg.seals()) {
            Ok(()) => {
                conn.write_frame(Kind::Hello, 0, &hello.encode())
                    .map_err(|e| e.into_comm(peer_rank, Op::Rendezvous, cfg.timeout))?;
                return Ok(conn);
            }
            Err(f) if f.retry && Instant::now() + REDIAL_PAUSE < deadline => thread::sleep(REDIAL_PAUSE),
            Err(f) if f.retry => {
                return Err(timeout_error(
                    cfg,
                    format!("rank {peer_rank} at {} never completed a handshake: {}", addrs[0], f.reason),
                ))
            }
            Err(f) => return Err(CommError::Auth { peer, reason: f.reason }),
        }
    }
}

/// Tells an authenticated peer why it is refused, and logs it.
pub(crate) fn refuse(cfg: &CommConfig, mut conn: Connection, hello_rank: u32, reason: String) {
    eprintln!("asgd-comm: rank {} refused rank {hello_rank} at {}: {reason}", cfg.rank, conn.peer_addr());
    let notice =
        AbortNotice { suspect: hello_rank, reporter: cfg.rank as u32, op: Op::Rendezvous, tampered: false, reason };
    let _ = conn.write_frame(Kind::Abort, 0, &notice.encode());
}

/// Checks a hello against this job; `Err` holds the sentence for the refused peer.
fn check_hello(cfg: &CommConfig, hello: &Hello, purpose: Purpose) -> Result<(), String> {
    if hello.world_size as usize != cfg.world_size {
        return Err(format!(
            "it says WORLD_SIZE is {} but rank {} says {}; start every rank with the same WORLD_SIZE",
            hello.world_size, cfg.rank, cfg.world_size
        ));
    }
    if hello.purpose == Purpose::Elastic {
        return Err("it asks for an elastic job and this one is fail-stop; start every rank the same way".into());
    }
    if hello.purpose != purpose {
        return Err(format!("it sent a {:?} hello where a {purpose:?} hello was expected", hello.purpose));
    }
    if hello.rank as usize >= cfg.world_size {
        return Err(format!("its RANK {} is not below WORLD_SIZE {}", hello.rank, cfg.world_size));
    }
    Ok(())
}

fn run_master(cfg: &CommConfig, bind_ip: IpAddr, deadline: Instant) -> Result<Ring, CommError> {
    let addr = SocketAddr::new(bind_ip, cfg.master_port);
    let listener = listen(addr, cfg.socket_buffer_bytes).map_err(|source| CommError::Bind { addr, source })?;
    let n = cfg.world_size;
    let mut table: Vec<Option<SocketAddr>> = vec![None; n];
    let mut members: Vec<Option<Connection>> = (0..n).map(|_| None).collect();
    let mut missing = n - 1;
    let listened = admission::admit(cfg, &listener, deadline, None, |Admitted { conn, hello, from }| {
        if let Err(reason) = check_hello(cfg, &hello, Purpose::Join) {
            refuse(cfg, conn, hello.rank, reason);
            return Next::Listen;
        }
        let rank = hello.rank as usize;
        if rank == 0 || members[rank].is_some() {
            refuse(cfg, conn, hello.rank, format!("rank {rank} has already joined; give every process its own RANK"));
            return Next::Listen;
        }
        let ip = hello.advertise.unwrap_or_else(|| from.ip().to_canonical());
        table[rank] = Some(SocketAddr::new(ip, hello.port));
        members[rank] = Some(conn);
        missing -= 1;
        if missing == 0 {
            Next::Done
        } else {
            Next::Listen
        }
    });
    let complete = listened.map_err(|e| timeout_error(cfg, format!("the rendezvous listener failed: {e}")))?;
    if !complete {
        let absent: Vec<usize> = (1..n).filter(|&r| members[r].is_none()).collect();
        return Err(timeout_error(cfg, format!("rank 0 is still waiting for ranks {absent:?}")));
    }
    let payload = encode_table(&table);
    for (rank, conn) in members.iter_mut().enumerate() {
        if let Some(conn) = conn {
            conn.write_frame(Kind::PeerTable, 0, &payload)
                .map_err(|e| e.into_comm(rank, Op::Rendezvous, cfg.timeout))?;
        }
    }
    // The rendezvous connections stay open as control links for the liveness service.
    let members: Vec<(usize, Connection)> =
        members.into_iter().enumerate().filter_map(|(rank, conn)| Some((rank, conn?))).collect();
    let next = table[1 % n].ok_or_else(|| timeout_error(cfg, "rank 1 has no address".into()))?;
    let ring = form_ring(cfg, &listener, next, deadline)?;
    Ok(ring.watched_by(Liveness::lead(members, n, cfg.timeout)))
}

fn run_member(cfg: &CommConfig, bind_ip: IpAddr, master: &[SocketAddr], deadline: Instant) -> Result<Ring, CommError> {
    let any = SocketAddr::new(bind_ip, 0);
    let listener = listen(any, cfg.socket_buffer_bytes).map_err(|source| CommError::Bind { addr: any, source })?;
    let port = listener.local_addr().map_err(|source| CommError::Bind { addr: any, source })?.port();
    let advertise = cfg.advertise_addr.or((!bind_ip.is_unspecified()).then_some(bind_ip));
    let hello =
        Hello { purpose: Purpose::Join, rank: cfg.rank as u32, world_size: cfg.world_size as u32, port, advertise };
    let mut conn = dial(cfg, master, 0, &hello, deadline)?;
    // Rank 0 answers only once every rank has joined, which may take until the deadline.
    let _ = conn.set_timeout(remaining(deadline));
    let frame = conn.expect_frame(Kind::PeerTable).map_err(|e| match e {
        LinkError::Abort(notice) => CommError::Config(format!("rank 0 refused this rank: {}", notice.reason)),
        LinkError::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            timeout_error(cfg, "rank 0 never sent the peer table, so some ranks did not join".into())
        }
        other => other.into_comm(0, Op::Rendezvous, cfg.timeout),
    })?;
    let mut table = decode_table(&frame.payload, cfg.world_size).map_err(|e| CommError::Protocol {
        rank: 0,
        op: Op::Rendezvous,
        detail: format!("its peer table does not decode: {e}"),
    })?;
    // Rank 0 is reached where this rank already reached it.
    table[0] = Some(conn.peer_addr());
    let next_rank = (cfg.rank + 1) % cfg.world_size;
    let next = table[next_rank].ok_or_else(|| CommError::Protocol {
        rank: 0,
        op: Op::Rendezvous,
        detail: format!("the peer table has no address for rank {next_rank}"),
    })?;
    let ring = form_ring(cfg, &listener, next, deadline)?;
    // The connection to rank 0 stays open as this rank's control link.
    Ok(ring.watched_by(Liveness::follow(conn, cfg.rank, cfg.world_size, cfg.timeout)))
}

/// Dials the successor while accepting the predecessor; both at once, since each rank's
/// handshake needs the other side to be accepting.
fn form_ring(
    cfg: &CommConfig,
    listener: &TcpListener,
    next_addr: SocketAddr,
    deadline: Instant,
) -> Result<Ring, CommError> {
    let n = cfg.world_size;
    let (next_rank, prev_rank) = ((cfg.rank + 1) % n, (cfg.rank + n - 1) % n);
    let give_up = AtomicBool::new(false);
    let (next, prev) = thread::scope(|s| {
        let acceptor = s.spawn(|| accept_prev(cfg, listener, prev_rank, deadline, &give_up));
        let hello =
            Hello { purpose: Purpose::Ring, rank: cfg.rank as u32, world_size: n as u32, port: 0, advertise: None };
        let next = dial(cfg, &[next_addr], next_rank, &hello, deadline);
        if next.is_err() {
            give_up.store(true, Ordering::Relaxed);
        }
        let prev = acceptor.join().unwrap_or_else(|_| Err(timeout_error(cfg, "the accepting thread panicked".into())));
        (next, prev)
    });
    let (next, prev) = (next?, prev?);
    Ring::new(cfg.rank, n, next, prev, cfg.timeout).map_err(|e| CommError::Io {
        rank: next_rank,
        op: Op::Rendezvous,
        source: e,
    })
}

fn accept_prev(
    cfg: &CommConfig,
    listener: &TcpListener,
    prev_rank: usize,
    deadline: Instant,
    give_up: &AtomicBool,
) -> Result<Connection, CommError> {
    let mut prev = None;
    let listened = admission::admit(cfg, listener, deadline, Some(give_up), |Admitted { conn, hello, .. }| {
        match check_hello(cfg, &hello, Purpose::Ring) {
            Ok(()) if hello.rank as usize == prev_rank => {
                prev = Some(conn);
                return Next::Done;
            }
            Ok(()) => {
                refuse(cfg, conn, hello.rank, format!("rank {} expects its predecessor, rank {prev_rank}", cfg.rank))
            }
            Err(reason) => refuse(cfg, conn, hello.rank, reason),
        }
        Next::Listen
    });
    listened.map_err(|e| timeout_error(cfg, format!("the ring listener failed: {e}")))?;
    prev.ok_or_else(|| {
        timeout_error(cfg, format!("rank {} never heard from its predecessor, rank {prev_rank}", cfg.rank))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_accepts_v4_v6_brackets_and_names() {
        assert_eq!(resolve("127.0.0.1", 5).unwrap(), vec!["127.0.0.1:5".parse().unwrap()]);
        assert_eq!(resolve("[::1]", 5).unwrap(), vec!["[::1]:5".parse().unwrap()]);
        assert_eq!(resolve("::1", 5).unwrap(), vec!["[::1]:5".parse().unwrap()]);
        assert!(resolve("localhost", 5).unwrap().iter().all(|a| a.ip().is_loopback()));
        assert!(matches!(resolve("no-such-host.invalid", 5), Err(CommError::Resolve { .. })));
    }

    #[test]
    fn default_bind_stays_on_loopback_for_a_local_master() {
        assert_eq!(default_bind("127.0.0.1".parse().unwrap()), "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(default_bind("::1".parse().unwrap()), "::1".parse::<IpAddr>().unwrap());
        assert!(default_bind("10.0.0.1".parse().unwrap()).is_unspecified());
    }

    #[test]
    fn no_secret_and_a_public_bind_is_refused_with_the_fix() {
        let mut cfg = CommConfig::new(0, 2, "10.0.0.1", 1);
        let err = establish(&cfg).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("ASGD_SECRET") && err.contains("ASGD_ALLOW_INSECURE=1"), "{err}");
        cfg.bind_addr = Some("0.0.0.0".parse().unwrap());
        assert!(matches!(establish(&cfg), Err(CommError::Insecure { .. })));
    }
}
