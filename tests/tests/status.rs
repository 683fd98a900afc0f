//! The operator's terminal view: `shoal status --admin ADDR` on a real
//! three-node fleet, and `shoal demo` drawing the same table while its
//! logs go to the file it was given.

use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::fleet::{Certs, start_fleet};
use shoal_e2e::node::shoal_bin;
use shoal_e2e::{WAIT, eventually};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn status(admin: SocketAddr) -> String {
    let out = Command::new(shoal_bin())
        .args(["status", "--admin", &admin.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The words of the line of `table` that starts with `first`.
fn row<'a>(table: &'a str, first: &str) -> Option<Vec<&'a str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&first))
}

#[tokio::test]
async fn shoal_status_draws_every_member_and_each_nodes_view_of_each_backend() {
    let backends = [
        Backend::start(Behaviour::Echo).await,
        Backend::start(Behaviour::Echo).await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let nodes = start_fleet(&Certs::new(), 3, &addrs, |config| config).await;
    // A client through node 2, so node 1's table shows node 2's count.
    let mut held = tokio::net::TcpStream::connect(nodes[1].listener("web"))
        .await
        .unwrap();
    shoal_e2e::echo_round_trip(&mut held, b"hello")
        .await
        .unwrap();
    let drained = addrs[1].to_string();
    let out = Command::new(shoal_bin())
        .args(["ctl", "drain", "web", &drained, "--admin"])
        .arg(nodes[2].admin.unwrap().to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let admin = nodes[0].admin.unwrap();
    // Until every report has arrived some cells are `?`.
    let table = eventually("a table with every node's view", WAIT, || async {
        let t = tokio::task::spawn_blocking(move || status(admin))
            .await
            .unwrap();
        let complete = t.starts_with("node-1: serving, 3 live nodes")
            && row(&t, "node-2").is_some_and(|r| r.last() != Some(&"report"))
            && row(&t, "node-3").is_some_and(|r| r.last() != Some(&"report"))
            && row(&t, &drained).is_some_and(|r| r.contains(&"draining"))
            && addrs
                .iter()
                .all(|a| row(&t, &a.to_string()).is_some_and(|r| !r.contains(&"?")))
            // node-2's report of its client has arrived.
            && addrs
                .iter()
                .any(|a| row(&t, &a.to_string()).is_some_and(|r| r[4] == "1"));
        complete.then_some(t)
    })
    .await;
    let header = row(&table, "backend").unwrap();
    assert_eq!(
        header,
        [
            "backend", "node-1", "node-2", "node-3", "verdict", "drain", "local", "fleet",
            "checkers"
        ],
        "{table}"
    );
    let one = row(&table, &addrs[0].to_string()).unwrap();
    let two = row(&table, &drained).unwrap();
    // node-2's client is on one of the backends; node-1 holds none.
    let on_node_2: Vec<&str> = [&one, &two].iter().map(|r| r[4]).collect();
    assert!(
        on_node_2.contains(&"1"),
        "node-2 reports its client:\n{table}"
    );
    assert_eq!((one[1], one[2]), ("up", "0"), "{table}");
    // Three nodes, the default three checkers: every node checks each.
    for r in [&one, &two] {
        let mut checkers: Vec<&str> = r.last().unwrap().split(',').collect();
        checkers.sort_unstable();
        assert_eq!(checkers, ["node-1", "node-2", "node-3"], "{table}");
    }
    assert!(!one.contains(&"draining"), "{table}");
    drop(held);
}

/// A demo process, killed by its PID if the test ends early.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_demo_draws_the_fleet_table_and_sends_its_logs_to_the_file_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.log");
    let mut demo = Demo(
        Command::new(shoal_bin())
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--clients",
                "4",
                "--table-every",
                "1",
                "--duration",
                "120",
                "--log-file",
            ])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let stdout = demo.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let seen = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let done = line.starts_with("node-1: serving, 3 live nodes");
                    seen.push(line);
                    if done {
                        return Ok(seen);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        Err(seen)
    })
    .await
    .unwrap()
    .unwrap_or_else(|seen| panic!("no fleet table of 3 nodes on stdout: {seen:#?}"));
    let text = seen.join("\n");
    assert!(
        text.contains(&format!("logs:     {}", log.display())),
        "{text}"
    );
    assert!(!text.contains(" INFO "), "logs on stdout: {text}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.lines().filter(|l| l.contains(" ready ")).count(),
        3,
        "one ready line per node in {}: {logged}",
        log.display()
    );
    // Nothing on stderr either: every line went to the file.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(demo.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = eventually("the demo to exit after SIGTERM", WAIT, || {
        let exited = demo.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut demo.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.is_empty(), "{stderr}");
    assert!(exit.success(), "{exit:?}");
}
