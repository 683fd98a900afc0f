//! One datagram from the network, as the transport hands it over: the
//! codec's entry points, then a warm node (it knows the seed fleet) fed
//! through `handle_datagram_from` (certified as node 1) and
//! `handle_datagram`. No input may panic, and the node must stay usable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_core::wire;
use shoal_fuzz::{NOW, assert_usable, warm_node};

fuzz_target!(|data: &[u8]| {
    let reports = wire::is_reports(data);
    if let Ok(shards) = wire::decode_reports(data) {
        assert!(reports, "decoded as reports without the reports kind byte");
        // What a node accepts, it can say again: re-encoded, the shards
        // fit datagrams and decode to themselves.
        let again = wire::encode_reports(&shards, wire::PACKET_BYTES_MAX)
            .expect("decoded shards re-encode");
        let back: Vec<_> = again
            .iter()
            .flat_map(|d| wire::decode_reports(d).expect("re-encoded shards decode"))
            .collect();
        assert_eq!(back, shards);
    }
    let sender = wire::swim_sender(data);
    if sender.is_ok() {
        assert!(!reports, "a report datagram decoded as a SWIM header");
    }

    let mut n = warm_node();
    let _ = n.handle_datagram_from(NOW, "n1", data);
    assert_usable(&mut n);
    let _ = n.handle_datagram(NOW, data);
    assert_usable(&mut n);
});
