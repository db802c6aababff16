//! Opening sockets: listening, dialling with retries until a deadline, accepting until a
//! deadline, and the socket options every connection gets.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// How long to wait between attempts to reach a peer that is not listening yet.
const RETRY_PAUSE: Duration = Duration::from_millis(25);
/// How often a listener waiting for peers checks its deadline.
const ACCEPT_POLL: Duration = Duration::from_millis(2);

/// Applies the buffer sizes to a socket that is not connected yet, so that the TCP window
/// scale negotiated at connect time matches them.
fn set_buffers(socket: &Socket, buffer_bytes: Option<usize>) -> io::Result<()> {
    if let Some(bytes) = buffer_bytes {
        socket.set_send_buffer_size(bytes)?;
        socket.set_recv_buffer_size(bytes)?;
    }
    Ok(())
}

/// Listens on `addr`; accepted sockets inherit the buffer sizes.
pub(crate) fn listen(addr: SocketAddr, buffer_bytes: Option<usize>) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A rank restarted on the same port must not wait out TIME_WAIT of its previous run.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // An explicit v6 address means v6; dual-stack only for the unspecified address.
        socket.set_only_v6(!addr.ip().is_unspecified())?;
    }
    set_buffers(&socket, buffer_bytes)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    let listener: TcpListener = socket.into();
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Dials `addrs` in turn until one accepts or `deadline` passes. A refused connection is
/// retried, since the peer may simply not have started yet.
///
/// Errors: the last OS error once the deadline has passed.
pub(crate) fn connect_until(
    addrs: &[SocketAddr],
    buffer_bytes: Option<usize>,
    deadline: Instant,
) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
    loop {
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(last);
            }
            let attempt = (|| {
                let socket = Socket::new(Domain::for_address(*addr), Type::STREAM, Some(Protocol::TCP))?;
                set_buffers(&socket, buffer_bytes)?;
                socket.connect_timeout(&(*addr).into(), left.min(Duration::from_secs(5)))?;
                Ok::<TcpStream, io::Error>(socket.into())
            })();
            match attempt {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        if Instant::now() >= deadline {
            return Err(last);
        }
        thread::sleep(RETRY_PAUSE);
    }
}

/// Waits for the next connection on a non-blocking listener until `deadline`, or until
/// `stop` is set. Returns `Ok(None)` when either comes first.
pub(crate) fn accept_until(
    listener: &TcpListener,
    deadline: Instant,
    stop: Option<&AtomicBool>,
) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    loop {
        match listener.accept() {
            Ok((stream, addr)) => {
                // Accepted sockets may inherit non-blocking mode on some platforms.
                stream.set_nonblocking(false)?;
                return Ok(Some((stream, addr)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                if Instant::now() >= deadline || stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    return Ok(None);
                }
                thread::sleep(ACCEPT_POLL);
            }
            // The peer gave up between SYN and accept: not our problem, keep listening.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Options every connection gets: no Nagle delay (small frames such as barrier tokens and
/// frame headers must leave at once) and read/write timeouts so no call blocks forever.
pub(crate) fn tune(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(())
}

/// The kernel's send buffer size for `stream`, in bytes.
pub(crate) fn send_buffer_bytes(stream: &TcpStream) -> usize {
    SockRef::from(stream).send_buffer_size().unwrap_or(0)
}
