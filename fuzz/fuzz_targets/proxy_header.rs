//! The first bytes of a connection on an `accept_proxy` listener, as the
//! runtime's read loop hands them over (at most `HEADER_BYTES_MAX`). No
//! input may panic; a header found is within the bytes and the bound,
//! parses the same from its own bytes, and every shorter prefix of it asks
//! for more or is refused, never taken for another header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_core::proxy_header::{HEADER_BYTES_MAX, parse};

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(HEADER_BYTES_MAX)];
    match parse(data) {
        Ok(Some(h)) => {
            assert!(
                h.len > 0 && h.len <= data.len(),
                "{h:?} of {} bytes",
                data.len()
            );
            assert_eq!(parse(&data[..h.len]), Ok(Some(h)));
            for k in 0..h.len {
                assert!(
                    !matches!(parse(&data[..k]), Ok(Some(_))),
                    "a prefix of {k} bytes taken for a header"
                );
            }
        }
        // Waiting for more is only allowed while there is room for it.
        Ok(None) => assert!(data.len() < HEADER_BYTES_MAX),
        Err(_) => {}
    }
});
