//! One full-state sync message from a stream (at most
//! `wire::SYNC_BYTES_MAX` bytes, as the transport reads it): the codec,
//! then a fresh node and a warm one through `handle_sync_from` and
//! `handle_sync`. No input may panic, and the nodes must stay usable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_core::wire;
use shoal_fuzz::{NOW, assert_usable, node, warm_node};

fuzz_target!(|data: &[u8]| {
    if data.len() > wire::SYNC_BYTES_MAX {
        return;
    }
    if let Ok(state) = wire::decode_sync(data) {
        // bincode accepts non-minimal integers, so the bytes may differ;
        // the value must not.
        let again = wire::encode_sync(&state).expect("a decoded sync re-encodes");
        assert_eq!(
            wire::decode_sync(&again).expect("a re-encoded sync decodes"),
            state
        );
    }

    let mut fresh = node(0);
    let _ = fresh.handle_sync(NOW, data);
    assert_usable(&mut fresh);

    let mut warm = warm_node();
    let _ = warm.handle_sync_from(NOW, "n2", data);
    assert_usable(&mut warm);
    let _ = warm.handle_sync(NOW, data);
    assert_usable(&mut warm);
});
