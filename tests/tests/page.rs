//! The admin endpoint's status page (`GET /`) in a real browser: headless
//! Chromium loads node 1's page of a three-node fleet, sees the three
//! nodes, clicks a backend's drain button, and node 2's page then shows
//! that backend draining (and an undrain clicked there shows on node 1's).
//! The listener's name holds HTML, which the page must show as text.
//!
//! Needs the Debian packages chromium and chromium-driver (`.ci/run`
//! installs them); without them the test fails naming them.

mod browser;

use browser::Browser;
use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::fleet::{Certs, start_fleet};
use shoal_e2e::{WAIT, eventually};
use std::net::SocketAddr;

/// A listener name that is markup: drawn as HTML it would make an `<i>`
/// element.
const LISTENER: &str = "<i>web</i>";

#[tokio::test]
async fn a_drain_clicked_on_one_nodes_page_shows_as_draining_on_another() {
    // First, so that a machine without Chromium fails at once, naming it.
    let browser = Browser::start().await;
    let backends = [
        Backend::start(Behaviour::Echo).await,
        Backend::start(Behaviour::Echo).await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let nodes = start_fleet(&Certs::new(), 3, &addrs, |config| {
        config.replace("name = \"web\"", &format!("name = \"{LISTENER}\""))
    })
    .await;

    browser.goto(nodes[0].admin.unwrap(), "/").await;
    let mut names = eventually("node-1's page to list three nodes", WAIT, || async {
        let names = browser.texts("#members tr[data-node] td:first-child").await;
        (names.len() == 3).then_some(names)
    })
    .await;
    names.sort();
    assert_eq!(names, ["node-1", "node-2", "node-3"]);
    // Each backend row has a cell per node once every report is in.
    let header = eventually("a column per node", WAIT, || async {
        let h = browser.texts("#listeners table tr:first-child th").await;
        ["node-1", "node-2", "node-3"]
            .iter()
            .all(|n| h.iter().any(|c| c == n))
            .then_some(h)
    })
    .await;
    assert_eq!(header[0], "backend", "{header:?}");
    let headings = browser.texts("#listeners h2").await;
    assert!(
        headings
            .iter()
            .any(|h| h.starts_with("listener <i>web</i> on ")),
        "the listener's name shown as text: {headings:?}"
    );
    assert!(
        browser.texts("#listeners h2 i").await.is_empty(),
        "the listener's name was parsed as HTML"
    );

    let row = format!("tr[data-backend=\"{}\"]", addrs[0]);
    // The page redraws every 2 s; a click on a row being replaced misses
    // and is tried again.
    eventually(
        "a click on the drain button of node-1's page",
        WAIT,
        || async {
            browser
                .click(&format!("{row} button.drain"))
                .await
                .then_some(())
        },
    )
    .await;
    eventually("node-1's page to show the drain", WAIT, || async {
        (browser.attr(&row, "data-draining").await.as_deref() == Some("true")).then_some(())
    })
    .await;
    let message = browser.texts("#message").await.join("");
    assert!(message.contains("drain"), "{message}");

    browser.goto(nodes[1].admin.unwrap(), "/").await;
    eventually(
        "node-2's page to show the backend draining",
        WAIT,
        || async {
            let draining = browser.attr(&row, "data-draining").await.as_deref() == Some("true");
            let cells = browser.texts(&format!("{row} td.draining")).await;
            (draining && cells == ["draining"]).then_some(())
        },
    )
    .await;
    let other = format!("tr[data-backend=\"{}\"]", addrs[1]);
    assert_eq!(
        browser.attr(&other, "data-draining").await.as_deref(),
        Some("false"),
        "only the clicked backend is drained"
    );
    assert_eq!(
        browser
            .eval("return document.title")
            .await
            .as_str()
            .unwrap_or(""),
        "shoal node-2"
    );
    // What the page showed is what the fleet holds.
    for node in &nodes {
        eventually("every node to hold the drain", WAIT, || async {
            node.draining(addrs[0]).await.then_some(())
        })
        .await;
        assert!(!node.draining(addrs[1]).await);
    }

    // Undone from node-2's page, it is undone on node-1's.
    eventually(
        "a click on the undrain button of node-2's page",
        WAIT,
        || async {
            browser
                .click(&format!("{row} button.undrain"))
                .await
                .then_some(())
        },
    )
    .await;
    browser.goto(nodes[0].admin.unwrap(), "/").await;
    eventually("node-1's page to show the undrain", WAIT, || async {
        let undrained = browser.attr(&row, "data-draining").await.as_deref() == Some("false");
        let button = browser.texts(&format!("{row} button")).await;
        (undrained && button == ["drain"]).then_some(())
    })
    .await;
    browser.client.clone().close().await.unwrap();
}
