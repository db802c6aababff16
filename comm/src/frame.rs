//! The wire format, as pure functions with no I/O.
//!
//! Every message is one frame: a fixed 24-byte header followed by `len` payload bytes.
//!
//! ```text
//! offset size field
//!      0    2 magic       b"AG"
//!      2    1 version     VERSION
//!      3    1 kind        Kind as u8
//!      4    1 flags       bit 0: the payload has a CRC; bit 1: the payload is sealed;
//!                         at most one of the two; other bits must be 0
//!      5    3 reserved    must be 0
//!      8    4 tag         u32 LE; for data frames (sequence << 3 | op code)
//!     12    4 len         u32 LE; payload bytes, at most the receiver's limit
//!     16    4 payload crc u32 LE; CRC-32 of the payload if bit 0, else 0
//!     20    4 header crc  u32 LE; CRC-32 of header bytes 0..20
//! ```
//!
//! The header always has its own CRC, so a corrupted length or tag is caught before it is
//! believed. The payload CRC costs a pass over the payload and can be turned off for data.
//!
//! A sealed payload (every frame after the handshake of a connection with a shared secret and
//! encryption on) is the ChaCha20-Poly1305 ciphertext of the message followed by its 16-byte
//! tag, so `len` counts the tag. The whole 24-byte header is the associated data, and the
//! nonce is the number of frames sent before this one on the connection in that direction
//! (u64 LE, then four zero bytes), which is never sent: a frame that is altered, replayed,
//! reordered or dropped makes the next tag fail. The keys are per connection and direction
//! (see `auth.rs`); this module only carries the flag, and the connection seals and opens.
//! Decoding is check-then-parse: [`decode_header`] validates everything in the header, the
//! length limit included, before a caller allocates or reads a single payload byte. For byte
//! buffers, [`Frame::check`] says whether a whole frame is present and [`Frame::parse`] takes it.
//! Large f32 payloads never go through [`Frame`]: the connection layer writes the header from
//! [`encode_header`] and then the caller's buffer itself, and reads payloads straight into the
//! destination while a [`PayloadVerifier`] hashes them.

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"AG";
/// The protocol version this build speaks; a peer with another one is refused.
pub const VERSION: u8 = 2;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 24;
/// Default upper bound on a payload, in bytes (64 MiB): larger frames are refused before
/// anything is allocated.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 << 20;

const FLAG_CRC: u8 = 1;
const FLAG_SEALED: u8 = 2;
/// Bytes a sealed payload adds for its authentication tag.
pub const SEAL_TAG_LEN: usize = 16;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client's opening of the authentication handshake.
    AuthHello = 1,
    /// Server's challenge and proof.
    AuthChallenge = 2,
    /// Client's proof.
    AuthResponse = 3,
    /// Server's verdict.
    AuthResult = 4,
    /// A rank introducing itself (rendezvous or ring).
    Hello = 5,
    /// Rank 0's table of every rank's address.
    PeerTable = 6,
    /// A piece of an f32 buffer.
    Data = 7,
    /// A failure notice passed along the ring.
    Abort = 8,
    /// The sender is shutting down cleanly.
    Bye = 9,
    /// A member's heartbeat to rank 0 on the control link, with its collective progress.
    Beat = 10,
    /// Rank 0's answer to a heartbeat: which ranks are silent or behind.
    Verdict = 11,
    /// A membership message of an elastic job.
    Elastic = 16,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::AuthHello,
            2 => Kind::AuthChallenge,
            3 => Kind::AuthResponse,
            4 => Kind::AuthResult,
            5 => Kind::Hello,
            6 => Kind::PeerTable,
            7 => Kind::Data,
            8 => Kind::Abort,
            9 => Kind::Bye,
            10 => Kind::Beat,
            11 => Kind::Verdict,
            16 => Kind::Elastic,
            _ => return None,
        })
    }
}

/// Why bytes are not a valid frame. None of these panics; all leave the input untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first two bytes are not [`MAGIC`].
    #[error("bad magic bytes {0:02x?}; the peer is not an asgd process")]
    BadMagic([u8; 2]),
    /// Another protocol version.
    #[error("protocol version {0} is not supported (this build speaks {VERSION}); run the same asgd on every rank")]
    Version(u8),
    /// A kind byte this build does not know.
    #[error("unknown message type {0}")]
    UnknownKind(u8),
    /// Flag or reserved bits that must be zero are not.
    #[error("reserved header bits are set ({0:#x})")]
    Reserved(u32),
    /// The payload length exceeds the receiver's limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: usize,
        /// The receiver's limit.
        max: usize,
    },
    /// The header's CRC does not match: its fields cannot be trusted.
    #[error("header checksum mismatch (stored {expected:#010x}, computed {actual:#010x}); the stream is corrupted or out of step")]
    HeaderChecksum {
        /// From the header.
        expected: u32,
        /// Computed over what arrived.
        actual: u32,
    },
    /// The payload's CRC does not match.
    #[error("checksum mismatch (header {expected:#010x}, computed {actual:#010x}); the data was corrupted in transit")]
    Checksum {
        /// From the header.
        expected: u32,
        /// Computed over what arrived.
        actual: u32,
    },
    /// A sealed payload too short to hold its authentication tag.
    #[error("a sealed payload of {0} bytes is shorter than its {SEAL_TAG_LEN}-byte tag")]
    ShortSeal(usize),
    /// The input ended inside a frame.
    #[error("the stream ended in the middle of a frame ({got} of {need} bytes)")]
    Truncated {
        /// Bytes present.
        got: usize,
        /// Bytes the frame needs.
        need: usize,
    },
}

/// A decoded and validated header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the frame carries.
    pub kind: Kind,
    /// Kind-specific tag (sequence and op code for data frames).
    pub tag: u32,
    /// Payload bytes that follow the header; already checked against the limit.
    pub len: usize,
    /// The payload CRC to expect, when the sender computed one.
    pub crc: Option<u32>,
    /// The payload is sealed (ciphertext and tag); never together with a CRC.
    pub sealed: bool,
}

/// Builds the header for `payload`. With `checksum`, hashes the payload (one pass over it).
///
/// Errors: none; a payload longer than `u32::MAX` bytes cannot be framed and is reported as
/// [`FrameError::TooLarge`].
pub fn encode_header(kind: Kind, tag: u32, payload: &[u8], checksum: bool) -> Result<[u8; HEADER_LEN], FrameError> {
    let crc = checksum.then(|| crc32fast::hash(payload));
    encode_header_with_crc(kind, tag, payload.len(), crc)
}

/// Builds the header of a sealed frame whose payload (ciphertext and tag) is `len` bytes.
///
/// Errors: [`FrameError::TooLarge`] for `len` over `u32::MAX`.
pub fn encode_sealed_header(kind: Kind, tag: u32, len: usize) -> Result<[u8; HEADER_LEN], FrameError> {
    encode_header_fields(kind, tag, len, None, true)
}

/// Builds the header for a payload of `len` bytes whose CRC (from a [`FrameHasher`]) is
/// already known, or `None` for a payload without checksum.
///
/// Errors: [`FrameError::TooLarge`] for `len` over `u32::MAX`.
pub fn encode_header_with_crc(
    kind: Kind,
    tag: u32,
    len: usize,
    crc: Option<u32>,
) -> Result<[u8; HEADER_LEN], FrameError> {
    encode_header_fields(kind, tag, len, crc, false)
}

fn encode_header_fields(
    kind: Kind,
    tag: u32,
    len: usize,
    crc: Option<u32>,
    sealed: bool,
) -> Result<[u8; HEADER_LEN], FrameError> {
    let len = u32::try_from(len).map_err(|_| FrameError::TooLarge { len, max: u32::MAX as usize })?;
    let mut h = [0u8; HEADER_LEN];
    h[0..2].copy_from_slice(&MAGIC);
    h[2] = VERSION;
    h[3] = kind as u8;
    h[4] = if sealed {
        FLAG_SEALED
    } else if crc.is_some() {
        FLAG_CRC
    } else {
        0
    };
    h[8..12].copy_from_slice(&tag.to_le_bytes());
    h[12..16].copy_from_slice(&len.to_le_bytes());
    h[16..20].copy_from_slice(&crc.unwrap_or(0).to_le_bytes());
    let header_crc = crc32fast::hash(&h[..20]);
    h[20..24].copy_from_slice(&header_crc.to_le_bytes());
    Ok(h)
}

/// Validates a header: its CRC, magic, version, kind, reserved bits, and `len <= max_len`.
///
/// Errors: the matching [`FrameError`]; nothing is allocated either way.
pub fn decode_header(bytes: &[u8; HEADER_LEN], max_len: usize) -> Result<Header, FrameError> {
    let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let magic = [bytes[0], bytes[1]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    if bytes[2] != VERSION {
        return Err(FrameError::Version(bytes[2]));
    }
    let (expected, actual) = (word(20), crc32fast::hash(&bytes[..20]));
    if expected != actual {
        return Err(FrameError::HeaderChecksum { expected, actual });
    }
    let kind = Kind::from_u8(bytes[3]).ok_or(FrameError::UnknownKind(bytes[3]))?;
    let flags = bytes[4];
    let reserved = u32::from_le_bytes([flags & !(FLAG_CRC | FLAG_SEALED), bytes[5], bytes[6], bytes[7]]);
    if reserved != 0 || flags == FLAG_CRC | FLAG_SEALED {
        return Err(FrameError::Reserved(u32::from_le_bytes([flags, bytes[5], bytes[6], bytes[7]])));
    }
    let sealed = flags & FLAG_SEALED != 0;
    let (tag, len) = (word(8), word(12) as usize);
    if len > max_len.saturating_add(if sealed { SEAL_TAG_LEN } else { 0 }) {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    if sealed && len < SEAL_TAG_LEN {
        return Err(FrameError::ShortSeal(len));
    }
    let crc = if flags & FLAG_CRC != 0 {
        Some(word(16))
    } else if word(16) != 0 {
        return Err(FrameError::Reserved(word(16)));
    } else {
        None
    };
    Ok(Header { kind, tag, len, crc, sealed })
}

/// Computes a payload CRC from pieces, so that they can be hashed where they are produced
/// (while hot in cache) rather than in a separate pass just before sending.
#[derive(Default)]
pub struct FrameHasher(crc32fast::Hasher);

impl FrameHasher {
    /// Starts an empty CRC.
    pub fn new() -> Self {
        FrameHasher::default()
    }

    /// Feeds the next piece of payload.
    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    /// The CRC for [`encode_header_with_crc`].
    pub fn finish(self) -> u32 {
        self.0.finalize()
    }
}

/// Checks a payload against its header's CRC as the payload arrives in pieces, so each piece
/// is hashed while it is still in cache.
pub struct PayloadVerifier {
    hasher: Option<(FrameHasher, u32)>,
}

impl PayloadVerifier {
    /// Starts verifying the payload of `header`; a header without payload CRC checks nothing.
    pub fn new(header: &Header) -> Self {
        PayloadVerifier { hasher: header.crc.map(|expected| (FrameHasher::new(), expected)) }
    }

    /// Feeds the next piece of payload.
    pub fn update(&mut self, piece: &[u8]) {
        if let Some((h, _)) = &mut self.hasher {
            h.update(piece);
        }
    }

    /// Ends verification. Errors: [`FrameError::Checksum`] when the CRC differs.
    pub fn finish(self) -> Result<(), FrameError> {
        match self.hasher {
            Some((h, expected)) => {
                let actual = h.finish();
                if actual == expected {
                    Ok(())
                } else {
                    Err(FrameError::Checksum { expected, actual })
                }
            }
            None => Ok(()),
        }
    }
}

/// A whole frame with an owned payload: used for control messages, which are small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the frame carries.
    pub kind: Kind,
    /// Kind-specific tag.
    pub tag: u32,
    /// The payload bytes: for a sealed frame, the ciphertext and its tag.
    pub payload: Vec<u8>,
    /// Whether the payload is sealed; a sealed frame carries no CRC.
    pub sealed: bool,
}

impl Frame {
    /// Whether `buf` starts with a whole valid header and its payload.
    ///
    /// Returns `Ok(Some(total_len))` when a whole frame is present, `Ok(None)` when more bytes
    /// are needed (including an empty buffer), and an error as soon as the header is invalid
    /// or announces more than `max_len` payload bytes.
    pub fn check(buf: &[u8], max_len: usize) -> Result<Option<usize>, FrameError> {
        let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = decode_header(head, max_len)?;
        let total = HEADER_LEN + header.len;
        Ok((buf.len() >= total).then_some(total))
    }

    /// Takes the frame at the start of `buf`: `Ok(Some((frame, bytes_used)))`, or `Ok(None)` when
    /// the frame is not complete yet. Verifies the checksum.
    pub fn parse(buf: &[u8], max_len: usize) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(total) = Frame::check(buf, max_len)? else {
            return Ok(None);
        };
        // check() succeeded, so the header is present and valid.
        let head: &[u8; HEADER_LEN] =
            buf.first_chunk::<HEADER_LEN>().ok_or(FrameError::Truncated { got: buf.len(), need: HEADER_LEN })?;
        let header = decode_header(head, max_len)?;
        let payload = &buf[HEADER_LEN..total];
        let mut verifier = PayloadVerifier::new(&header);
        verifier.update(payload);
        verifier.finish()?;
        let frame = Frame { kind: header.kind, tag: header.tag, payload: payload.to_vec(), sealed: header.sealed };
        Ok(Some((frame, total)))
    }

    /// Parses a buffer that must hold exactly one frame and nothing else, as when a stream
    /// has ended: a partial frame is [`FrameError::Truncated`].
    pub fn parse_complete(buf: &[u8], max_len: usize) -> Result<Frame, FrameError> {
        match Frame::parse(buf, max_len)? {
            Some((frame, used)) if used == buf.len() => Ok(frame),
            Some((_, used)) => Err(FrameError::Truncated { got: buf.len(), need: used }),
            None => {
                let need = match buf.first_chunk::<HEADER_LEN>() {
                    Some(head) => HEADER_LEN + decode_header(head, max_len)?.len,
                    None => HEADER_LEN,
                };
                Err(FrameError::Truncated { got: buf.len(), need })
            }
        }
    }

    /// A frame whose payload is not sealed.
    pub fn plain(kind: Kind, tag: u32, payload: Vec<u8>) -> Frame {
        Frame { kind, tag, payload, sealed: false }
    }

    /// Encodes header and payload into one buffer; `checksum` adds a CRC to an unsealed one.
    ///
    /// Errors: [`FrameError::TooLarge`] for a payload over `u32::MAX` bytes, and
    /// [`FrameError::ShortSeal`] for a sealed payload too short to hold its tag.
    pub fn encode(&self, checksum: bool) -> Result<Vec<u8>, FrameError> {
        if self.sealed && self.payload.len() < SEAL_TAG_LEN {
            return Err(FrameError::ShortSeal(self.payload.len()));
        }
        let head = if self.sealed {
            encode_sealed_header(self.kind, self.tag, self.payload.len())?
        } else {
            encode_header(self.kind, self.tag, &self.payload, checksum)?
        };
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&head);
        out.extend_from_slice(&self.payload);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recomputes the header CRC after a test edited header fields, so that the field
    /// checks behind it are reached.
    fn reseal(b: &mut [u8]) {
        let crc = crc32fast::hash(&b[..20]);
        b[20..24].copy_from_slice(&crc.to_le_bytes());
    }

    fn frame(payload: &[u8]) -> Frame {
        Frame::plain(Kind::Data, 0xdead_beef, payload.to_vec())
    }

    #[test]
    fn round_trip_with_and_without_checksum() {
        for checksum in [true, false] {
            let f = frame(b"hello world");
            let bytes = f.encode(checksum).unwrap();
            assert_eq!(bytes.len(), HEADER_LEN + 11);
            assert_eq!(Frame::check(&bytes, 1024), Ok(Some(bytes.len())));
            let (back, used) = Frame::parse(&bytes, 1024).unwrap().unwrap();
            assert_eq!(back, f);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn crc_from_pieces_matches_the_one_pass_header() {
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut h = FrameHasher::new();
        for piece in payload.chunks(333) {
            h.update(piece);
        }
        let from_pieces = encode_header_with_crc(Kind::Data, 5, payload.len(), Some(h.finish())).unwrap();
        assert_eq!(from_pieces, encode_header(Kind::Data, 5, &payload, true).unwrap());
    }

    #[test]
    fn empty_payload_round_trips() {
        let f = Frame::plain(Kind::Bye, 0, vec![]);
        let bytes = f.encode(true).unwrap();
        assert_eq!(Frame::parse_complete(&bytes, 0).unwrap(), f);
    }

    #[test]
    fn every_truncation_is_incomplete_not_an_error() {
        let bytes = frame(&[7u8; 100]).encode(true).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(Frame::check(&bytes[..cut], 1024), Ok(None), "cut at {cut}");
            assert!(Frame::parse(&bytes[..cut], 1024).unwrap().is_none());
            // At end of stream the same cut is an error, except an empty buffer is a clean end
            // that callers handle before parsing.
            let err = Frame::parse_complete(&bytes[..cut], 1024).unwrap_err();
            assert!(matches!(err, FrameError::Truncated { got, .. } if got == cut), "{err:?}");
        }
    }

    #[test]
    fn oversized_frame_is_refused_from_the_header_alone() {
        // Announce 4 GiB - 1 of payload; only the header is present.
        let head = encode_header_with_crc(Kind::Data, 1, u32::MAX as usize, Some(0)).unwrap();
        assert_eq!(Frame::check(&head, 1 << 20), Err(FrameError::TooLarge { len: u32::MAX as usize, max: 1 << 20 }));
        // Exactly at the limit is fine.
        let bytes = frame(&[1u8; 64]).encode(true).unwrap();
        assert!(Frame::parse(&bytes, 64).unwrap().is_some());
        assert!(matches!(Frame::parse(&bytes, 63), Err(FrameError::TooLarge { len: 64, max: 63 })));
    }

    #[test]
    fn corrupted_payload_or_header_fails_its_checksum() {
        let bytes = frame(&[3u8; 40]).encode(true).unwrap();
        let mut bad = bytes.clone();
        bad[HEADER_LEN + 5] ^= 1;
        assert!(matches!(Frame::parse(&bad, 1024), Err(FrameError::Checksum { .. })));
        let mut bad_tag = bytes.clone();
        bad_tag[9] ^= 0x10;
        assert!(matches!(Frame::check(&bad_tag, 1024), Err(FrameError::HeaderChecksum { .. })));
    }

    #[test]
    fn garbage_headers_are_named() {
        let good = frame(b"x").encode(true).unwrap();
        let mut b = good.clone();
        b[0] = b'H';
        assert_eq!(Frame::check(&b, 10), Err(FrameError::BadMagic([b'H', b'G'])));
        let mut b = good.clone();
        b[2] = 9;
        assert_eq!(Frame::check(&b, 10), Err(FrameError::Version(9)));
        let mut b = good.clone();
        b[3] = 200;
        assert!(matches!(Frame::check(&b, 10), Err(FrameError::HeaderChecksum { .. })));
        reseal(&mut b);
        assert_eq!(Frame::check(&b, 10), Err(FrameError::UnknownKind(200)));
        let mut b = good.clone();
        b[6] = 1;
        reseal(&mut b);
        assert!(matches!(Frame::check(&b, 10), Err(FrameError::Reserved(_))));
        let mut b = frame(b"x").encode(false).unwrap();
        b[17] = 1; // a payload crc without the flag
        reseal(&mut b);
        assert!(matches!(Frame::check(&b, 10), Err(FrameError::Reserved(_))));
        // Without payload checksums the header is still covered: a flipped length bit is
        // caught before the length is believed.
        let mut b = frame(b"x").encode(false).unwrap();
        b[12] ^= 2;
        assert!(matches!(Frame::check(&b, 10), Err(FrameError::HeaderChecksum { .. })));
        // An HTTP request is not a frame.
        assert!(Frame::check(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1 << 20).is_err());
    }

    #[test]
    fn two_frames_back_to_back_parse_one_at_a_time() {
        let mut bytes = frame(b"first").encode(true).unwrap();
        bytes.extend(Frame::plain(Kind::Abort, 2, b"second".to_vec()).encode(false).unwrap());
        let (a, used) = Frame::parse(&bytes, 100).unwrap().unwrap();
        assert_eq!(a.payload, b"first");
        let (b, used2) = Frame::parse(&bytes[used..], 100).unwrap().unwrap();
        assert_eq!((b.kind, b.payload.as_slice()), (Kind::Abort, &b"second"[..]));
        assert_eq!(used + used2, bytes.len());
    }

    #[test]
    fn pseudo_random_garbage_never_panics() {
        // A cheap in-tree stand-in for the fuzz target: xorshift bytes, with and without a
        // valid magic and version so the decoder gets past the first checks.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 2 == 0 && buf.len() >= 4 {
                buf[..3].copy_from_slice(&[b'A', b'G', VERSION]);
                buf[3] = (next() % 13) as u8;
            }
            if i % 7 == 0 {
                // A valid frame, then a random bit flipped in it: must decode or be refused.
                let len = (next() % 12) as usize;
                let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                buf = Frame::plain(Kind::Data, next() as u32, payload).encode(i % 2 == 0).unwrap();
                let bit = (next() % (buf.len() as u64 * 8)) as usize;
                buf[bit / 8] ^= 1 << (bit % 8);
                // Caught unless it hit a payload that has no CRC.
                if bit / 8 < HEADER_LEN || i % 2 == 0 {
                    assert!(Frame::parse(&buf, 32).is_err(), "a flipped bit {bit} went unnoticed");
                }
            }
            if let Ok(Some((frame, used))) = Frame::parse(&buf, 32) {
                // Every header is CRC-covered, so whatever decodes re-encodes to the same bytes.
                assert_eq!(frame.encode(buf[4] & 1 == 1).unwrap(), buf[..used]);
            }
            let _ = Frame::parse_complete(&buf, 32);
        }
    }
}

/// Property tests: the stable-toolchain counterpart of the cargo-fuzz target in `comm/fuzz`,
/// small enough to run with every `cargo test`.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 256;

    fn config() -> ProptestConfig {
        ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() }
    }

    fn kind() -> impl Strategy<Value = Kind> {
        (1u8..=11).prop_map(|k| Kind::from_u8(k).unwrap_or(Kind::Data))
    }

    /// A valid frame: any kind, tag and payload, with a CRC, without, or sealed.
    fn valid_frame() -> impl Strategy<Value = (Frame, bool)> {
        (kind(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..64), 0u8..3).prop_map(
            |(kind, tag, mut payload, mode)| {
                let sealed = mode == 2;
                if sealed && payload.len() < SEAL_TAG_LEN {
                    payload.resize(SEAL_TAG_LEN, 0);
                }
                (Frame { kind, tag, payload, sealed }, mode == 1)
            },
        )
    }

    /// Whatever parses must be what re-encodes to the bytes it came from.
    fn consistent(buf: &[u8]) -> Result<(), TestCaseError> {
        let _ = Frame::check(buf, MAX);
        let _ = Frame::parse_complete(buf, MAX);
        if let Ok(Some((frame, used))) = Frame::parse(buf, MAX) {
            prop_assert_eq!(used, HEADER_LEN + frame.payload.len());
            prop_assert!(frame.payload.len() <= MAX + SEAL_TAG_LEN);
            prop_assert_eq!(frame.encode(buf[4] & FLAG_CRC != 0).unwrap(), buf[..used].to_vec());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_bytes_decode_or_are_refused(buf in proptest::collection::vec(any::<u8>(), 0..128)) {
            consistent(&buf)?;
        }

        #[test]
        fn arbitrary_bytes_behind_a_valid_prefix_decode_or_are_refused(
            head in proptest::collection::vec(any::<u8>(), 0..24),
            kind in 0u8..14,
        ) {
            // Past the magic and version, so the later checks are reached too.
            let mut buf = vec![b'A', b'G', VERSION, kind];
            buf.extend(head);
            consistent(&buf)?;
        }

        #[test]
        fn valid_frames_round_trip_and_every_prefix_is_incomplete((frame, crc) in valid_frame()) {
            let bytes = frame.encode(crc).unwrap();
            let (back, used) = Frame::parse(&bytes, MAX).unwrap().unwrap();
            prop_assert_eq!(&back, &frame);
            prop_assert_eq!(used, bytes.len());
            for cut in 0..bytes.len() {
                prop_assert_eq!(Frame::parse(&bytes[..cut], MAX), Ok(None));
                prop_assert!(Frame::parse_complete(&bytes[..cut], MAX).is_err());
            }
        }

        #[test]
        fn a_flipped_bit_is_refused_unless_it_hit_an_unprotected_payload(
            (frame, crc) in valid_frame(),
            bit in any::<usize>(),
        ) {
            let mut bytes = frame.encode(crc).unwrap();
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            consistent(&bytes)?;
            // The header is always covered by its CRC, a payload with a CRC by that one; a
            // sealed payload is checked when the connection opens it, not here.
            if bit / 8 < HEADER_LEN || crc {
                prop_assert!(Frame::parse(&bytes, MAX).is_err(), "bit {} went unnoticed", bit);
            }
        }
    }
}
