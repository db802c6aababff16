//! A framed TCP connection: reads and writes frames from [`crate::frame`], streams f32
//! buffers without copying them, seals every frame once the handshake gave it keys, and
//! emulates a slower network when asked to.

use std::io::{self, BufReader, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{CommError, Op};
use crate::frame::{
    decode_header, encode_header, encode_header_with_crc, encode_sealed_header, Frame, FrameError, FrameHasher, Header,
    Kind, PayloadVerifier, HEADER_LEN, SEAL_TAG_LEN,
};
use crate::transport::messages::AbortNotice;
use crate::transport::seal::{Direction, SessionKeys};

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
    /// A sealed frame whose tag does not verify: altered, replayed, reordered, or one before
    /// it was dropped.
    Forged,
    /// The peer seals its frames and this end does not, or the other way round.
    SealMismatch {
        /// Whether the frame that arrived was sealed.
        peer_seals: bool,
    },
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
            LinkError::Abort(n) if n.tampered => {
                CommError::Tampered { from: n.suspect as usize, to: Some(n.reporter as usize), op: n.op }
            }
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
            LinkError::Forged => CommError::Tampered { from: rank, to: None, op },
            LinkError::SealMismatch { peer_seals } => CommError::Protocol {
                rank,
                op,
                detail: if peer_seals {
                    "it encrypts its frames and this rank does not; set the same ASGD_COMM_ENCRYPT on every rank".into()
                } else {
                    "it does not encrypt its frames and this rank does; set the same ASGD_COMM_ENCRYPT on every rank"
                        .into()
                },
            },
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

/// The cipher state of a sealed connection and the buffers sealing needs.
struct Sealing {
    tx: Direction,
    rx: Direction,
    /// A sent payload is copied here and encrypted in place, so the caller's data stays as is.
    out: Vec<u8>,
    /// Received data frames to be added are opened here before they touch the destination.
    sum: Vec<f32>,
}

/// One TCP connection carrying frames. Reads go through a small buffer; large payloads are
/// read and written straight from and to the caller's memory, except that sealed payloads
/// are encrypted in a copy.
pub(crate) struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    peer: SocketAddr,
    max_frame: usize,
    checksum: bool,
    pacer: Pacer,
    /// A write failed part-way, so the stream may end in half a frame: write nothing more.
    broken: bool,
    /// Set once the handshake derived keys; from then on every frame each way is sealed.
    seal: Option<Sealing>,
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
            seal: None,
        })
    }

    /// Seals every frame from now on, both ways, with the keys of this connection's handshake.
    pub(crate) fn start_sealing(&mut self, keys: &SessionKeys) {
        self.seal = Some(Sealing {
            tx: Direction::new(&keys.send),
            rx: Direction::new(&keys.recv),
            out: Vec::new(),
            sum: Vec::new(),
        });
    }

    #[cfg(test)]
    pub(crate) fn is_sealed(&self) -> bool {
        self.seal.is_some()
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
        if self.seal.is_some() {
            return self.write_sealed(kind, tag, payload);
        }
        let head = encode_header(kind, tag, payload, true)?;
        self.write_parts(&head, payload)
    }

    /// Copies `payload`, encrypts the copy, and sends it with its tag.
    fn write_sealed(&mut self, kind: Kind, tag: u32, payload: &[u8]) -> Result<(), LinkError> {
        let Some(seal) = self.seal.as_mut() else {
            return Err(LinkError::Unexpected("a sealed write on a connection without keys".into()));
        };
        let head = encode_sealed_header(kind, tag, payload.len() + SEAL_TAG_LEN)?;
        let mut out = std::mem::take(&mut seal.out);
        out.clear();
        out.extend_from_slice(payload);
        let mac = seal.tx.seal(&head, &mut out);
        out.extend_from_slice(&mac);
        let result = self.write_parts(&head, &out);
        if let Some(seal) = self.seal.as_mut() {
            seal.out = out;
        }
        result
    }

    /// Sends `data` as one data frame, straight from the caller's memory. `crc` is the
    /// frame's CRC when [`Connection::read_data`] already computed it; otherwise, with
    /// checksums on, it is computed here.
    pub(crate) fn write_data(&mut self, tag: u32, data: &[f32], crc: Option<u32>) -> Result<(), LinkError> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if self.seal.is_some() {
            return self.write_sealed(Kind::Data, tag, bytes);
        }
        let head = match (self.checksum, crc) {
            (true, Some(crc)) => encode_header_with_crc(Kind::Data, tag, bytes.len(), Some(crc))?,
            (checksum, _) => encode_header(Kind::Data, tag, bytes, checksum)?,
        };
        self.write_parts(&head, bytes)
    }

    /// Reads a frame header and checks that it is sealed exactly when this connection is;
    /// returns it with its raw bytes, which a sealed payload is bound to. `Ok(None)` is a
    /// clean close before any byte of it.
    fn read_header(&mut self) -> Result<Option<(Header, [u8; HEADER_LEN])>, LinkError> {
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
        let header = decode_header(&head, self.max_frame)?;
        if header.sealed != self.seal.is_some() {
            return Err(LinkError::SealMismatch { peer_seals: header.sealed });
        }
        Ok(Some((header, head)))
    }

    /// Reads the payload that `header` announces, opening it when sealed.
    fn read_payload(&mut self, header: &Header, head: &[u8; HEADER_LEN]) -> Result<Vec<u8>, LinkError> {
        let mut payload = vec![0u8; header.len];
        self.reader.read_exact(&mut payload)?;
        match self.seal.as_mut() {
            Some(seal) => {
                // decode_header refused sealed payloads shorter than a tag.
                let (body, mac) = payload.split_at_mut(header.len - SEAL_TAG_LEN);
                let mac: &[u8; SEAL_TAG_LEN] = (&*mac).try_into().map_err(|_| LinkError::Forged)?;
                seal.rx.open(head, body, mac).map_err(|_| LinkError::Forged)?;
                payload.truncate(header.len - SEAL_TAG_LEN);
            }
            None => {
                let mut verifier = PayloadVerifier::new(header);
                verifier.update(&payload);
                verifier.finish()?;
            }
        }
        Ok(payload)
    }

    /// Reads one whole frame; `Ok(None)` on a clean close, an error on a close mid-frame.
    /// Allocation happens only after the header has passed the size limit.
    pub(crate) fn read_frame(&mut self) -> Result<Option<Frame>, LinkError> {
        let Some((header, head)) = self.read_header()? else {
            return Ok(None);
        };
        let payload = self.read_payload(&header, &head)?;
        Ok(Some(Frame::plain(header.kind, header.tag, payload)))
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
        let (header, head) = self.read_header()?.ok_or(LinkError::Closed)?;
        let want = std::mem::size_of_val(dst);
        let overhead = if header.sealed { SEAL_TAG_LEN } else { 0 };
        let misfit = match header.kind {
            Kind::Data if header.tag != tag => Some(LinkError::Unexpected(describe_tag_mismatch(header.tag, tag))),
            Kind::Data if header.len != want + overhead => Some(LinkError::Unexpected(format!(
                "a piece of {} bytes arrived where {want} were expected; every rank must pass buffers of the same length and use the same ASGD_COMM_CHUNK_BYTES",
                header.len.saturating_sub(overhead)
            ))),
            Kind::Data => None,
            Kind::Abort | Kind::Bye => {
                let payload = self.read_payload(&header, &head)?;
                return Err(if header.kind == Kind::Bye { LinkError::Bye } else { abort_error(&payload) });
            }
            other => Some(LinkError::Unexpected(format!("expected data, got a {other:?} message"))),
        };
        if let Some(misfit) = misfit {
            // A sealed frame that is not the one expected may be a replayed or reordered one:
            // if it does not open, that is what it is, and the mismatch is only a symptom.
            if header.sealed {
                self.read_payload(&header, &head)?;
            }
            return Err(misfit);
        }
        if header.sealed {
            self.read_sealed_data(&head, dst, mode)?;
            // A sealed frame has no CRC to hand on: the next hop seals it afresh.
            return Ok(None);
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

impl Connection {
    /// Receives a sealed data payload of `dst`'s size. A copy is opened in `dst` itself (on a
    /// failure `dst` holds garbage, which the caller's error allows); a sum is opened aside
    /// and added only once its tag has verified.
    fn read_sealed_data(&mut self, head: &[u8; HEADER_LEN], dst: &mut [f32], mode: Mode) -> Result<(), LinkError> {
        let Some(seal) = self.seal.as_mut() else {
            return Err(LinkError::SealMismatch { peer_seals: true });
        };
        let mut mac = [0u8; SEAL_TAG_LEN];
        match mode {
            Mode::Copy => {
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(dst);
                self.reader.read_exact(bytes)?;
                self.reader.read_exact(&mut mac)?;
                seal.rx.open(head, bytes, &mac).map_err(|_| LinkError::Forged)?;
            }
            Mode::Add => {
                seal.sum.resize(dst.len(), 0.0);
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut seal.sum[..]);
                self.reader.read_exact(bytes)?;
                self.reader.read_exact(&mut mac)?;
                seal.rx.open(head, bytes, &mac).map_err(|_| LinkError::Forged)?;
                for (d, s) in dst.iter_mut().zip(seal.sum.iter()) {
                    *d += *s;
                }
            }
        }
        Ok(())
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
        let bytes = Frame::plain(Kind::Hello, 1, vec![1, 2, 3]).encode(true).unwrap();
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
    fn sealed_data_frames_add_copy_and_refuse_a_mismatched_peer() {
        let (mut conn, client) = pair();
        let mut sender = Connection::new(client, 1 << 20, true, Pacer::new(Duration::ZERO, None)).unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        sender.start_sealing(&SessionKeys { send: a, recv: b });
        conn.start_sealing(&SessionKeys { send: b, recv: a });
        let src: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let mut scratch = vec![0.0; 64];
        for _ in 0..2 {
            sender.write_data(9, &src, None).unwrap();
        }
        let mut dst = vec![1.0f32; 1000];
        assert_eq!(conn.read_data(9, &mut dst, Mode::Add, &mut scratch, true).unwrap(), None);
        assert!(dst.iter().enumerate().all(|(i, &v)| v == i as f32 + 1.0));
        conn.read_data(9, &mut dst, Mode::Copy, &mut scratch, false).unwrap();
        assert_eq!(dst, src);
        // The caller's buffer is sent from a copy, so it is left as it was.
        assert!(src.iter().enumerate().all(|(i, &v)| v == i as f32));
        sender.write_frame(Kind::Bye, 0, &[]).unwrap();
        assert!(matches!(conn.read_data(9, &mut dst, Mode::Copy, &mut scratch, false), Err(LinkError::Bye)));

        // One end sealing and the other not is named, not misread.
        let (mut conn, client) = pair();
        let mut sender = Connection::new(client, 1 << 20, true, Pacer::new(Duration::ZERO, None)).unwrap();
        sender.write_data(9, &src, None).unwrap();
        conn.start_sealing(&SessionKeys { send: b, recv: a });
        let err = conn.read_data(9, &mut dst, Mode::Copy, &mut scratch, false).unwrap_err();
        assert!(matches!(err, LinkError::SealMismatch { peer_seals: false }), "{err:?}");
        let msg = err.into_comm(1, Op::AllReduce, Duration::from_secs(1)).to_string();
        assert!(msg.contains("ASGD_COMM_ENCRYPT"), "{msg}");

        // Keys that do not match are a forged frame.
        let (mut conn, client) = pair();
        let mut sender = Connection::new(client, 1 << 20, true, Pacer::new(Duration::ZERO, None)).unwrap();
        sender.start_sealing(&SessionKeys { send: a, recv: b });
        conn.start_sealing(&SessionKeys { send: b, recv: b });
        sender.write_data(9, &src, None).unwrap();
        let mut before = vec![5.0f32; 1000];
        let err = conn.read_data(9, &mut before, Mode::Add, &mut scratch, false).unwrap_err();
        assert!(matches!(err, LinkError::Forged), "{err:?}");
        assert!(before.iter().all(|&v| v == 5.0), "a forged sum must not touch the destination");
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
