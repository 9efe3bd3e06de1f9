//! The order flow under faults: a consumer that is down while events are produced, and
//! an orders instance SIGKILLed in the middle of its sagas. Nothing may be lost or done
//! twice.

use std::time::{Duration, Instant};

use crate::harness::*;
use serde_json::Value;

/// Generous: the outbox relay backs off up to 5 s between attempts while a consumer is
/// down, and discovery must first learn the restarted consumer's new address.
const RECOVERY: Duration = Duration::from_secs(25);

#[tokio::test]
async fn events_produced_while_notifications_is_down_are_delivered_once() {
    let mut shop = Topology::shop().start().await;
    shop.create_product("tea", 450, 100).await;

    shop["notifications-0"].kill();
    // A real outage: the registry evicts it, so deliveries find no instance at all
    // before they find the restarted one at its new address.
    wait_for("notifications to leave the catalog", RECOVERY, || async {
        let c = try_get_json(&format!("{}/v1/catalog", shop.registry().url)).await?;
        if lists(&c, &shop["notifications-0"]) {
            Err("still listed".to_string())
        } else {
            Ok(())
        }
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let order = shop.place_final(&order_body(&[("tea", 1)], None)).await;
        assert_eq!(order["status"], "confirmed", "order {i}: {order}");
        ids.push(order["id"].as_str().unwrap().to_string());
    }

    shop.restart("notifications-0");
    let (all, took) = wait_for("10 notifications after the restart", RECOVERY, || async {
        let all = shop.try_all_notifications().await?;
        if all.len() >= ids.len() {
            Ok(all)
        } else {
            Err(format!("{} so far", all.len()))
        }
    })
    .await;
    eprintln!("all 10 notifications {took:?} after the restart");
    let check = |all: &[Value]| {
        assert_eq!(all.len(), ids.len(), "{all:?}");
        for id in &ids {
            let mine: Vec<&Value> = all
                .iter()
                .filter(|n| n["order_id"] == id.as_str())
                .collect();
            assert_eq!(mine.len(), 1, "{id}: {all:?}");
            assert_eq!(mine[0]["kind"], "order.confirmed", "{mine:?}");
        }
        let mut events: Vec<&str> = all.iter().filter_map(|n| n["event_id"].as_str()).collect();
        events.sort_unstable();
        events.dedup();
        assert_eq!(events.len(), ids.len(), "event ids repeat: {all:?}");
    };
    check(&all);

    // Redeliveries (if any) must not add anything: wait until the count is stable
    // across a second and the relay has had time to go idle, then check again.
    let deadline = Instant::now() + RECOVERY;
    let mut previous = all.len();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = shop.try_all_notifications().await.unwrap();
        if now.len() == previous {
            check(&now);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "notification count keeps changing"
        );
        previous = now.len();
    }
    let orders = shop.all_orders().await;
    shop.assert_settled(&[("tea", 100)], &orders).await;
}

#[tokio::test]
async fn sagas_resume_after_orders_is_killed_mid_flight() {
    let mut shop = Topology::shop()
        .create_wait(Duration::from_millis(100))
        .env("orders", FAULT_SAGA_STEP_DELAY, "300ms")
        .start()
        .await;
    let initial = [("tea", 20), ("cake", 5)];
    for (sku, stock) in initial {
        shop.create_product(sku, if sku == "tea" { 450 } else { 1200 }, stock)
            .await;
    }
    let decline = Some(DECLINED_CARD);
    let first_wave = [
        order_body(&[("tea", 2)], None),
        order_body(&[("tea", 1), ("cake", 1)], None),
        order_body(&[("tea", 1)], decline),
        order_body(&[("cake", 2)], None),
        order_body(&[("tea", 3)], None),
    ];
    let second_wave = [
        order_body(&[("tea", 1)], None),
        order_body(&[("cake", 4)], None), // more than is left: out of stock
        order_body(&[("tea", 2), ("cake", 1)], decline),
        order_body(&[("tea", 1)], None),
        order_body(&[("tea", 2)], None),
    ];

    // (order id, placed with the declined card)
    let mut ids: Vec<(String, bool)> = Vec::new();
    let mut place = |bodies: &[Value], placed: Vec<Placed>| {
        for (body, p) in bodies.iter().zip(placed) {
            assert_eq!(
                p.status, 202,
                "with 300 ms per step, creates answer early: {p:?}"
            );
            assert_eq!(p.body["status"], "pending", "{p:?}");
            let id = p.id();
            assert_eq!(
                p.location.as_deref(),
                Some(format!("/api/v1/orders/{id}").as_str())
            );
            ids.push((id, body.get("card").is_some()));
        }
    };
    let placed = futures::future::join_all(first_wave.iter().map(|b| shop.place_order(b, None)));
    place(&first_wave, placed.await);
    // Let the first wave get well into its sagas (stock held, payment authorized), so
    // the kill lands at different steps.
    wait_for(
        "a first-wave order at commit or capture",
        RECOVERY,
        || async {
            let orders = shop.try_all_orders(100).await?;
            orders
                .iter()
                .find(|o| {
                    o["status"] == "pending"
                        && matches!(o["step"].as_str(), Some("commit" | "capture"))
                })
                .map(|_| ())
                .ok_or_else(|| format!("steps: {:?}", steps(&orders)))
        },
    )
    .await;
    let placed = futures::future::join_all(second_wave.iter().map(|b| shop.place_order(b, None)));
    place(&second_wave, placed.await);

    let before = shop.all_orders().await;
    let pending = before.iter().filter(|o| o["status"] == "pending").count();
    shop["orders-0"].kill();
    eprintln!("killed orders with {pending} pending: {:?}", steps(&before));
    assert!(pending > 0, "nothing pending at the kill: {before:?}");

    // Back without the fault: every unfinished saga is resumed.
    shop.restart_with("orders-0", &[]);
    shop["orders-0"].wait_for_log("resuming unfinished sagas", Duration::from_secs(5));
    shop.wait_connected().await;
    let orders = shop.wait_all_final(RECOVERY).await;
    assert_eq!(orders.len(), ids.len());
    eprintln!("after the restart: {:?}", steps(&orders));
    for (id, declined_card) in &ids {
        let o = orders
            .iter()
            .find(|o| o["id"] == id.as_str())
            .unwrap_or_else(|| panic!("order {id} lost"));
        if *declined_card {
            assert_eq!(o["status"], "cancelled", "{o}");
        }
    }
    shop.assert_settled(&initial, &orders).await;
}

/// `(status, step)` of each order, for messages.
fn steps(orders: &[Value]) -> Vec<(String, String)> {
    orders
        .iter()
        .map(|o| {
            (
                o["status"].as_str().unwrap_or_default().to_string(),
                o["step"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A cluster whose orders pause `step_delay` (e.g. "300ms") before each saga step and
/// answer creates after 100 ms, so a test can act while an order is at a given step.
async fn slow_saga_cluster(step_delay: &str, extra_config: &str) -> Cluster {
    Topology::shop()
        .create_wait(Duration::from_millis(100))
        .env("orders", FAULT_SAGA_STEP_DELAY, step_delay)
        .config(extra_config)
        .start()
        .await
}

/// Waits until order `id` is pending at `step`.
async fn wait_step(shop: &Cluster, id: &str, step: &str) {
    let url = format!("{}/orders/{id}", shop.api);
    wait_for(&format!("order {id} at step {step}"), RECOVERY, || async {
        let o = try_get_json(&url).await?;
        if o["status"] == "pending" && o["step"] == step {
            Ok(())
        } else {
            Err(format!("{o}"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_customer_cancel_of_a_pending_order_compensates_everything() {
    // A long pause before each step: the cancel surely lands before the saga reads the
    // order for its commit.
    let shop = slow_saga_cluster("1s", "").await;
    shop.create_product("tea", 450, 10).await;
    let placed = shop
        .place_order(&order_body(&[("tea", 2)], None), None)
        .await;
    assert_eq!(placed.status, 202, "{placed:?}");
    let id = placed.id();
    // Stock held; the saga is about to authorize (the cancel is honoured before the
    // commit starts), so compensation must give back the stock and void the payment.
    // The order itself is stored again only before the commit: the hold shows at
    // inventory.
    wait_for("the order's stock held", RECOVERY, || async {
        match shop.stock("tea").await {
            (8, 2, 0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let res = shop
        .client
        .post(format!("{}/orders/{id}/cancel", shop.api))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert!(matches!(status, 200 | 202), "{status}: {body}");
    let order = shop.wait_final(&id, RECOVERY).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["reason"], "cancelled by the customer", "{order}");
    assert_eq!(shop.stock("tea").await, (10, 0, 0));
    let (status, payment) = shop.payment(&id).await;
    assert_eq!((status, payment["status"].as_str()), (200, Some("voided")));
    shop.assert_settled(&[("tea", 10)], &[order]).await;

    // Cancelling again is a no-op answer with the same cancelled order.
    let again = shop
        .client
        .post(format!("{}/orders/{id}/cancel", shop.api))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["status"], "cancelled", "{again}");
}

#[tokio::test]
async fn a_cancel_while_a_commit_may_be_in_flight_is_refused_and_the_order_ends() {
    // Inventory is frozen (SIGSTOP) while orders sends the commit: the call times out
    // after 500 ms and the customer tries to cancel. A commit may be in flight, so the
    // cancel is refused (409) and the saga goes forward once inventory runs again.
    let shop = slow_saga_cluster("300ms", "http:\n  call_timeout: 500ms\n").await;
    shop.create_product("tea", 450, 10).await;
    let placed = shop
        .place_order(&order_body(&[("tea", 2)], None), None)
        .await;
    assert_eq!(placed.status, 202, "{placed:?}");
    let id = placed.id();
    wait_step(&shop, &id, "commit").await;

    shop["inventory-0"].freeze();
    shop["orders-0"].wait_for_log("saga step will be retried", Duration::from_secs(10));
    let res = shop
        .client
        .post(format!("{}/orders/{id}/cancel", shop.api))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409, "{:?}", res.text().await);
    shop["inventory-0"].thaw();

    // The saga ends confirmed, with stock, payment and notification agreeing.
    let url = format!("{}/orders/{id}", shop.api);
    let ended = wait_until_ok(Duration::from_secs(10), || async {
        let o = try_get_json(&url).await?;
        (o["status"] != "pending")
            .then_some(o.clone())
            .ok_or(o.to_string())
    })
    .await;
    let order = match ended {
        Ok(order) => order,
        Err(last) => panic!(
            "order never ended: {last}\nstock (available, reserved, sold): {:?}\npayment: {:?}",
            shop.stock("tea").await,
            shop.payment(&id).await
        ),
    };
    assert_eq!(order["status"], "confirmed", "{order}");
    shop.assert_settled(&[("tea", 10)], &[order]).await;
}

/// Like [`wait_for`], but returns the last error instead of panicking at the deadline.
async fn wait_until_ok<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A create whose deadline passes while its order is being written: the request ends
/// (504), but the order was stored, so its saga must still run to the end in the same
/// process, not wait for a restart of orders.
#[tokio::test]
async fn an_order_stored_after_its_request_gave_up_still_runs_its_saga() {
    let shop = Topology::shop()
        .env("orders", "SVC_FAULT_ORDER_CREATE_ANSWER_DELAY", "1s")
        .start()
        .await;
    shop.create_product("tea", 450, 10).await;
    let orders = &shop["orders-0"].url;
    let res = client_as("gateway")
        .post(format!("{orders}/v1/orders"))
        .header("x-svc-deadline-ms", "300")
        .json(&order_body(&[("tea", 1)], None))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504, "the request gave up first");

    let operator = client_as("operator");
    let (order, took) = wait_for("the stored order to end", RECOVERY, || async {
        let res = operator.get(format!("{orders}/v1/orders")).send().await;
        let list: Value = res.map_err(|e| e.to_string())?.json().await.unwrap();
        match list["orders"].as_array().map(Vec::as_slice) {
            Some([order]) if order["status"] != "pending" => Ok(order.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eprintln!("ended {took:?} after the request gave up");
    assert_eq!(order["status"], "confirmed", "{order}");
}

/// An order already compensating (out of stock, its void held up at a stopped payments)
/// takes a customer's cancel as what will happen anyway: not a 409 "being confirmed".
#[tokio::test]
async fn a_cancel_of_an_order_already_cancelling_is_not_refused_as_being_confirmed() {
    let shop = Topology::shop()
        .create_wait(Duration::from_millis(200))
        .start()
        .await;
    shop.create_product("tea", 450, 1).await;
    shop["payments-0"].freeze();
    let placed = shop
        .place_order(&order_body(&[("tea", 5)], None), None)
        .await;
    assert_eq!(placed.status, 202, "{placed:?}");
    let id = placed.id();
    shop["orders-0"].wait_for_log("saga step will be retried", Duration::from_secs(10));

    let res = shop
        .client
        .post(format!("{}/orders/{id}/cancel", shop.api))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "pending", "{body}");
    shop["payments-0"].thaw();

    let order = shop.wait_final(&id, RECOVERY).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert!(
        order["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("out of stock"),
        "{order}"
    );
}
