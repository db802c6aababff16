//! Mutual authentication of every connection with the shared secret, and the session keys
//! that seal everything after it.
//!
//! ```text
//! client -> server  AuthHello      client nonce cn (32 random bytes)
//! server -> client  AuthChallenge  server nonce sn (32 random bytes)
//! client -> server  AuthResponse   HMAC-SHA256(K, CLIENT | th)
//! server -> client  AuthResult     HMAC-SHA256(K, SERVER | th | client proof)
//! ```
//!
//! `K` is the shared secret, or a fixed public key when there is none, and `th` is the
//! SHA-256 of the first two frames exactly as sent (headers and payloads). Fresh nonces on
//! both sides stop replays; distinct labels stop a peer from reflecting one side's proof back
//! at it. The client proves itself first, and the server answers a failed proof, a timeout or
//! anything that is not this handshake by closing the connection without a word: before it
//! proves the secret, a stranger gets 32 random bytes and nothing else, the same whether the
//! job has a secret or not. (A rank with no secret and one with a secret fail each other's
//! proof, which is how that mistake is found.)
//!
//! With a secret, and encryption not turned off, each side then derives two keys with
//! HKDF-SHA256 (salt `th`, key material the secret, info a direction label, `cn`, `sn` and
//! the client's proof), one per direction, and every later frame on the connection is sealed
//! with ChaCha20-Poly1305 under them ([`crate::transport::seal`]). The keys are bound to this
//! handshake: a relay that passed it along cannot read, alter, replay or drop what follows.
//!
//! The proofs cannot be tried against a guessed secret without the secret's holders taking
//! part, but someone who records a handshake can test guesses offline: use a long random
//! secret (e.g. 32 random hex digits), not a word.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::frame::{Frame, Kind};
use crate::transport::connection::{Connection, LinkError};
use crate::transport::seal::{SessionKeys, KEY_LEN};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of each nonce.
pub(crate) const NONCE_LEN: usize = 32;
/// Bytes of each proof.
pub(crate) const MAC_LEN: usize = 32;
const SERVER_LABEL: &[u8] = b"asgd-comm v2 server proof";
const CLIENT_LABEL: &[u8] = b"asgd-comm v2 client proof";
const CLIENT_TO_SERVER: &[u8] = b"asgd-comm v2 key client to server";
const SERVER_TO_CLIENT: &[u8] = b"asgd-comm v2 key server to client";
/// The proof key of a job without a secret: public, so such proofs only show that neither
/// side has one.
const NO_SECRET_KEY: &[u8] = b"asgd-comm v2 no shared secret";

/// Why a handshake failed, in words for the error message, and whether dialling again may
/// help (the listener was busy or cut the connection before it got to this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthFailure {
    /// One clause: what happened and, where there is one, the fix.
    pub reason: String,
    /// The connection ended before the peer said anything, so another attempt may succeed.
    pub retry: bool,
}

impl AuthFailure {
    fn new(reason: impl Into<String>) -> Self {
        AuthFailure { reason: reason.into(), retry: false }
    }
}

/// How the server side describes a connection that failed the handshake, for its log.
fn server_failure(e: LinkError) -> AuthFailure {
    AuthFailure::new(match e {
        LinkError::Closed | LinkError::Cut => "it closed the connection during the handshake".into(),
        LinkError::Io(e) if is_timeout(&e) => "it did not finish the handshake in time".into(),
        LinkError::Io(e) => format!("socket error during the handshake: {e}"),
        LinkError::Frame(e) => format!("it sent bytes that are not the asgd handshake ({e})"),
        LinkError::Unexpected(what) => format!("it sent something other than the asgd handshake ({what})"),
        LinkError::SealMismatch { .. } | LinkError::Forged => {
            "it sent a sealed frame where the handshake was due".into()
        }
        other => format!("it sent something other than the asgd handshake ({other:?})"),
    })
}

/// How the client side describes a failure while waiting for the challenge: a silent peer
/// or a closed connection may be a busy listener (retry); anything else is not asgd.
fn client_failure_before_challenge(e: LinkError) -> AuthFailure {
    match e {
        LinkError::Closed | LinkError::Cut => AuthFailure {
            reason: "it closed the connection before answering; it may be busy with other connections, or not a rank of this job".into(),
            retry: true,
        },
        LinkError::Io(e) if is_timeout(&e) => AuthFailure {
            reason: "it accepted the connection but did not answer in time; it may be overloaded or not a rank of this job".into(),
            retry: true,
        },
        LinkError::Io(e) => AuthFailure { reason: format!("socket error during the handshake: {e}"), retry: true },
        other => not_asgd(other),
    }
}

fn not_asgd(e: LinkError) -> AuthFailure {
    let what = match e {
        LinkError::Frame(e) => e.to_string(),
        LinkError::Unexpected(what) => what,
        other => format!("{other:?}"),
    };
    AuthFailure::new(format!(
        "it answered with something that is not the asgd handshake ({what}); check that MASTER_ADDR and MASTER_PORT point at rank 0 and every rank runs the same asgd version"
    ))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

fn proof_key(secret: Option<&Secret>) -> &[u8] {
    secret.map_or(NO_SECRET_KEY, Secret::bytes)
}

/// HMAC-SHA256 over `label` and `parts` with the job's key.
fn proof(secret: Option<&Secret>, label: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(proof_key(secret)).unwrap_or_else(|_| unreachable!());
    mac.update(label);
    for p in parts {
        mac.update(p);
    }
    mac
}

fn nonce() -> Result<[u8; NONCE_LEN], AuthFailure> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| AuthFailure::new(format!("the OS gave no random bytes for a nonce: {e}")))?;
    Ok(n)
}

/// SHA-256 of the hello and the challenge as they went over the wire.
fn transcript(cn: &[u8], sn: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (kind, payload) in [(Kind::AuthHello, cn), (Kind::AuthChallenge, sn)] {
        // Control frames of the handshake always carry a CRC and never fail to encode.
        let bytes = Frame::plain(kind, 0, payload.to_vec()).encode(true).unwrap_or_default();
        h.update(&bytes);
    }
    h.finalize().into()
}

/// The two directions' keys, from the client's point of view.
fn derive_keys(secret: &Secret, th: &[u8; 32], cn: &[u8], sn: &[u8], client_proof: &[u8]) -> SessionKeys {
    let hk = Hkdf::<Sha256>::new(Some(th), secret.bytes());
    let expand = |label: &[u8]| {
        let mut okm = [0u8; KEY_LEN];
        // 32 bytes is far below HKDF-SHA256's limit of 8160, so this cannot fail.
        let _ = hk.expand_multi_info(&[label, cn, sn, client_proof], &mut okm);
        okm
    };
    SessionKeys { send: expand(CLIENT_TO_SERVER), recv: expand(SERVER_TO_CLIENT) }
}

fn mismatch(secret: Option<&Secret>) -> String {
    let mine = if secret.is_some() { "this rank has one" } else { "this rank has none" };
    format!(
        "it hung up on this rank's proof, so the two do not hold the same shared secret ({mine}); give every rank the same ASGD_SECRET (or ASGD_SECRET_FILE)"
    )
}

/// Runs the handshake as the side that dialled; with a secret and `encrypt`, seals the
/// connection from then on.
///
/// Errors: why the peer is not trusted, or why it did not trust us, with the likely cause.
pub(crate) fn client_handshake(
    conn: &mut Connection,
    secret: Option<&Secret>,
    encrypt: bool,
) -> Result<(), AuthFailure> {
    let cn = nonce()?;
    conn.write_frame(Kind::AuthHello, 0, &cn).map_err(client_failure_before_challenge)?;

    let frame = conn.read_frame().map_err(client_failure_before_challenge)?;
    let frame = frame.ok_or(LinkError::Closed).map_err(client_failure_before_challenge)?;
    if frame.kind != Kind::AuthChallenge || frame.payload.len() != NONCE_LEN {
        return Err(not_asgd(LinkError::Unexpected(format!(
            "a {:?} message of {} bytes where a challenge was due",
            frame.kind,
            frame.payload.len()
        ))));
    }
    let sn = frame.payload;
    let th = transcript(&cn, &sn);
    let ours = proof(secret, CLIENT_LABEL, &[&th]).finalize().into_bytes();
    conn.write_frame(Kind::AuthResponse, 0, &ours).map_err(|_| AuthFailure::new(mismatch(secret)))?;
    let verdict = match conn.read_frame() {
        Ok(Some(f)) => f,
        Ok(None) | Err(LinkError::Closed | LinkError::Cut) => return Err(AuthFailure::new(mismatch(secret))),
        Err(LinkError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            return Err(AuthFailure::new(mismatch(secret)))
        }
        Err(LinkError::Io(e)) if is_timeout(&e) => return Err(AuthFailure::new(
            "it did not answer this rank's proof in time; it may be overloaded, or ASGD_COMM_TIMEOUT_S is too short",
        )),
        Err(e) => return Err(not_asgd(e)),
    };
    if verdict.kind != Kind::AuthResult {
        return Err(not_asgd(LinkError::Unexpected(format!("a {:?} message where its proof was due", verdict.kind))));
    }
    proof(secret, SERVER_LABEL, &[&th, &ours]).verify_slice(&verdict.payload).map_err(|_| {
        AuthFailure::new(
            "it accepted this rank's proof but could not prove it holds the shared secret itself, so what answers at that address is not a rank of this job",
        )
    })?;
    if let (Some(secret), true) = (secret, encrypt) {
        conn.start_sealing(&derive_keys(secret, &th, &cn, &sn, &ours));
    }
    Ok(())
}

/// Runs the handshake as the side that accepted; with a secret and `encrypt`, seals the
/// connection from then on. On any failure it sends nothing more: the caller closes.
///
/// Errors: the reason the peer is not trusted, for the log.
pub(crate) fn server_handshake(
    conn: &mut Connection,
    secret: Option<&Secret>,
    encrypt: bool,
) -> Result<(), AuthFailure> {
    let hello = conn.read_frame().map_err(server_failure)?.ok_or(LinkError::Closed).map_err(server_failure)?;
    if hello.kind != Kind::AuthHello || hello.payload.len() != NONCE_LEN {
        return Err(server_failure(LinkError::Unexpected(format!(
            "a {:?} message of {} bytes",
            hello.kind,
            hello.payload.len()
        ))));
    }
    let cn = hello.payload;
    let sn = nonce()?;
    conn.write_frame(Kind::AuthChallenge, 0, &sn).map_err(server_failure)?;
    let th = transcript(&cn, &sn);
    let response = conn.read_frame().map_err(server_failure)?.ok_or(LinkError::Closed).map_err(server_failure)?;
    if response.kind != Kind::AuthResponse || response.payload.len() != MAC_LEN {
        return Err(server_failure(LinkError::Unexpected(format!(
            "a {:?} message of {} bytes",
            response.kind,
            response.payload.len()
        ))));
    }
    proof(secret, CLIENT_LABEL, &[&th]).verify_slice(&response.payload).map_err(|_| {
        AuthFailure::new("it could not prove it holds the shared secret (it has a different secret, or none)")
    })?;
    let theirs = response.payload;
    let ours = proof(secret, SERVER_LABEL, &[&th, &theirs]).finalize().into_bytes();
    conn.write_frame(Kind::AuthResult, 0, &ours).map_err(server_failure)?;
    if let (Some(secret), true) = (secret, encrypt) {
        let keys = derive_keys(secret, &th, &cn, &sn, &theirs);
        conn.start_sealing(&SessionKeys { send: keys.recv, recv: keys.send });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::connection::Pacer;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn conn(s: TcpStream) -> Connection {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Connection::new(s, 4096, true, Pacer::new(Duration::ZERO, None)).unwrap()
    }

    type Outcome = Result<Connection, AuthFailure>;

    /// Runs both sides over loopback; returns (client result, server result).
    fn handshake(client_secret: Option<&str>, server_secret: Option<&str>) -> (Outcome, Outcome) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server_secret = server_secret.map(|s| Secret::new(s).unwrap());
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut c = conn(s);
            // Closing at once on failure, as the rendezvous does.
            server_handshake(&mut c, server_secret.as_ref(), true).map(|()| c)
        });
        let client_secret = client_secret.map(|s| Secret::new(s).unwrap());
        let mut c = conn(TcpStream::connect(addr).unwrap());
        let client = client_handshake(&mut c, client_secret.as_ref(), true).map(|()| c);
        (client, server.join().unwrap())
    }

    #[test]
    fn same_secret_passes_both_ways_and_seals_the_connection() {
        let (c, s) = handshake(Some("k"), Some("k"));
        let (mut c, mut s) = (c.unwrap(), s.unwrap());
        assert!(c.is_sealed() && s.is_sealed());
        c.write_frame(Kind::Hello, 3, b"hi").unwrap();
        assert_eq!(s.read_frame().unwrap().unwrap().payload, b"hi");
        s.write_frame(Kind::Hello, 4, b"there").unwrap();
        assert_eq!(c.read_frame().unwrap().unwrap().payload, b"there");

        let (c, s) = handshake(None, None);
        assert!(!c.unwrap().is_sealed() && !s.unwrap().is_sealed());
    }

    #[test]
    fn wrong_secret_fails_both_sides_with_the_cause() {
        let (c, s) = handshake(Some("wrong"), Some("right"));
        let c = c.err().unwrap();
        assert!(c.reason.contains("same shared secret") && c.reason.contains("ASGD_SECRET") && !c.retry, "{c:?}");
        assert!(s.err().unwrap().reason.contains("different secret"));
    }

    #[test]
    fn missing_secret_on_either_side_fails_and_says_which() {
        let (c, s) = handshake(None, Some("k"));
        assert!(c.err().unwrap().reason.contains("this rank has none"));
        assert!(s.is_err());
        let (c, s) = handshake(Some("k"), None);
        assert!(c.err().unwrap().reason.contains("this rank has one"));
        assert!(s.is_err());
    }

    /// What a stranger sees of a server: 32 bytes of challenge, the same shape with a secret
    /// and without, and then a silent close when it sends a wrong proof.
    fn what_a_stranger_sees(secret: Option<&str>) -> (Vec<u8>, usize) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let secret = secret.map(|s| Secret::new(s).unwrap());
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut c = conn(s);
            let r = server_handshake(&mut c, secret.as_ref(), true);
            drop(c);
            r
        });
        let mut raw = TcpStream::connect(addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        raw.write_all(&Frame::plain(Kind::AuthHello, 0, vec![7; NONCE_LEN]).encode(true).unwrap()).unwrap();
        let mut challenge = vec![0u8; crate::frame::HEADER_LEN + NONCE_LEN];
        raw.read_exact(&mut challenge).unwrap();
        raw.write_all(&Frame::plain(Kind::AuthResponse, 0, vec![0; MAC_LEN]).encode(true).unwrap()).unwrap();
        let mut rest = Vec::new();
        let _ = raw.read_to_end(&mut rest);
        assert!(server.join().unwrap().is_err());
        (challenge, rest.len())
    }

    #[test]
    fn a_stranger_learns_nothing_not_even_whether_there_is_a_secret() {
        let (with, after_with) = what_a_stranger_sees(Some("k"));
        let (without, after_without) = what_a_stranger_sees(None);
        // Same header (kind, length, flags), random payloads, and nothing after a bad proof.
        let header = |b: &[u8]| (b[..4].to_vec(), b[4..16].to_vec());
        assert_eq!(header(&with), header(&without));
        assert_ne!(with[crate::frame::HEADER_LEN..], without[crate::frame::HEADER_LEN..]);
        assert_eq!((after_with, after_without), (0, 0));
    }

    /// Property tests: a peer that sends arbitrary bytes, or a valid opening followed by
    /// arbitrary bytes, never panics either side and never gets through.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Plays `bytes` at a handshake of `side` over loopback and returns its result.
        fn feed(bytes: Vec<u8>, server: bool) -> Result<(), AuthFailure> {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let peer = std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let _ = s.write_all(&bytes);
                // Close the write side so the handshake sees the end instead of waiting.
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            });
            let (s, _) = listener.accept().unwrap();
            let mut c = conn(s);
            let secret = Secret::new("k").unwrap();
            let result = if server {
                server_handshake(&mut c, Some(&secret), true)
            } else {
                client_handshake(&mut c, Some(&secret), true)
            };
            drop(c);
            peer.join().unwrap();
            result
        }

        fn opening(kind: Kind, len: usize) -> Vec<u8> {
            Frame::plain(kind, 0, vec![3; len]).encode(true).unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn garbage_never_gets_through_a_server(
                tail in proptest::collection::vec(any::<u8>(), 0..120),
                valid_opening in any::<bool>(),
            ) {
                let mut bytes = if valid_opening { opening(Kind::AuthHello, NONCE_LEN) } else { Vec::new() };
                bytes.extend(tail);
                prop_assert!(feed(bytes, true).is_err());
            }

            #[test]
            fn garbage_never_gets_through_a_client(
                tail in proptest::collection::vec(any::<u8>(), 0..120),
                valid_challenge in any::<bool>(),
            ) {
                let mut bytes = if valid_challenge { opening(Kind::AuthChallenge, NONCE_LEN) } else { Vec::new() };
                bytes.extend(tail);
                prop_assert!(feed(bytes, false).is_err());
            }
        }
    }

    #[test]
    fn proofs_differ_by_label_so_reflection_fails() {
        let k = Secret::new("k").unwrap();
        let a = proof(Some(&k), SERVER_LABEL, &[&[1; 32]]).finalize().into_bytes();
        let b = proof(Some(&k), CLIENT_LABEL, &[&[1; 32]]).finalize().into_bytes();
        assert_ne!(a, b);
    }

    #[test]
    fn keys_differ_per_direction_and_per_handshake() {
        let k = Secret::new("k").unwrap();
        let one = derive_keys(&k, &transcript(&[1; 32], &[2; 32]), &[1; 32], &[2; 32], &[3; 32]);
        let two = derive_keys(&k, &transcript(&[1; 32], &[9; 32]), &[1; 32], &[9; 32], &[3; 32]);
        assert_ne!(one.send, one.recv);
        assert_ne!(one.send, two.send);
        assert_ne!(one.recv, two.recv);
    }
}
