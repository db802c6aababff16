//! A framed TCP connection: reads and writes frames from [`crate::frame`], streams f32
//! buffers without copying them, and emulates a slower network when asked to.

use std::io::{self, BufReader, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{CommError, Op};
use crate::frame::{
    decode_header, encode_header, encode_header_with_crc, Frame, FrameError, FrameHasher, Header, Kind,
    PayloadVerifier, HEADER_LEN,
};
use crate::transport::messages::AbortNotice;

/// Elements read per piece when receiving a data frame: the piece is hashed and reduced while
/// it is still in cache (256 KiB).
pub(crate) const PIECE_ELEMS: usize = 64 * 1024;

/// What a received data frame does to its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `dst += payload`.
    Add,
    /// `dst = payload`.
    Copy,
}

/// A failure on one connection, before it is given the rank and operation it happened in.
#[derive(Debug)]
pub(crate) enum LinkError {
    /// The peer closed the connection at a frame boundary where a frame was required.
    Closed,
    /// The peer closed the connection inside a frame.
    Cut,
    /// An OS error (timeouts included).
    Io(io::Error),
    /// The bytes were not a valid frame.
    Frame(FrameError),
    /// The peer forwarded a failure notice.
    Abort(AbortNotice),
    /// The peer shut its communicator down cleanly.
    Bye,
    /// A valid frame that does not belong here.
    Unexpected(String),
}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            LinkError::Cut
        } else {
            LinkError::Io(e)
        }
    }
}

impl From<FrameError> for LinkError {
    fn from(e: FrameError) -> Self {
        LinkError::Frame(e)
    }
}

impl LinkError {
    /// Names the failure: the peer `rank`, the collective `op`, the configured `timeout`.
    pub(crate) fn into_comm(self, rank: usize, op: Op, timeout: Duration) -> CommError {
        match self {
            LinkError::Closed | LinkError::Cut => CommError::PeerClosed { rank, op },
            LinkError::Io(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CommError::Timeout { rank, op, after: timeout },
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => CommError::PeerClosed { rank, op },
                _ => CommError::Io { rank, op, source: e },
            },
            LinkError::Frame(source) => CommError::Frame { rank, op, source },
            LinkError::Abort(n) => CommError::PeerFailed {
                rank: n.suspect as usize,
                op: n.op,
                reporter: n.reporter as usize,
                reason: n.reason,
            },
            LinkError::Bye => CommError::Protocol {
                rank,
                op,
                detail: "it shut its communicator down while this rank still expected data; every rank must call the same collectives in the same order".into(),
            },
            LinkError::Unexpected(detail) => CommError::Protocol { rank, op, detail },
        }
    }
}

/// Paces sends to emulate a slower network: a fixed delay per frame and a rate limit.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    delay: Duration,
    bytes_per_s: Option<f64>,
    /// When the emulated link is free again.
    free_at: Option<Instant>,
}

impl Pacer {
    pub(crate) fn new(delay: Duration, rate_mbps: Option<f64>) -> Self {
        Pacer { delay, bytes_per_s: rate_mbps.map(|r| r * 1e6), free_at: None }
    }

    /// Waits as long as the emulated link needs before `bytes` may leave.
    fn before_send(&mut self, bytes: usize) {
        if !self.delay.is_zero() {
            thread::sleep(self.delay);
        }
        if let Some(rate) = self.bytes_per_s {
            let now = Instant::now();
            let start = self.free_at.map_or(now, |t| t.max(now));
            if start > now {
                thread::sleep(start - now);
            }
            let busy = Duration::try_from_secs_f64(bytes as f64 / rate).unwrap_or(Duration::MAX);
            self.free_at = start.checked_add(busy);
        }
    }
}

/// One TCP connection carrying frames. Reads go through a small buffer; large payloads are
/// read and written straight from and to the caller's memory.
pub(crate) struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    peer: SocketAddr,
    max_frame: usize,
    checksum: bool,
    pacer: Pacer,
    /// A write failed part-way, so the stream may end in half a frame: write nothing more.
    broken: bool,
}

impl Connection {
    /// Wraps a connected stream. Errors: the OS's, when the stream cannot be cloned.
    pub(crate) fn new(stream: TcpStream, max_frame: usize, checksum: bool, pacer: Pacer) -> io::Result<Self> {
        let peer = stream.peer_addr()?;
        let writer = stream.try_clone()?;
        Ok(Connection {
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
            peer,
            max_frame,
            checksum,
            pacer,
            broken: false,
        })
    }

    pub(crate) fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub(crate) fn stream(&self) -> &TcpStream {
        &self.writer
    }

    /// Sets both the read and the write timeout.
    pub(crate) fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.writer.set_read_timeout(Some(timeout))?;
        self.writer.set_write_timeout(Some(timeout))
    }

    /// Stops both directions, waking any thread blocked on this socket.
    pub(crate) fn shutdown(&self) {
        let _ = self.writer.shutdown(Shutdown::Both);
    }

    /// A clone of the socket that another thread can use to shut this connection down.
    pub(crate) fn try_clone_stream(&self) -> io::Result<TcpStream> {
        self.writer.try_clone()
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    fn write_parts(&mut self, head: &[u8; HEADER_LEN], payload: &[u8]) -> Result<(), LinkError> {
        if self.broken {
            return Err(LinkError::Io(io::Error::new(io::ErrorKind::BrokenPipe, "an earlier write failed")));
        }
        self.pacer.before_send(HEADER_LEN + payload.len());
        let mut bufs = [IoSlice::new(head), IoSlice::new(payload)];
        let mut rest: &mut [IoSlice<'_>] = &mut bufs;
        while !rest.is_empty() {
            match self.writer.write_vectored(rest) {
                Ok(0) => {
                    self.broken = true;
                    return Err(LinkError::Io(io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.broken = true;
                    return Err(LinkError::Io(e));
                }
            }
        }
        Ok(())
    }

    /// Sends one control frame.
    pub(crate) fn write_frame(&mut self, kind: Kind, tag: u32, payload: &[u8]) -> Result<(), LinkError> {
        let head = encode_header(kind, tag, payload, true)?;
        self.write_parts(&head, payload)
    }

    /// Sends `data` as one data frame, straight from the caller's memory. `crc` is the
    /// frame's CRC when [`Connection::read_data`] already computed it; otherwise, with
    /// checksums on, it is computed here.
    pub(crate) fn write_data(&mut self, tag: u32, data: &[f32], crc: Option<u32>) -> Result<(), LinkError> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let head = match (self.checksum, crc) {
            (true, Some(crc)) => encode_header_with_crc(Kind::Data, tag, bytes.len(), Some(crc))?,
            (checksum, _) => encode_header(Kind::Data, tag, bytes, checksum)?,
        };
        self.write_parts(&head, bytes)
    }

    /// Reads a frame header. `Ok(None)` is a clean close before any byte of it.
    fn read_header(&mut self) -> Result<Option<Header>, LinkError> {
        let mut head = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match self.reader.read(&mut head[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(LinkError::Frame(FrameError::Truncated { got, need: HEADER_LEN })),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Some(decode_header(&head, self.max_frame)?))
    }

    /// Reads one whole frame; `Ok(None)` on a clean close, an error on a close mid-frame.
    /// Allocation happens only after the header has passed the size limit.
    pub(crate) fn read_frame(&mut self) -> Result<Option<Frame>, LinkError> {
        let Some(header) = self.read_header()? else {
            return Ok(None);
        };
        let mut payload = vec![0u8; header.len];
        self.reader.read_exact(&mut payload)?;
        let mut verifier = PayloadVerifier::new(&header);
        verifier.update(&payload);
        verifier.finish()?;
        Ok(Some(Frame { kind: header.kind, tag: header.tag, payload }))
    }

    /// Reads the next frame, which must be of `kind`. An abort notice or a goodbye in its place
    /// becomes the matching [`LinkError`].
    pub(crate) fn expect_frame(&mut self, kind: Kind) -> Result<Frame, LinkError> {
        let frame = self.read_frame()?.ok_or(LinkError::Closed)?;
        match frame.kind {
            k if k == kind => Ok(frame),
            Kind::Abort => Err(abort_error(&frame.payload)),
            Kind::Bye => Err(LinkError::Bye),
            other => Err(LinkError::Unexpected(format!("expected a {kind:?} message, got {other:?}"))),
        }
    }

    /// Receives one data frame tagged `tag` into `dst`, adding or copying per `mode`.
    /// `scratch` holds a piece for `Mode::Add` and must not be empty.
    ///
    /// With `forward` and checksums on, also returns the CRC that `dst`'s new contents will
    /// need when sent on with the same tag, hashed piece by piece while still in cache.
    ///
    /// The payload must be exactly `dst`'s size: ranks with different buffer lengths fail here
    /// instead of corrupting memory.
    pub(crate) fn read_data(
        &mut self,
        tag: u32,
        dst: &mut [f32],
        mode: Mode,
        scratch: &mut [f32],
        forward: bool,
    ) -> Result<Option<u32>, LinkError> {
        let header = self.read_header()?.ok_or(LinkError::Closed)?;
        match header.kind {
            Kind::Data => {}
            Kind::Abort | Kind::Bye => {
                let mut payload = vec![0u8; header.len];
                self.reader.read_exact(&mut payload)?;
                return Err(if header.kind == Kind::Bye { LinkError::Bye } else { abort_error(&payload) });
            }
            other => return Err(LinkError::Unexpected(format!("expected data, got a {other:?} message"))),
        }
        if header.tag != tag {
            return Err(LinkError::Unexpected(describe_tag_mismatch(header.tag, tag)));
        }
        let want = std::mem::size_of_val(dst);
        if header.len != want {
            return Err(LinkError::Unexpected(format!(
                "a piece of {} bytes arrived where {want} were expected; every rank must pass buffers of the same length and use the same ASGD_COMM_CHUNK_BYTES",
                header.len
            )));
        }
        let mut verifier = PayloadVerifier::new(&header);
        // A copied payload that arrived checksummed is forwarded unchanged, so its CRC is
        // already known; only sums (and unchecked arrivals) need hashing.
        let reuse = mode == Mode::Copy && header.crc.is_some();
        let mut onward = (forward && self.checksum && !reuse).then(FrameHasher::new);
        match mode {
            Mode::Copy => {
                for piece in dst.chunks_mut(PIECE_ELEMS) {
                    let bytes: &mut [u8] = bytemuck::cast_slice_mut(piece);
                    self.reader.read_exact(bytes)?;
                    verifier.update(bytes);
                    if let Some(h) = &mut onward {
                        h.update(bytes);
                    }
                }
            }
            Mode::Add => {
                let step = scratch.len().max(1);
                for piece in dst.chunks_mut(step) {
                    let tmp = &mut scratch[..piece.len()];
                    let bytes: &mut [u8] = bytemuck::cast_slice_mut(tmp);
                    self.reader.read_exact(bytes)?;
                    verifier.update(bytes);
                    for (d, s) in piece.iter_mut().zip(tmp.iter()) {
                        *d += *s;
                    }
                    if let Some(h) = &mut onward {
                        h.update(bytemuck::cast_slice(piece));
                    }
                }
            }
        }
        verifier.finish()?;
        if forward && self.checksum && reuse {
            return Ok(header.crc);
        }
        Ok(onward.map(FrameHasher::finish))
    }
}

fn abort_error(payload: &[u8]) -> LinkError {
    match AbortNotice::decode(payload) {
        Ok(notice) => LinkError::Abort(notice),
        Err(e) => LinkError::Unexpected(format!("an abort notice that does not decode ({e})")),
    }
}

/// Explains a data-frame tag that is not the one expected: the sequence numbers or the
/// operations differ, which means the ranks called different collectives.
fn describe_tag_mismatch(got: u32, want: u32) -> String {
    let name = |tag: u32| Op::from_code(tag & 7).map_or_else(|| format!("op code {}", tag & 7), |op| op.to_string());
    format!(
        "it is at collective #{} ({}) while this rank is at #{} ({}); every rank must call the same collectives in the same order",
        got >> 3,
        name(got),
        want >> 3,
        name(want)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (Connection::new(server, 1 << 20, true, Pacer::new(Duration::ZERO, None)).unwrap(), client)
    }

    #[test]
    fn clean_close_is_none_and_a_cut_is_an_error() {
        let (mut conn, client) = pair();
        drop(client);
        assert!(matches!(conn.read_frame(), Ok(None)));

        let (mut conn, mut client) = pair();
        let bytes = Frame { kind: Kind::Hello, tag: 1, payload: vec![1, 2, 3] }.encode(true).unwrap();
        client.write_all(&bytes[..HEADER_LEN + 1]).unwrap();
        drop(client);
        assert!(matches!(conn.read_frame(), Err(LinkError::Cut)));

        let (mut conn, mut client) = pair();
        client.write_all(&bytes[..7]).unwrap();
        drop(client);
        assert!(matches!(conn.read_frame(), Err(LinkError::Frame(FrameError::Truncated { got: 7, .. }))));
    }

    #[test]
    fn oversized_and_garbage_frames_are_rejected_from_raw_bytes() {
        let (mut conn, mut client) = pair();
        let head = encode_header_with_crc(Kind::Hello, 0, 1 << 30, None).unwrap();
        client.write_all(&head).unwrap();
        assert!(matches!(conn.read_frame(), Err(LinkError::Frame(FrameError::TooLarge { .. }))));

        let (mut conn, mut client) = pair();
        client.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert!(matches!(conn.read_frame(), Err(LinkError::Frame(FrameError::BadMagic(_)))));
    }

    #[test]
    fn data_frames_add_copy_and_check_length_and_tag() {
        let (mut conn, client) = pair();
        let mut sender = Connection::new(client, 1 << 20, true, Pacer::new(Duration::ZERO, None)).unwrap();
        let src: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let mut scratch = vec![0.0; 64];
        sender.write_data(9, &src, None).unwrap();
        sender.write_data(9, &src, None).unwrap();
        let mut dst = vec![1.0f32; 1000];
        let crc = conn.read_data(9, &mut dst, Mode::Add, &mut scratch, true).unwrap();
        assert!(dst.iter().enumerate().all(|(i, &v)| v == i as f32 + 1.0));
        // The CRC handed on for forwarding is the one of the new contents.
        let want = encode_header(Kind::Data, 9, bytemuck::cast_slice(&dst), true).unwrap();
        assert_eq!(crc.map(u32::to_le_bytes), Some([want[16], want[17], want[18], want[19]]));
        assert_eq!(conn.read_data(9, &mut dst, Mode::Copy, &mut scratch, false).unwrap(), None);
        assert_eq!(dst, src);
        sender.write_data(9, &src, None).unwrap();
        let crc = conn.read_data(9, &mut dst, Mode::Copy, &mut scratch, true).unwrap();
        let want = encode_header(Kind::Data, 9, bytemuck::cast_slice(&src), true).unwrap();
        assert_eq!(crc.map(u32::to_le_bytes), Some([want[16], want[17], want[18], want[19]]));

        // A wrong forwarded CRC is caught by the receiver.
        sender.write_data(9, &src, Some(12345)).unwrap();
        let err = conn.read_data(9, &mut dst, Mode::Copy, &mut scratch, false).unwrap_err();
        assert!(matches!(err, LinkError::Frame(FrameError::Checksum { .. })), "{err:?}");

        let (mut conn, client) = pair();
        let mut sender = Connection::new(client, 1 << 20, true, Pacer::new(Duration::ZERO, None)).unwrap();
        sender.write_data(9, &src[..10], None).unwrap();
        let err = conn.read_data(9, &mut dst, Mode::Copy, &mut scratch, false).unwrap_err();
        assert!(matches!(&err, LinkError::Unexpected(m) if m.contains("same length")), "{err:?}");

        let (mut conn, client) = pair();
        let mut sender = Connection::new(client, 1 << 20, true, Pacer::new(Duration::ZERO, None)).unwrap();
        sender.write_data((5 << 3) | 2, &src, None).unwrap();
        let err = conn.read_data((5 << 3) | 1, &mut dst, Mode::Copy, &mut scratch, false).unwrap_err();
        assert!(
            matches!(&err, LinkError::Unexpected(m) if m.contains("broadcast") && m.contains("all_reduce")),
            "{err:?}"
        );
    }

    #[test]
    fn pacer_enforces_the_rate() {
        let mut p = Pacer::new(Duration::ZERO, Some(1.0)); // 1 MB/s
        let t = Instant::now();
        p.before_send(20_000);
        p.before_send(20_000); // waits for the first 20 kB: 20 ms
        p.before_send(0); // waits for the second
        assert!(t.elapsed() >= Duration::from_millis(39), "{:?}", t.elapsed());
    }
}
