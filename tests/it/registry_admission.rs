//! What the registry admits, beyond "the certificate names the role and the host":
//!
//! * With TLS on, an address that is not `https` is refused (400): a plain-HTTP
//!   registration would draw other instances' traffic (card numbers included) in clear
//!   text, and have its answers relayed to users.
//! * An instance id belongs to the host that registered it until it deregisters or its
//!   lease expires: a certificate for another host cannot move it (409, logged with both
//!   identities), even to an address its own certificate names.

use std::time::Duration;

use crate::harness::*;
use serde_json::json;
use svc_platform::tls::pki::{self, IssueRequest};

/// A listener that counts the connections made to it, never answering one.
struct Trap {
    listener: tokio::net::TcpListener,
}

impl Trap {
    async fn bind() -> Trap {
        Trap {
            listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.listener.local_addr().unwrap())
    }

    /// What the first connection made so far sent, if any was made.
    async fn caught(&self) -> Option<String> {
        use tokio::io::AsyncReadExt as _;
        let accepted =
            tokio::time::timeout(Duration::from_millis(50), self.listener.accept()).await;
        let (mut stream, _) = accepted.ok()?.ok()?;
        let mut buf = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_registration_is_refused_and_draws_no_traffic() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let gateway = sandbox.start("gateway", "gw-0", &registry.url);
    wait_registered(&registry, &[&gateway]).await;
    let trap = Trap::bind().await;

    // An orders certificate of this very host registers a plain-HTTP address, no shard.
    let orders = client_as("orders");
    let registration = json!({
        "role": "orders", "instance_id": "plain", "address": trap.url(),
        "version": "0.1.0", "metadata": {}
    });
    let res = orders
        .post(format!("{}/v1/instances", registry.url))
        .json(&registration)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    let mut renewals = None;
    if status == 200 {
        // Accepted: keep its lease, and wait until the gateway would send to it.
        let lease = format!("{}/v1/instances/orders/plain/lease", registry.url);
        renewals = Some(tokio::spawn(async move {
            loop {
                let _ = orders.put(&lease).send().await;
                tokio::time::sleep(RENEW_INTERVAL).await;
            }
        }));
        let peers = format!("{}/v1/peers", gateway.internal_url);
        wait_for("the gateway to see it", Duration::from_secs(10), || async {
            let view = try_get_json(&peers).await?;
            match members(&view).iter().any(|(_, id, _)| id == "plain") {
                true => Ok(()),
                false => Err(view.to_string()),
            }
        })
        .await;
    }

    // A new order, card and all, at the gateway.
    let body = order_body(&[("sku-1", 1)], Some("4242424242424242"));
    let placed = place_order_at(&http(), &format!("{}/api/v1", gateway.url), &body, None).await;
    if let Some(renewals) = renewals {
        renewals.abort();
    }
    if let Some(sent) = trap.caught().await {
        panic!(
            "the plain-HTTP instance was sent traffic in clear text (registration {status}: \
             {text}; the client got {} {}):\n{sent}",
            placed.status, placed.body
        );
    }
    assert_eq!(status, 400, "registration of {}: {text}", trap.url());
    let problem: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("https"),
        "{problem}"
    );
    // No orders instance at all: the gateway says so.
    assert_eq!(placed.status, 503, "{}", placed.body);
}

/// A copy of the test PKI whose `orders` certificate is for `host` only (another
/// machine's), from the same CA.
fn orders_certificate_of(sandbox: &Sandbox, host: &str) -> reqwest::Client {
    let dir = own_pki(sandbox);
    let mut request = IssueRequest::new("orders", &[host]);
    request.force = true;
    pki::issue(&dir, &request).expect("issue a certificate for another host");
    client_of(&dir, "orders", TEST_API_KEY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_hosts_certificate_cannot_take_over_a_registration() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let mut orders = sandbox.start("orders", "ord-0", &registry.url);
    let before = wait_registered(&registry, &[&orders]).await;
    let elsewhere = orders_certificate_of(&sandbox, "10.9.9.9");

    // Same instance id and shard, at an address of its own host.
    let takeover = json!({
        "role": "orders", "instance_id": "ord-0", "address": "https://10.9.9.9:8443",
        "version": "0.1.0", "metadata": { "shard": "0" }
    });
    let register = format!("{}/v1/instances", registry.url);
    let res = elsewhere
        .post(&register)
        .json(&takeover)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, 409, "take over ord-0 from another host").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("127.0.0.1"),
        "{problem}"
    );
    let after = catalog(&registry).await;
    assert_eq!(members(&after), members(&before), "{after}");
    assert_eq!(after["index"], before["index"], "{after}");
    // Logged with both identities: the holder's host and the caller's.
    registry.wait_for_log("registered from another host", Duration::from_secs(5));
    let line = registry
        .stderr()
        .lines()
        .find(|l| l.contains("registered from another host"))
        .map(str::to_string)
        .unwrap_or_default();
    for shown in ["ord-0", "127.0.0.1", "10.9.9.9"] {
        assert!(line.contains(shown), "`{shown}` missing from: {line}");
    }

    // Once its holder deregisters, the id is free for any host.
    orders.terminate();
    let res = elsewhere
        .post(&register)
        .json(&takeover)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
}
