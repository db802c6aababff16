//! Sealing frames with ChaCha20-Poly1305 once a connection's handshake has given it keys.
//!
//! Each direction of a connection has its own key and its own frame counter; the counter is
//! the nonce, so no nonce repeats under a key, and it is never sent: a frame the receiver did
//! not expect next (replayed, reordered, or after a dropped one) fails its tag just as an
//! altered one does. The frame header is the associated data, so kind, tag and length are
//! covered too.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};

use crate::frame::{HEADER_LEN, SEAL_TAG_LEN};

/// Bytes of a session key.
pub(crate) const KEY_LEN: usize = 32;

/// The two keys of one connection, as seen from one end.
#[derive(Clone)]
pub(crate) struct SessionKeys {
    /// Seals what this end sends.
    pub send: [u8; KEY_LEN],
    /// Opens what this end receives.
    pub recv: [u8; KEY_LEN],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

/// One direction: a cipher and the number of frames it has sealed or opened.
pub(crate) struct Direction {
    cipher: ChaCha20Poly1305,
    counter: u64,
}

/// The received frame does not carry a valid tag for the next frame expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forged;

impl Direction {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Direction {
        Direction { cipher: ChaCha20Poly1305::new(Key::from_slice(key)), counter: 0 }
    }

    fn nonce(&self) -> Nonce {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&self.counter.to_le_bytes());
        Nonce::from(n)
    }

    /// Encrypts `buf` in place under the next nonce, with `header` as associated data.
    pub(crate) fn seal(&mut self, header: &[u8; HEADER_LEN], buf: &mut [u8]) -> [u8; SEAL_TAG_LEN] {
        // Encryption fails only for messages over 256 GiB, far beyond the frame limit.
        let tag = self.cipher.encrypt_in_place_detached(&self.nonce(), header, buf).unwrap_or_default();
        self.counter += 1;
        tag.into()
    }

    /// Checks `tag` and decrypts `buf` in place; on failure `buf` is garbage and the
    /// connection must not be used again.
    pub(crate) fn open(
        &mut self,
        header: &[u8; HEADER_LEN],
        buf: &mut [u8],
        tag: &[u8; SEAL_TAG_LEN],
    ) -> Result<(), Forged> {
        let result = self.cipher.decrypt_in_place_detached(&self.nonce(), header, buf, Tag::from_slice(tag));
        self.counter += 1;
        result.map_err(|_| Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: [u8; HEADER_LEN] = [9; HEADER_LEN];

    #[test]
    fn sealed_round_trips_and_any_change_fails() {
        let (mut tx, mut rx) = (Direction::new(&[1; KEY_LEN]), Direction::new(&[1; KEY_LEN]));
        let msg = b"the gradients".to_vec();
        let mut buf = msg.clone();
        let tag = tx.seal(&HEAD, &mut buf);
        assert_ne!(buf, msg);
        let mut copy = buf.clone();
        rx.open(&HEAD, &mut copy, &tag).unwrap();
        assert_eq!(copy, msg);

        // The next frame, with one bit flipped, or under the wrong header, fails.
        let mut buf = msg.clone();
        let tag = tx.seal(&HEAD, &mut buf);
        let mut flipped = buf.clone();
        flipped[0] ^= 1;
        assert_eq!(
            Direction { counter: 1, ..Direction::new(&[1; KEY_LEN]) }.open(&HEAD, &mut flipped, &tag),
            Err(Forged)
        );
        let mut other_head = HEAD;
        other_head[8] ^= 1;
        let mut same = buf.clone();
        let mut rx2 = Direction { counter: 1, ..Direction::new(&[1; KEY_LEN]) };
        assert_eq!(rx2.open(&other_head, &mut same, &tag), Err(Forged));
        // The untouched frame opens at counter 1.
        rx.open(&HEAD, &mut buf, &tag).unwrap();
        assert_eq!(buf, msg);
    }

    #[test]
    fn a_replayed_or_skipped_frame_fails() {
        let mut tx = Direction::new(&[7; KEY_LEN]);
        let frames: Vec<(Vec<u8>, [u8; SEAL_TAG_LEN])> = (0..3u8)
            .map(|i| {
                let mut b = vec![i; 8];
                let t = tx.seal(&HEAD, &mut b);
                (b, t)
            })
            .collect();
        let mut rx = Direction::new(&[7; KEY_LEN]);
        let (mut b0, t0) = frames[0].clone();
        rx.open(&HEAD, &mut b0, &t0).unwrap();
        // Frame 0 again (a replay) where frame 1 is due.
        let (mut again, t0) = frames[0].clone();
        assert_eq!(rx.open(&HEAD, &mut again, &t0), Err(Forged));
        // Frame 2 (frame 1 dropped) where frame 1 was due.
        let mut rx = Direction::new(&[7; KEY_LEN]);
        let (mut b0, t0) = frames[0].clone();
        rx.open(&HEAD, &mut b0, &t0).unwrap();
        let (mut b2, t2) = frames[2].clone();
        assert_eq!(rx.open(&HEAD, &mut b2, &t2), Err(Forged));
        // The other key cannot open anything.
        let (mut b0, t0) = frames[0].clone();
        assert_eq!(Direction::new(&[8; KEY_LEN]).open(&HEAD, &mut b0, &t0), Err(Forged));
    }
}
