//! Mutual authentication of every connection with the shared secret: HMAC-SHA256
//! challenge-response, so the secret never crosses the wire and each side proves itself.
//!
//! ```text
//! client -> server  AuthHello      mode, client nonce (32 random bytes)
//! server -> client  AuthChallenge  mode, server nonce, HMAC(secret, SERVER | cn | sn)
//! client -> server  AuthResponse   HMAC(secret, CLIENT | cn | sn)
//! server -> client  AuthResult     1, or 0 and a reason
//! ```
//!
//! Fresh nonces on both sides stop replays; distinct labels for the two proofs stop a peer
//! from reflecting one side's proof back at it. Mode 0 (no secret) is accepted only when both
//! sides have none, and then the exchange stops after the challenge. This authenticates
//! peers; it does not encrypt or sign the data that follows.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;
use crate::frame::Kind;
use crate::transport::connection::{Connection, LinkError};

type HmacSha256 = Hmac<Sha256>;

const NONCE_LEN: usize = 32;
const MAC_LEN: usize = 32;
const SERVER_LABEL: &[u8] = b"asgd-comm v1 server proof";
const CLIENT_LABEL: &[u8] = b"asgd-comm v1 client proof";

const MODE_NONE: u8 = 0;
const MODE_HMAC: u8 = 1;

/// Why a handshake failed, in words for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthFailure(pub String);

impl From<LinkError> for AuthFailure {
    fn from(e: LinkError) -> Self {
        AuthFailure(match e {
            LinkError::Closed | LinkError::Cut => {
                "the peer closed the connection during the handshake (it may hold a different secret)".into()
            }
            LinkError::Io(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                "the peer did not answer the handshake in time".into()
            }
            LinkError::Io(e) => format!("socket error during the handshake: {e}"),
            LinkError::Frame(e) => format!("bad frame during the handshake: {e}"),
            other => format!("unexpected message during the handshake: {other:?}"),
        })
    }
}

/// The proof one side sends: HMAC-SHA256 over a label and both nonces.
fn proof(secret: &Secret, label: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(label);
    mac.update(client_nonce);
    mac.update(server_nonce);
    mac
}

fn nonce() -> Result<[u8; NONCE_LEN], AuthFailure> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| AuthFailure(format!("the OS gave no random bytes for a nonce: {e}")))?;
    Ok(n)
}

fn mode_of(secret: Option<&Secret>) -> u8 {
    if secret.is_some() {
        MODE_HMAC
    } else {
        MODE_NONE
    }
}

fn mismatch(server_has_secret: bool) -> String {
    if server_has_secret {
        "the accepting rank has a shared secret and the connecting one does not".into()
    } else {
        "the connecting rank has a shared secret and the accepting one does not".into()
    }
}

/// Runs the handshake as the side that dialled.
///
/// Errors: the reason the peer is not trusted, or why it did not trust us.
pub(crate) fn client_handshake(conn: &mut Connection, secret: Option<&Secret>) -> Result<(), AuthFailure> {
    let mode = mode_of(secret);
    let cn = nonce()?;
    let mut hello = vec![mode];
    if mode == MODE_HMAC {
        hello.extend_from_slice(&cn);
    }
    conn.write_frame(Kind::AuthHello, 0, &hello)?;

    let frame = conn.read_frame()?.ok_or(LinkError::Closed)?;
    match frame.kind {
        Kind::AuthChallenge => {}
        Kind::AuthResult => return Err(AuthFailure(format!("the peer refused us: {}", result_reason(&frame.payload)))),
        other => return Err(AuthFailure(format!("expected a challenge, got a {other:?} message"))),
    }
    let p = &frame.payload;
    match (secret, p.first().copied()) {
        (None, Some(MODE_NONE)) if p.len() == 1 => Ok(()),
        (Some(secret), Some(MODE_HMAC)) if p.len() == 1 + NONCE_LEN + MAC_LEN => {
            let sn = &p[1..1 + NONCE_LEN];
            let server_mac = &p[1 + NONCE_LEN..];
            proof(secret, SERVER_LABEL, &cn, sn)
                .verify_slice(server_mac)
                .map_err(|_| AuthFailure("the peer could not prove it knows the shared secret".into()))?;
            let ours = proof(secret, CLIENT_LABEL, &cn, sn).finalize().into_bytes();
            conn.write_frame(Kind::AuthResponse, 0, &ours)?;
            let verdict = conn.expect_frame(Kind::AuthResult)?;
            if verdict.payload.first() == Some(&1) {
                Ok(())
            } else {
                Err(AuthFailure(format!("the peer refused us: {}", result_reason(&verdict.payload))))
            }
        }
        (_, Some(m)) if m == MODE_NONE || m == MODE_HMAC => Err(AuthFailure(mismatch(m == MODE_HMAC))),
        _ => Err(AuthFailure("the challenge does not decode".into())),
    }
}

/// Runs the handshake as the side that accepted; on failure tells the peer why (best effort).
///
/// Errors: the reason the peer is not trusted.
pub(crate) fn server_handshake(conn: &mut Connection, secret: Option<&Secret>) -> Result<(), AuthFailure> {
    let result = server_steps(conn, secret);
    if let Err(AuthFailure(reason)) = &result {
        let mut payload = vec![0u8];
        payload.extend_from_slice(reason.as_bytes());
        let _ = conn.write_frame(Kind::AuthResult, 0, &payload);
    }
    result
}

fn server_steps(conn: &mut Connection, secret: Option<&Secret>) -> Result<(), AuthFailure> {
    let hello = conn.expect_frame(Kind::AuthHello)?;
    let p = &hello.payload;
    match (secret, p.first().copied()) {
        (None, Some(MODE_NONE)) if p.len() == 1 => {
            conn.write_frame(Kind::AuthChallenge, 0, &[MODE_NONE])?;
            Ok(())
        }
        (Some(secret), Some(MODE_HMAC)) if p.len() == 1 + NONCE_LEN => {
            let cn = &p[1..];
            let sn = nonce()?;
            let mut challenge = vec![MODE_HMAC];
            challenge.extend_from_slice(&sn);
            challenge.extend_from_slice(&proof(secret, SERVER_LABEL, cn, &sn).finalize().into_bytes());
            conn.write_frame(Kind::AuthChallenge, 0, &challenge)?;
            let response = conn.expect_frame(Kind::AuthResponse)?;
            proof(secret, CLIENT_LABEL, cn, &sn)
                .verify_slice(&response.payload)
                .map_err(|_| AuthFailure("the peer could not prove it knows the shared secret".into()))?;
            conn.write_frame(Kind::AuthResult, 0, &[1])?;
            Ok(())
        }
        (_, Some(m)) if m == MODE_NONE || m == MODE_HMAC => Err(AuthFailure(mismatch(secret.is_some()))),
        _ => Err(AuthFailure("the hello does not decode".into())),
    }
}

fn result_reason(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload.get(1..).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::connection::Pacer;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn conn(s: TcpStream) -> Connection {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Connection::new(s, 4096, true, Pacer::new(Duration::ZERO, None)).unwrap()
    }

    /// Runs both sides over loopback; returns (client result, server result).
    fn handshake(
        client_secret: Option<&str>,
        server_secret: Option<&str>,
    ) -> (Result<(), AuthFailure>, Result<(), AuthFailure>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server_secret = server_secret.map(|s| Secret::new(s).unwrap());
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            server_handshake(&mut conn(s), server_secret.as_ref())
        });
        let client_secret = client_secret.map(|s| Secret::new(s).unwrap());
        let c = client_handshake(&mut conn(TcpStream::connect(addr).unwrap()), client_secret.as_ref());
        (c, server.join().unwrap())
    }

    #[test]
    fn same_secret_passes_both_ways() {
        assert_eq!(handshake(Some("k"), Some("k")), (Ok(()), Ok(())));
        assert_eq!(handshake(None, None), (Ok(()), Ok(())));
    }

    #[test]
    fn wrong_secret_fails_both_sides() {
        let (c, s) = handshake(Some("wrong"), Some("right"));
        assert!(c.unwrap_err().0.contains("could not prove"));
        assert!(s.is_err());
    }

    #[test]
    fn missing_secret_on_either_side_fails() {
        let (c, s) = handshake(None, Some("k"));
        assert!(c.unwrap_err().0.contains("refused"));
        assert!(s.unwrap_err().0.contains("the accepting rank has a shared secret"));
        let (c, s) = handshake(Some("k"), None);
        assert!(c.is_err() && s.is_err());
    }

    #[test]
    fn proofs_differ_by_label_so_reflection_fails() {
        let k = Secret::new("k").unwrap();
        let a = proof(&k, SERVER_LABEL, &[1; 32], &[2; 32]).finalize().into_bytes();
        let b = proof(&k, CLIENT_LABEL, &[1; 32], &[2; 32]).finalize().into_bytes();
        assert_ne!(a, b);
    }
}
