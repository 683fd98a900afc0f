//! What a test needs from the machine: root, and tools from Debian
//! packages. A test that lacks them fails and names what is missing (and
//! which package has it), rather than passing without having run: CI runs
//! as root and `.ci/run` installs the packages.

use std::path::PathBuf;

/// Fails unless this process runs as root (effective uid 0), naming `why`.
pub fn root(why: &str) {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    // "Uid:\treal\teffective\tsaved\tfs"
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no effective uid in /proc/self/status: {status}"));
    assert!(
        euid == "0",
        "this test needs root ({why}); it runs as uid {euid}"
    );
}

/// The path of `tool` on `$PATH` (and in the sbin directories, which a
/// non-login root shell may lack); fails naming the Debian `package`.
pub fn tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test needs `{tool}` (Debian package {package}: apt-get install {package}); it is not on PATH ({path})"
            )
        })
}
