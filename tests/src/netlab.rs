//! A network of hosts for partition tests: every node in a network
//! namespace of its own, all of them plugged into one bridge, and
//! partitions cut and healed with nftables on that bridge.
//!
//! ```text
//!             the test's own namespace (netns::run_inside): bridge `lab0`, 10.77.0.1/24
//!             clients, backends, dnsmasq, /status polling all live here
//!         ┌────────┬────────┬────────┐
//!        sw1      sw2      sw3      sw4         veth pairs, bridge side
//!         │        │        │        │
//!       eth0     eth0     eth0     eth0         node side, in namespace `lab-nI`
//!   10.77.0.11  .12      .13      .14
//! ```
//!
//! A partition is a table `bridge shoal_cut` whose forward chain drops
//! every frame from one node's port to the port of a node on another
//! side; healing deletes the table. Frames between a node and the bridge
//! itself (the test's address) never pass the forward hook, so clients
//! and backends reach every node throughout: what a partition cuts is the
//! nodes' links to each other, as when the fleet's network splits while
//! the clients' and backends' does not.
//!
//! Only inside [`crate::netns::run_inside`]'s namespaces: the lab mounts
//! a tmpfs of its own over `/run/netns` there (a private mount
//! namespace), so its namespace names are seen by nobody else, cannot
//! collide with a parallel run, and vanish with the run even if it is
//! killed (the PID namespace takes every process, the mount namespace
//! every namespace file). [`Lab`]'s `Drop` deletes them anyway, in order.
//! No address of 10.77.0.0/24 exists outside these namespaces.
//!
//! Needs root, iproute2 (`ip`) and nftables (`nft`); `.ci/run` installs them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;

/// Nodes in one lab, at most (addresses .11 to .11+N-1).
pub const NODES_MAX: usize = 32;
/// The bridge's address: the test's clients, backends and DNS server.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The nftables table that holds a partition.
const CUT_TABLE: &str = "shoal_cut";
const BRIDGE: &str = "lab0";

/// The address of node `i` (0-based): 10.77.0.(11 + i).
pub fn node_ip(i: usize) -> Ipv4Addr {
    assert!(i < NODES_MAX, "node {i}: a lab has at most {NODES_MAX}");
    Ipv4Addr::new(10, 77, 0, 11 + i as u8)
}

/// Every node's ports, the same on every host as in a real fleet (one
/// round-robin name, one port): clients, admin, fleet (UDP).
pub const LISTENER_PORT: u16 = 8080;
pub const ADMIN_PORT: u16 = 8081;
pub const CLUSTER_PORT: u16 = 7946;

/// Node `i`'s client listener.
pub fn listener_addr(i: usize) -> SocketAddr {
    SocketAddr::from((node_ip(i), LISTENER_PORT))
}

/// Node `i`'s admin endpoint.
pub fn admin_addr(i: usize) -> SocketAddr {
    SocketAddr::from((node_ip(i), ADMIN_PORT))
}

/// Node `i`'s fleet endpoint.
pub fn cluster_addr(i: usize) -> SocketAddr {
    SocketAddr::from((node_ip(i), CLUSTER_PORT))
}

/// The node index whose address is `ip`, if any.
pub fn node_of(ip: std::net::IpAddr) -> Option<usize> {
    (0..NODES_MAX).find(|&i| std::net::IpAddr::V4(node_ip(i)) == ip)
}

/// The network namespace of node `i`.
pub fn netns_name(i: usize) -> String {
    format!("lab-n{}", i + 1)
}

/// The lab; its `Drop` heals, deletes the namespaces and unmounts.
#[derive(Debug)]
pub struct Lab {
    nodes: usize,
    ip: PathBuf,
    nft: PathBuf,
    /// The sides of the partition in force, if any.
    cut: Option<Vec<Vec<usize>>>,
}

/// Runs `program args…`; fails naming the command and its stderr.
fn run(program: &std::path::Path, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {} {args:?}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {}: {}\n{}",
        program.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nft -f -` with `script` on stdin.
fn nft_script(nft: &std::path::Path, script: &str) {
    use std::io::Write;
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", nft.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft -f - {}:\n{script}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rules that drop frames between every two nodes of different
/// `sides` (a node in no side is cut from every node in a side).
fn cut_script(nodes: usize, sides: &[Vec<usize>]) -> String {
    let side_of = |n: usize| sides.iter().position(|s| s.contains(&n));
    let mut rules = String::new();
    for a in 0..nodes {
        for b in 0..nodes {
            if a != b && side_of(a) != side_of(b) {
                rules += &format!("    iifname \"sw{}\" oifname \"sw{}\" drop\n", a + 1, b + 1);
            }
        }
    }
    format!(
        "table bridge {CUT_TABLE} {{\n  chain links {{\n    type filter hook forward priority 0; policy accept;\n{rules}  }}\n}}\n"
    )
}

impl Lab {
    /// The bridge with [`HOST_IP`] in this (the test's) namespace, and
    /// `nodes` namespaces each joined to it, with `lo` up and
    /// [`node_ip`] on `eth0`.
    pub fn new(nodes: usize) -> Lab {
        assert!(
            crate::netns::inside(),
            "a Lab is built only inside netns::run_inside's namespaces (it mounts over /run/netns)"
        );
        assert!(
            (1..=NODES_MAX).contains(&nodes),
            "nodes {nodes}: 1..={NODES_MAX}"
        );
        crate::needs::root("network namespaces, veth pairs and nftables");
        let ip = crate::needs::tool("ip", "iproute2");
        let nft = crate::needs::tool("nft", "nftables");
        let mount = crate::needs::tool("mount", "mount");
        std::fs::create_dir_all("/run/netns").expect("mkdir /run/netns");
        run(&mount, &["-t", "tmpfs", "shoal-netlab", "/run/netns"]);
        let lab = Lab {
            nodes,
            ip: ip.clone(),
            nft,
            cut: None,
        };
        run(&ip, &["link", "add", BRIDGE, "type", "bridge"]);
        run(
            &ip,
            &["addr", "add", &format!("{HOST_IP}/24"), "dev", BRIDGE],
        );
        run(&ip, &["link", "set", BRIDGE, "up"]);
        for i in 0..nodes {
            let ns = netns_name(i);
            let sw = format!("sw{}", i + 1);
            run(&ip, &["netns", "add", &ns]);
            run(
                &ip,
                &[
                    "link", "add", &sw, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            );
            run(&ip, &["link", "set", &sw, "master", BRIDGE, "up"]);
            run(&ip, &["-n", &ns, "link", "set", "lo", "up"]);
            run(
                &ip,
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", node_ip(i)),
                    "dev",
                    "eth0",
                ],
            );
            run(&ip, &["-n", &ns, "link", "set", "eth0", "up"]);
        }
        lab
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// What to put before a program to run it in node `i`'s namespace
    /// (`ip netns exec NAME`, which execs the program: its PID is the
    /// program's).
    pub fn wrapper(&self, i: usize) -> Vec<String> {
        assert!(i < self.nodes, "node {i} of {}", self.nodes);
        vec![
            self.ip.display().to_string(),
            "netns".into(),
            "exec".into(),
            netns_name(i),
        ]
    }

    /// Cuts every node of one side from every node of the others (a node
    /// in no side is cut from all); replaces a partition in force.
    pub fn partition(&mut self, sides: &[Vec<usize>]) {
        for s in sides {
            for &n in s {
                assert!(n < self.nodes, "node {n} of {}", self.nodes);
            }
        }
        self.heal();
        nft_script(&self.nft, &cut_script(self.nodes, sides));
        self.cut = Some(sides.to_vec());
    }

    /// Ends the partition in force, if any.
    pub fn heal(&mut self) {
        if self.cut.take().is_some() {
            run(&self.nft, &["delete", "table", "bridge", CUT_TABLE]);
        }
    }

    /// The sides of the partition in force.
    pub fn cut(&self) -> Option<&[Vec<usize>]> {
        self.cut.as_deref()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Best effort, never a panic in a drop: the namespaces die with
        // the run's mount and PID namespaces regardless.
        let quiet = |program: &std::path::Path, args: &[&str]| {
            let _ = Command::new(program).args(args).output();
        };
        if self.cut.take().is_some() {
            quiet(&self.nft, &["delete", "table", "bridge", CUT_TABLE]);
        }
        for i in 0..self.nodes {
            quiet(&self.ip, &["link", "del", &format!("sw{}", i + 1)]);
            quiet(&self.ip, &["netns", "del", &netns_name(i)]);
        }
        quiet(&self.ip, &["link", "del", BRIDGE]);
        let _ = Command::new("umount").arg("/run/netns").output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_drops_only_between_sides() {
        let s = cut_script(3, &[vec![0], vec![1, 2]]);
        assert!(s.contains("iifname \"sw1\" oifname \"sw2\" drop"), "{s}");
        assert!(s.contains("iifname \"sw3\" oifname \"sw1\" drop"), "{s}");
        assert!(!s.contains("iifname \"sw2\" oifname \"sw3\""), "{s}");
        assert_eq!(s.matches(" drop").count(), 4, "{s}");
    }
}
