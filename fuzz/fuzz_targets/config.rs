//! Configuration text: `Config::from_toml` returns a configuration or an
//! error of one line (operators read it in a terminal or a log line),
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::from_toml(text, "fuzz") {
        let message = e.to_string();
        assert!(
            !message.contains(['\n', '\r']),
            "a multi-line error: {message:?}"
        );
        assert!(
            message.starts_with("fuzz:"),
            "an error not naming its origin: {message:?}"
        );
    }
});
