//! The admin endpoint and the per-connection log line.

use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, config, echo_round_trip, eventually};
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
