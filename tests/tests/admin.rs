//! The admin endpoint (its series, its bounds, its part in shutdown) and
//! the per-connection log line.

use shoal_e2e::backend::{Backend, Behaviour, http_request};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, config, echo_round_trip, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn metrics_show_every_named_series_with_listener_and_backend_labels() {
    let backend = Backend::start(Behaviour::Echo).await;
    let shoal = Shoal::start(&config(&[backend.addr], "")).await;
    let mut s = TcpStream::connect(shoal.listener("web")).await.unwrap();
    echo_round_trip(&mut s, b"0123456789").await.unwrap();
    let labels = format!("listener=\"web\",backend=\"{}\"", backend.addr);
    let expected = [
        format!("shoal_backend_up{{{labels}}} 1"),
        format!("shoal_backend_active_connections{{{labels}}} 1"),
        format!("shoal_backend_cluster_connections{{{labels}}} 1"),
        format!("shoal_connections_total{{{labels}}} 1"),
        format!("shoal_connect_failures_total{{{labels}}} 0"),
        format!("shoal_bytes_total{{{labels},direction=\"client_to_backend\"}} 10"),
        format!("shoal_bytes_total{{{labels},direction=\"backend_to_client\"}} 10"),
        "shoal_cluster_members 1".to_owned(),
        "shoal_listener_active_connections{listener=\"web\"} 1".to_owned(),
    ];
    // Byte counters move just after each write completes, so the echo can
    // reach the client a moment before the count does.
    eventually("every named series with its value", WAIT, || async {
        let m = shoal.metrics().await;
        let missing: Vec<_> = expected
            .iter()
            .filter(|s| !m.contains(s.as_str()))
            .collect();
        missing.is_empty().then_some(())
    })
    .await;
    drop(s);
    let line = eventually("the connection log line", WAIT, || {
        let l = shoal.logs_with("connection closed").pop();
        async move { l }
    })
    .await;
    for field in [
        "client",
        "listener",
        "backend",
        "bytes_in",
        "bytes_out",
        "connect_ms",
        "duration_ms",
        "end",
        "tries",
    ] {
        assert!(!line[field].is_null(), "log line lacks {field}: {line}");
    }
    assert_eq!(line["end"], "client-close");
    assert_eq!(line["backend"], backend.addr.to_string());
    let status = shoal.status().await;
    assert_eq!(status["node"], "e2e");
    assert_eq!(status["listeners"][0]["policy"], "least-conn");
    assert_eq!(status["listeners"][0]["backends"][0]["up"], true);
}

#[tokio::test]
async fn a_failed_connect_is_counted_and_retried_on_another_backend() {
    // A port with nothing listening: connects are refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let live = Backend::start(Behaviour::Echo).await;
    // Checks every minute: the client, not a check, finds the dead backend.
    let text = config(&[dead, live.addr], "policy = \"first-available\"")
        .replace("interval_ms = 200", "interval_ms = 60000");
    let shoal = Shoal::start(&text).await;
    let mut s = TcpStream::connect(shoal.listener("web")).await.unwrap();
    echo_round_trip(&mut s, b"retried").await.unwrap();
    drop(s);
    let m = shoal.metrics().await;
    let failures = format!("shoal_connect_failures_total{{listener=\"web\",backend=\"{dead}\"}} ");
    assert!(m.contains(&format!("{failures}1")), "{m}");
    let closed = eventually("the connection log line", WAIT, || {
        let l = shoal.logs_with("connection closed").pop();
        async move { l }
    })
    .await;
    assert_eq!(closed["backend"], live.addr.to_string());
    assert_eq!(closed["tries"], 2);
    let down_log = shoal.log_eventually("backend is down").await;
    assert_eq!(down_log.len(), 1, "{down_log:?}");
    assert_eq!(down_log[0]["cause"], "Traffic");
    let down = shoal.backends("web").await;
    assert!(!down[0].1, "{down:?}");
}

/// `config` with `lines` added to its `[node]` table.
fn config_with_node(backends: &[std::net::SocketAddr], lines: &str) -> String {
    config(backends, "").replace(
        "drain_timeout_ms = 10000",
        &format!("drain_timeout_ms = 10000\n{lines}"),
    )
}

/// Timeouts far beyond any test, so that only what a test is about closes
/// a connection.
const NO_TIMEOUTS: &str = "admin_header_timeout_ms = 600000\nadmin_idle_timeout_ms = 600000";

/// Reads until shoal closes `s` (end of stream or reset) and returns what
/// came before; fails if `s` is still open after `WAIT`.
async fn read_until_closed(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let read = tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{what}: still open after {WAIT:?}");
    got
}

/// Sends a whole HTTP/1.0 request on `s` and returns the answer.
async fn request_on(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.0\r\nhost: shoal\r\n\r\n").as_bytes())
        .await
        .unwrap();
    String::from_utf8(read_until_closed(s, path).await).unwrap()
}

#[tokio::test]
async fn an_admin_client_holding_a_partial_request_does_not_hold_the_node_past_its_drain() {
    let backend = Backend::start(Behaviour::Echo).await;
    let mut shoal = Shoal::start(&config_with_node(&[backend.addr], NO_TIMEOUTS)).await;
    let admin = shoal.admin.unwrap();
    let mut partial = TcpStream::connect(admin).await.unwrap();
    partial
        .write_all(b"GET /metrics HTTP/1.1\r\n")
        .await
        .unwrap();
    // Answered after `partial` was accepted (one accept queue, in order):
    // shoal holds the partial request before the signal.
    shoal.metrics().await;
    let mut held = TcpStream::connect(shoal.listener("web")).await.unwrap();
    echo_round_trip(&mut held, b"held").await.unwrap();
    shoal.sigterm();
    shoal
        .log_eventually("shutting down: stopped accepting, draining open connections")
        .await;
    // The endpoint still serves during the drain.
    let m = shoal.metrics().await;
    assert!(
        m.contains("shoal_listener_active_connections{listener=\"web\"} 1"),
        "{m}"
    );
    // The drain ends with the last client; the partial request must not
    // keep the node alive after it.
    drop(held);
    let status = shoal.wait_exit(WAIT).await;
    assert!(status.success(), "{status:?}");
    read_until_closed(&mut partial, "the partial request").await;
}

#[tokio::test]
async fn admin_connections_past_the_limit_are_closed_at_once_and_counted() {
    let backend = Backend::start(Behaviour::Echo).await;
    let lines = format!("admin_connections_max = 2\n{NO_TIMEOUTS}");
    let shoal = Shoal::start(&config_with_node(&[backend.addr], &lines)).await;
    let admin = shoal.admin.unwrap();
    let mut first = TcpStream::connect(admin).await.unwrap();
    let mut second = TcpStream::connect(admin).await.unwrap();
    // Accepted after the two (one accept queue, in order), while they hold
    // both slots.
    let mut third = TcpStream::connect(admin).await.unwrap();
    let got = read_until_closed(&mut third, "a connection past admin_connections_max").await;
    assert!(got.is_empty(), "refused without an answer: {got:?}");
    // The two that hold the slots are served.
    let status = request_on(&mut first, "/status").await;
    assert!(status.starts_with("HTTP/1.0 200"), "{status}");
    let metrics = request_on(&mut second, "/metrics").await;
    assert!(
        metrics.contains("shoal_admin_connections_refused_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_admin_client_that_does_not_send_a_whole_request_head_in_time_is_closed() {
    let backend = Backend::start(Behaviour::Echo).await;
    let lines = "admin_header_timeout_ms = 300\nadmin_idle_timeout_ms = 600000";
    let shoal = Shoal::start(&config_with_node(&[backend.addr], lines)).await;
    let admin = shoal.admin.unwrap();
    let mut silent = TcpStream::connect(admin).await.unwrap();
    let mut partial = TcpStream::connect(admin).await.unwrap();
    // One byte at a time would keep an idle timeout from firing, not this one.
    for byte in b"GET /metrics HTTP/1.1\r\n" {
        if partial.write_all(&[*byte]).await.is_err() {
            break;
        }
    }
    read_until_closed(&mut silent, "a connection that sent nothing").await;
    read_until_closed(&mut partial, "a connection with a partial head").await;
    // A client that sends its request in time is still answered.
    let m = shoal.metrics().await;
    assert!(m.contains("shoal_admin_connections_refused_total 0"), "{m}");
}

#[tokio::test]
async fn an_admin_client_that_stops_reading_its_answers_is_closed_after_the_idle_timeout() {
    let backend = Backend::start(Behaviour::Echo).await;
    let lines = "admin_header_timeout_ms = 600000\nadmin_idle_timeout_ms = 300";
    let shoal = Shoal::start(&config_with_node(&[backend.addr], lines)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small receive window, so shoal's writes stall soon.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(shoal.admin.unwrap()).await.unwrap();
    // Pipelined requests whose answers (a few KiB each) exceed what the
    // two sockets' buffers hold (the sender's grows to tcp_wmem's 4 MiB),
    // so shoal blocks writing to a client that never reads.
    const REQUESTS: usize = 3000;
    let request = b"GET /metrics HTTP/1.1\r\nhost: shoal\r\n\r\n";
    let all: Vec<u8> = request
        .iter()
        .copied()
        .cycle()
        .take(request.len() * REQUESTS)
        .collect();
    slow.write_all(&all).await.unwrap();
    shoal.log_eventually("admin connection idle; closed").await;
    let got = read_until_closed(&mut slow, "a connection that stopped reading").await;
    let answers = got.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    assert!(answers < REQUESTS, "closed before every answer was written");
}

#[tokio::test]
async fn commands_without_the_command_header_are_refused_so_other_sites_cannot_post_them() {
    let backend = Backend::start(Behaviour::Echo).await;
    let shoal = Shoal::start(&config(&[backend.addr], "")).await;
    let admin = shoal.admin.unwrap();
    let drain = format!("/backends/web/{}/drain", backend.addr);
    // What a cross-site HTML form sends: no custom header, a form body type.
    let form = [
        ("origin", "http://other.example"),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    for path in [drain.as_str(), "/drain-node"] {
        let (code, _, body) = http_request(admin, "POST", path, &form).await.unwrap();
        assert_eq!(code, 403, "POST {path}: {body}");
        assert!(body.contains("x-shoal-command"), "names the header: {body}");
    }
    assert!(!shoal.draining(backend.addr).await, "refused: not drained");
    assert_eq!(
        shoal.status().await["accepting"],
        true,
        "refused: still accepting"
    );
    // The status page and `shoal ctl` send it.
    let (code, _, body) = http_request(admin, "POST", &drain, &[("x-shoal-command", "1")])
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(shoal.draining(backend.addr).await);
}

#[tokio::test]
async fn the_status_page_is_one_self_contained_html_file() {
    let backend = Backend::start(Behaviour::Echo).await;
    let shoal = Shoal::start(&config(&[backend.addr], "")).await;
    let (code, head, body) = http_request(shoal.admin.unwrap(), "GET", "/", &[])
        .await
        .unwrap();
    assert_eq!(code, 200, "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(body.contains("fetch(\"/status\""), "reads /status");
    assert!(body.contains("x-shoal-command"), "posts with the header");
    // Nothing loaded from elsewhere, and fleet data never parsed as HTML.
    for external in [
        "http://",
        "https://",
        "src=",
        "href=",
        "innerHTML",
        "@import",
    ] {
        assert!(!body.contains(external), "the page holds {external}");
    }
}
