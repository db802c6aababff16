//! Feeds arbitrary bytes to the frame decoder: it must return a frame or an error, never
//! panic, and never accept a payload over the limit. Whatever decodes must re-encode to the
//! same bytes, since every header carries a CRC.

#![no_main]

use asgd_comm::frame::{Frame, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let _ = Frame::check(data, MAX);
    let _ = Frame::parse_complete(data, MAX);
    if let Ok(Some((frame, used))) = Frame::parse(data, MAX) {
        assert!(frame.payload.len() <= MAX);
        assert_eq!(used, HEADER_LEN + frame.payload.len());
        assert_eq!(frame.encode(data[4] & 1 == 1).unwrap(), data[..used]);
    }
});
