//! Payloads of the control frames (hello, peer table, abort notice, heartbeat, verdict), as pure encode/decode
//! functions. Decoding checks every length against the bytes present and rejects trailing
//! bytes, so a hostile or garbled payload is an error, never a panic or a huge allocation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::Op;

/// Why a control payload did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageError(pub &'static str);

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Why a connection is being opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A rank joining through rank 0's rendezvous port.
    Join,
    /// A rank connecting to its successor in the ring.
    Ring,
    /// A rank joining an elastic job through rank 0's port (at the start or mid-run).
    Elastic,
}

/// The first message after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    pub purpose: Purpose,
    pub rank: u32,
    pub world_size: u32,
    /// Port this rank listens on for its ring predecessor (0 for `Ring` hellos).
    pub port: u16,
    /// Address the rank asks to be reached at; `None` lets rank 0 use the source address it sees.
    pub advertise: Option<IpAddr>,
}

/// Why a rank stopped: passed along the ring so that every rank names the same culprit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AbortNotice {
    pub suspect: u32,
    pub reporter: u32,
    pub op: Op,
    /// The reporter received a frame from the suspect that failed its authentication tag:
    /// the link between them is at fault, not the suspect's process.
    pub tampered: bool,
    pub reason: String,
}

/// A member's heartbeat: how far its comm thread has got, so rank 0 can tell a rank that
/// stopped calling collectives from one that is waiting inside one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Beat {
    /// Collectives the comm thread has started, the one in progress included.
    pub started: u64,
    /// Whether a collective is in progress.
    pub inside: bool,
}

/// What rank 0's liveness service believes is wrong with one rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suspicion {
    /// No heartbeat for longer than the silence limit: the process is stopped or stuck.
    Silent,
    /// Heartbeats arrive, but it has started fewer collectives than another rank and has
    /// not moved, outside any collective, for longer than the silence limit.
    Behind,
}

/// One entry of rank 0's verdict: a rank, what is suspected, and for how long (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flag {
    pub rank: u32,
    pub suspicion: Suspicion,
    pub for_ms: u32,
}

/// Bytes of one encoded [`Flag`].
const FLAG_BYTES: usize = 9;

/// Longest abort reason sent; longer ones are cut at a character boundary.
const MAX_REASON_BYTES: usize = 1024;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MessageError> {
        if self.0.len() < n {
            return Err(MessageError("the message is shorter than its fields"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, MessageError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, MessageError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, MessageError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn ip(&mut self) -> Result<Option<IpAddr>, MessageError> {
        match self.u8()? {
            0 => Ok(None),
            4 => {
                let b = self.take(4)?;
                Ok(Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))))
            }
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.take(16)?);
                Ok(Some(IpAddr::V6(Ipv6Addr::from(a))))
            }
            _ => Err(MessageError("unknown address family")),
        }
    }
    fn finish(self) -> Result<(), MessageError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(MessageError("the message has trailing bytes"))
        }
    }
}

fn put_ip(out: &mut Vec<u8>, ip: Option<IpAddr>) {
    match ip {
        None => out.push(0),
        Some(IpAddr::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

impl Hello {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.push(match self.purpose {
            Purpose::Join => 1,
            Purpose::Ring => 2,
            Purpose::Elastic => 3,
        });
        out.extend_from_slice(&self.rank.to_le_bytes());
        out.extend_from_slice(&self.world_size.to_le_bytes());
        out.extend_from_slice(&self.port.to_le_bytes());
        put_ip(&mut out, self.advertise);
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Hello, MessageError> {
        let mut r = Reader(buf);
        let purpose = match r.u8()? {
            1 => Purpose::Join,
            2 => Purpose::Ring,
            3 => Purpose::Elastic,
            _ => return Err(MessageError("unknown hello purpose")),
        };
        let hello = Hello { purpose, rank: r.u32()?, world_size: r.u32()?, port: r.u16()?, advertise: r.ip()? };
        r.finish()?;
        Ok(hello)
    }
}

/// Rank 0's answer to a join: every rank's ring address; rank 0's own entry is `None`, as each
/// rank reaches rank 0 at the master address it already used.
pub(crate) fn encode_table(table: &[Option<SocketAddr>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + table.len() * 19);
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    for entry in table {
        put_ip(&mut out, entry.map(|a| a.ip()));
        out.extend_from_slice(&entry.map_or(0, |a| a.port()).to_le_bytes());
    }
    out
}

/// Decodes a peer table that must have `world_size` entries.
pub(crate) fn decode_table(buf: &[u8], world_size: usize) -> Result<Vec<Option<SocketAddr>>, MessageError> {
    let mut r = Reader(buf);
    let n = r.u32()? as usize;
    if n != world_size {
        return Err(MessageError("the peer table has a different number of ranks than WORLD_SIZE"));
    }
    // Each entry takes at least 3 bytes; checking first keeps a bogus count from allocating.
    if buf.len() < 4 + 3 * n {
        return Err(MessageError("the message is shorter than its fields"));
    }
    let mut table = Vec::with_capacity(n);
    for _ in 0..n {
        let ip = r.ip()?;
        let port = r.u16()?;
        table.push(ip.map(|ip| SocketAddr::new(ip, port)));
    }
    r.finish()?;
    Ok(table)
}

impl AbortNotice {
    pub fn encode(&self) -> Vec<u8> {
        let mut reason = self.reason.as_str();
        if reason.len() > MAX_REASON_BYTES {
            let mut cut = MAX_REASON_BYTES;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason = &reason[..cut];
        }
        let mut out = Vec::with_capacity(14 + reason.len());
        out.extend_from_slice(&self.suspect.to_le_bytes());
        out.extend_from_slice(&self.reporter.to_le_bytes());
        out.push(self.op.code() as u8);
        out.push(u8::from(self.tampered));
        out.extend_from_slice(&(reason.len() as u32).to_le_bytes());
        out.extend_from_slice(reason.as_bytes());
        out
    }

    pub fn decode(buf: &[u8]) -> Result<AbortNotice, MessageError> {
        let mut r = Reader(buf);
        let suspect = r.u32()?;
        let reporter = r.u32()?;
        let op = Op::from_code(u32::from(r.u8()?)).ok_or(MessageError("unknown operation code"))?;
        let tampered = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(MessageError("unknown kind of abort notice")),
        };
        let len = r.u32()? as usize;
        let reason = String::from_utf8_lossy(r.take(len)?).into_owned();
        r.finish()?;
        Ok(AbortNotice { suspect, reporter, op, tampered, reason })
    }
}

impl Beat {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9);
        out.extend_from_slice(&self.started.to_le_bytes());
        out.push(u8::from(self.inside));
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Beat, MessageError> {
        let mut r = Reader(buf);
        let b = r.take(8)?;
        let started = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let inside = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(MessageError("a heartbeat's in-collective flag is neither 0 nor 1")),
        };
        r.finish()?;
        Ok(Beat { started, inside })
    }
}

/// Rank 0's verdict: the flagged ranks, in the order rank 0 suspects them (most likely first).
pub(crate) fn encode_verdict(flags: &[Flag]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + flags.len() * FLAG_BYTES);
    out.extend_from_slice(&(flags.len() as u32).to_le_bytes());
    for f in flags {
        out.extend_from_slice(&f.rank.to_le_bytes());
        out.push(match f.suspicion {
            Suspicion::Silent => 1,
            Suspicion::Behind => 2,
        });
        out.extend_from_slice(&f.for_ms.to_le_bytes());
    }
    out
}

/// Decodes a verdict whose ranks must be below `world_size`, at most one entry each.
pub(crate) fn decode_verdict(buf: &[u8], world_size: usize) -> Result<Vec<Flag>, MessageError> {
    let mut r = Reader(buf);
    let n = r.u32()? as usize;
    // Checking the length first keeps a bogus count from allocating.
    if n > world_size || buf.len() != 4 + FLAG_BYTES * n {
        return Err(MessageError("the verdict's length does not match its number of ranks"));
    }
    let mut flags: Vec<Flag> = Vec::with_capacity(n);
    for _ in 0..n {
        let rank = r.u32()?;
        let suspicion = match r.u8()? {
            1 => Suspicion::Silent,
            2 => Suspicion::Behind,
            _ => return Err(MessageError("unknown kind of suspicion")),
        };
        let for_ms = r.u32()?;
        if rank as usize >= world_size || flags.iter().any(|f| f.rank == rank) {
            return Err(MessageError("the verdict names a rank twice or one not below WORLD_SIZE"));
        }
        flags.push(Flag { rank, suspicion, for_ms });
    }
    r.finish()?;
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_and_verdicts_round_trip() {
        for beat in [Beat { started: 0, inside: false }, Beat { started: u64::MAX, inside: true }] {
            assert_eq!(Beat::decode(&beat.encode()), Ok(beat));
        }
        let flags = vec![
            Flag { rank: 2, suspicion: Suspicion::Silent, for_ms: 1500 },
            Flag { rank: 0, suspicion: Suspicion::Behind, for_ms: u32::MAX },
        ];
        assert_eq!(decode_verdict(&encode_verdict(&flags), 3), Ok(flags.clone()));
        assert_eq!(decode_verdict(&encode_verdict(&[]), 1), Ok(vec![]));
        // A rank outside the world, or named twice, is refused.
        assert!(decode_verdict(&encode_verdict(&flags), 2).is_err());
        assert!(decode_verdict(&encode_verdict(&[flags[0], flags[0]]), 3).is_err());
    }

    #[test]
    fn truncated_padded_and_odd_beats_and_verdicts_are_errors() {
        let beat = Beat { started: 7, inside: true }.encode();
        for cut in 0..beat.len() {
            assert!(Beat::decode(&beat[..cut]).is_err());
        }
        let mut odd = beat.clone();
        odd[8] = 2;
        assert!(Beat::decode(&odd).is_err());
        odd.truncate(8);
        odd.extend([1, 0]);
        assert!(Beat::decode(&odd).is_err());
        let verdict = encode_verdict(&[Flag { rank: 1, suspicion: Suspicion::Behind, for_ms: 9 }]);
        for cut in 0..verdict.len() {
            assert!(decode_verdict(&verdict[..cut], 4).is_err());
        }
        let mut long = verdict.clone();
        long.push(0);
        assert!(decode_verdict(&long, 4).is_err());
        let mut unknown = verdict.clone();
        unknown[8] = 3;
        assert!(decode_verdict(&unknown, 4).is_err());
        // A verdict claiming a billion ranks is refused before allocating.
        assert!(decode_verdict(&1_000_000_000u32.to_le_bytes(), usize::MAX).is_err());
    }

    #[test]
    fn hello_round_trips_v4_v6_and_none() {
        for advertise in [None, Some("10.1.2.3".parse().unwrap()), Some("fe80::1".parse().unwrap())] {
            let h = Hello { purpose: Purpose::Join, rank: 3, world_size: 8, port: 4242, advertise };
            assert_eq!(Hello::decode(&h.encode()), Ok(h));
        }
    }

    #[test]
    fn table_round_trips() {
        let t = vec![None, Some("127.0.0.1:5".parse().unwrap()), Some("[::1]:6".parse().unwrap())];
        assert_eq!(decode_table(&encode_table(&t), 3), Ok(t.clone()));
        assert!(decode_table(&encode_table(&t), 4).is_err());
    }

    #[test]
    fn abort_round_trips_and_long_reasons_are_cut() {
        let a = AbortNotice { suspect: 1, reporter: 2, op: Op::AllReduce, tampered: true, reason: "é".repeat(600) };
        let back = AbortNotice::decode(&a.encode()).unwrap();
        assert_eq!((back.suspect, back.reporter, back.op, back.tampered), (1, 2, Op::AllReduce, true));
        assert!(back.reason.len() <= MAX_REASON_BYTES && back.reason.chars().all(|c| c == 'é'));
    }

    #[test]
    fn truncated_and_padded_payloads_are_errors() {
        let h = Hello { purpose: Purpose::Ring, rank: 1, world_size: 2, port: 0, advertise: None }.encode();
        for cut in 0..h.len() {
            assert!(Hello::decode(&h[..cut]).is_err());
        }
        let mut long = h.clone();
        long.push(0);
        assert!(Hello::decode(&long).is_err());
        // A table claiming a billion ranks is refused before allocating.
        let mut huge = 1_000_000_000u32.to_le_bytes().to_vec();
        huge.push(0);
        assert!(decode_table(&huge, 1_000_000_000).is_err());
        let abort =
            AbortNotice { suspect: 0, reporter: 1, op: Op::Barrier, tampered: false, reason: "x".into() }.encode();
        for cut in 0..abort.len() {
            assert!(AbortNotice::decode(&abort[..cut]).is_err());
        }
    }
}

/// Property tests: arbitrary payloads never panic the control-message decoders, and whatever
/// decodes is exactly what encodes to those bytes.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..80)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn hellos_decode_exactly_or_are_refused(buf in bytes()) {
            if let Ok(hello) = Hello::decode(&buf) {
                prop_assert_eq!(hello.encode(), buf);
            }
        }

        #[test]
        fn tables_decode_exactly_or_are_refused(buf in bytes(), world in 0usize..6) {
            if let Ok(table) = decode_table(&buf, world) {
                prop_assert_eq!(table.len(), world);
                // An entry without an address encodes its port as 0, so compare decodes.
                prop_assert_eq!(decode_table(&encode_table(&table), world), Ok(table));
            }
        }

        #[test]
        fn abort_notices_decode_or_are_refused(buf in bytes()) {
            if let Ok(notice) = AbortNotice::decode(&buf) {
                prop_assert_eq!(AbortNotice::decode(&notice.encode()), Ok(notice));
            }
        }

        #[test]
        fn beats_decode_exactly_or_are_refused(buf in bytes()) {
            if let Ok(beat) = Beat::decode(&buf) {
                prop_assert_eq!(beat.encode(), buf);
            }
        }

        #[test]
        fn verdicts_decode_exactly_or_are_refused(buf in bytes(), world in 0usize..6) {
            if let Ok(flags) = decode_verdict(&buf, world) {
                prop_assert!(flags.len() <= world);
                prop_assert_eq!(encode_verdict(&flags), buf);
            }
        }

        #[test]
        fn valid_verdicts_round_trip_and_any_cut_is_refused(
            entries in proptest::collection::vec((any::<bool>(), any::<u32>()), 0..6),
        ) {
            let flags: Vec<Flag> = entries.iter().enumerate().map(|(rank, &(silent, for_ms))| Flag {
                rank: rank as u32,
                suspicion: if silent { Suspicion::Silent } else { Suspicion::Behind },
                for_ms,
            }).collect();
            let bytes = encode_verdict(&flags);
            prop_assert_eq!(decode_verdict(&bytes, flags.len()), Ok(flags));
            for cut in 0..bytes.len() {
                prop_assert!(decode_verdict(&bytes[..cut], 6).is_err());
            }
        }

        #[test]
        fn valid_hellos_round_trip_and_any_cut_is_refused(
            join in any::<bool>(), rank in any::<u32>(), world in any::<u32>(), port in any::<u16>(),
            ip in proptest::option::of(any::<[u8; 16]>()), v4 in any::<bool>(),
        ) {
            let advertise = ip.map(|b| if v4 {
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            } else {
                IpAddr::V6(Ipv6Addr::from(b))
            });
            let purpose = if join { Purpose::Join } else { Purpose::Ring };
            let hello = Hello { purpose, rank, world_size: world, port, advertise };
            let bytes = hello.encode();
            prop_assert_eq!(Hello::decode(&bytes), Ok(hello));
            for cut in 0..bytes.len() {
                prop_assert!(Hello::decode(&bytes[..cut]).is_err());
            }
        }
    }
}
