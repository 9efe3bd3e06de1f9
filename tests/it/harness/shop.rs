//! The shop's side of the tests: products, orders and their bodies, problems, and the
//! invariants that hold once every saga has ended and every event was delivered
//! ([`Cluster::assert_settled`]), across every shard of a [`Cluster`].

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::http::{get_json, header, try_get_json, wait_for};
use super::shards::shard_for_key;
use super::topology::Cluster;

/// The test card payments always declines.
pub const DECLINED_CARD: &str = "4000000000000002";

/// What a create-order call answered.
#[derive(Debug)]
pub struct Placed {
    pub status: u16,
    pub location: Option<String>,
    pub body: Value,
}

impl Placed {
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no order id in {self:?}"))
            .to_string()
    }
}

/// A create-order body: `lines` of `(sku, quantity)`, optionally a card.
pub fn order_body(lines: &[(&str, i64)], card: Option<&str>) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, quantity)| serde_json::json!({ "sku": sku, "quantity": quantity }))
        .collect();
    match card {
        Some(card) => serde_json::json!({ "lines": lines, "card": card }),
        None => serde_json::json!({ "lines": lines }),
    }
}

/// Checks that `res` is an `application/problem+json` answer with `status` and a detail.
pub async fn assert_problem(res: reqwest::Response, status: u16, what: &str) -> Value {
    let got = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: {text}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "{what}: content-type {content_type:?}: {text}"
    );
    let problem: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: problem body is not JSON ({e}): {text}"));
    assert_eq!(problem["status"], status, "{what}: {problem}");
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {problem}"
    );
    problem
}

/// `value[key]` as a u64, panicking with the document otherwise.
pub fn u64_of(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` is not a u64 in {value}"))
}

pub fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

/// `POST <api>/orders` with an optional `Idempotency-Key`; any status is returned.
pub async fn place_order_at(
    client: &reqwest::Client,
    api: &str,
    body: &Value,
    key: Option<&str>,
) -> Placed {
    let mut req = client.post(format!("{api}/orders")).json(body);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST orders {body}: {e}"));
    let status = res.status().as_u16();
    let location = header(&res, "location");
    let text = res.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("POST orders: {status}: not JSON ({e}): {text}"));
    Placed {
        status,
        location,
        body,
    }
}

/// `all` if no order in it is still pending; else which ones are.
pub fn none_pending(all: Vec<Value>) -> Result<Vec<Value>, String> {
    let pending: Vec<&str> = all
        .iter()
        .filter(|o| o["status"] == "pending")
        .map(|o| str_of(o, "id"))
        .collect();
    if pending.is_empty() {
        Ok(all)
    } else {
        Err(format!("{} pending: {pending:?}", pending.len()))
    }
}
/// A product body for inventory's `POST /v1/products`.
pub fn product(sku: &str) -> Value {
    serde_json::json!({ "sku": sku, "name": "Green tea", "price_minor": 450, "stock": 7 })
}

/// Creates a product through the public API at `api` (`.../api/v1`); panics unless 201.
pub async fn create_product_at(
    client: &reqwest::Client,
    api: &str,
    sku: &str,
    price_minor: u64,
    stock: u64,
) {
    let body = serde_json::json!({
        "sku": sku, "name": format!("Product {sku}"),
        "price_minor": price_minor, "stock": stock,
    });
    let res = client
        .post(format!("{api}/products"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create product {sku}: {e}"));
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(status, 201, "create product {sku}: {text}");
}

/// Units sold per SKU by the confirmed ones of `orders`.
pub fn sold_by_orders(orders: &[Value]) -> HashMap<String, u64> {
    let mut sold = HashMap::new();
    for o in orders.iter().filter(|o| o["status"] == "confirmed") {
        for line in o["lines"].as_array().into_iter().flatten() {
            *sold.entry(str_of(line, "sku").to_string()).or_default() += u64_of(line, "quantity");
        }
    }
    sold
}

/// Once every saga ended: each unit of `sku` in exactly one bucket, none reserved, and
/// the sold ones exactly what the confirmed orders bought.
pub fn assert_stock_settled(
    sku: &str,
    stock: u64,
    (available, reserved, sold): (u64, u64, u64),
    sold_by_orders: &HashMap<String, u64>,
) {
    assert_eq!(
        available + reserved + sold,
        stock,
        "{sku}: available {available} + reserved {reserved} + sold {sold} != {stock}"
    );
    assert_eq!(reserved, 0, "{sku}: units still reserved");
    assert_eq!(
        sold,
        sold_by_orders.get(sku).copied().unwrap_or(0),
        "{sku}: sold units differ from the confirmed orders' lines"
    );
}

impl Cluster {
    /// Creates a product through the first gateway; panics unless 201.
    pub async fn create_product(&self, sku: &str, price_minor: u64, stock: u64) {
        create_product_at(&self.client, &self.api, sku, price_minor, stock).await;
    }

    /// `GET url`: status, `Retry-After` and the JSON body; `Err` on a transport error
    /// or a body that is not JSON.
    pub async fn try_get(&self, url: &str) -> Result<(u16, Option<String>, Value), String> {
        let res = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = res.status().as_u16();
        let retry_after = header(&res, "retry-after");
        let text = res.text().await.map_err(|e| format!("GET {url}: {e}"))?;
        let body = serde_json::from_str(&text)
            .map_err(|e| format!("GET {url}: {status}: not JSON ({e}): {text}"))?;
        Ok((status, retry_after, body))
    }

    /// [`Cluster::try_get`], panicking on an error.
    pub async fn get(&self, url: &str) -> (u16, Option<String>, Value) {
        self.try_get(url).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// `GET url`, expecting 200.
    pub async fn get_ok(&self, url: &str) -> Value {
        match self.get(url).await {
            (200, _, body) => body,
            (status, _, body) => panic!("GET {url}: {status}: {body}"),
        }
    }

    /// A product as the public API shows it.
    pub async fn product(&self, sku: &str) -> Value {
        self.get_ok(&format!("{}/products/{sku}", self.api)).await
    }

    /// `(available, reserved, sold)` of a product.
    pub async fn stock(&self, sku: &str) -> (u64, u64, u64) {
        let p = self.product(sku).await;
        (
            u64_of(&p, "available"),
            u64_of(&p, "reserved"),
            u64_of(&p, "sold"),
        )
    }

    /// `POST /api/v1/orders` at the first gateway, with an optional `Idempotency-Key`.
    pub async fn place_order(&self, body: &Value, key: Option<&str>) -> Placed {
        place_order_at(&self.client, &self.api, body, key).await
    }

    /// [`Cluster::place_order`] at gateway `gateway` (wrapping around the gateways).
    pub async fn place_order_via(&self, gateway: usize, body: &Value, key: Option<&str>) -> Placed {
        place_order_at(&self.client, &self.api_at(gateway), body, key).await
    }

    /// Places an order and waits for its saga to end; returns the final order.
    pub async fn place_final(&self, body: &Value) -> Value {
        let placed = self.place_order(body, None).await;
        match placed.status {
            201 => placed.body,
            202 => self.wait_final(&placed.id(), Duration::from_secs(20)).await,
            _ => panic!("order {body} answered {placed:?}"),
        }
    }

    pub async fn order(&self, id: &str) -> Value {
        self.get_ok(&format!("{}/orders/{id}", self.api)).await
    }

    /// Waits until order `id` is confirmed or cancelled.
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> Value {
        let url = format!("{}/orders/{id}", self.api);
        wait_for(&format!("order {id} to end"), timeout, || async {
            match self.try_get(&url).await? {
                (200, _, o) if o["status"] != "pending" => Ok(o),
                (status, _, o) => Err(format!("{status}: {o}")),
            }
        })
        .await
        .0
    }

    /// Walks every page of a listing (`GET {api}/{what}?limit={page}`), page `n`
    /// through gateway `n`; returns the items and every page's `missing_shards`.
    pub async fn walk(&self, what: &str, page: usize) -> (Vec<Value>, Vec<Vec<u64>>) {
        let mut items = Vec::new();
        let mut missing = Vec::new();
        let mut after: Option<String> = None;
        for n in 0.. {
            let mut url = format!("{}/{what}?limit={page}", self.api_at(n));
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let body = self.get_ok(&url).await;
            let list = body[what]
                .as_array()
                .unwrap_or_else(|| panic!("no {what} array: {body}"));
            items.extend(list.iter().cloned());
            let gone: Vec<u64> = body["missing_shards"]
                .as_array()
                .unwrap_or_else(|| panic!("no missing_shards: {body}"))
                .iter()
                .filter_map(Value::as_u64)
                .collect();
            assert_eq!(body["partial"], !gone.is_empty(), "{body}");
            missing.push(gone);
            match body["next_after"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
        (items, missing)
    }

    /// Every order, walking the pages of `GET /api/v1/orders` (`page` at a time, page
    /// `n` through gateway `n`); `Err` if a page misses a shard.
    pub async fn try_all_orders(&self, page: usize) -> Result<Vec<Value>, String> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for n in 0.. {
            let mut url = format!("{}/orders?limit={page}", self.api_at(n));
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let body = match self.try_get(&url).await? {
                (200, _, body) => body,
                (status, _, body) => return Err(format!("GET {url}: {status}: {body}")),
            };
            if body["partial"] != false {
                return Err(format!("partial listing: {}", body["missing_shards"]));
            }
            let orders = body["orders"]
                .as_array()
                .ok_or_else(|| format!("no orders array: {body}"))?;
            all.extend(orders.iter().cloned());
            match body["next_after"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
        Ok(all)
    }

    pub async fn all_orders(&self) -> Vec<Value> {
        self.try_all_orders(100)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until no order is pending; returns every order.
    pub async fn wait_all_final(&self, timeout: Duration) -> Vec<Value> {
        wait_for("every order to end", timeout, || async {
            let all = self.try_all_orders(1000).await?;
            none_pending(all)
        })
        .await
        .0
    }

    /// `(status, body)` of `GET /api/v1/orders/{id}/payment`.
    pub async fn payment(&self, id: &str) -> (u16, Value) {
        let (status, _, body) = self.get(&format!("{}/orders/{id}/payment", self.api)).await;
        (status, body)
    }

    /// Every notification of each notifications shard, from the instances themselves.
    pub async fn try_notifications_by_shard(&self) -> Result<Vec<Vec<Value>>, String> {
        let mut per_shard = Vec::new();
        for svc in self.instances("notifications") {
            let body = try_get_json(&format!("{}/v1/notifications", svc.url)).await?;
            per_shard.push(
                body["notifications"]
                    .as_array()
                    .cloned()
                    .ok_or_else(|| format!("no notifications array: {body}"))?,
            );
        }
        Ok(per_shard)
    }

    /// Every notification, of every shard.
    pub async fn try_all_notifications(&self) -> Result<Vec<Value>, String> {
        Ok(self
            .try_notifications_by_shard()
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Waits until there are at least `n` notifications in all; returns them by shard.
    pub async fn wait_notifications(&self, n: usize, timeout: Duration) -> Vec<Vec<Value>> {
        wait_for(&format!("{n} notifications"), timeout, || async {
            let per_shard = self.try_notifications_by_shard().await?;
            let all: usize = per_shard.iter().map(Vec::len).sum();
            if all >= n {
                Ok(per_shard)
            } else {
                Err(format!("{all} of {n} so far"))
            }
        })
        .await
        .0
    }

    /// The ledger of each payments shard (`GET /v1/ledger`).
    pub async fn ledgers(&self) -> Vec<Value> {
        let mut ledgers = Vec::new();
        for svc in self.instances("payments") {
            ledgers.push(get_json(&format!("{}/v1/ledger", svc.url)).await);
        }
        ledgers
    }

    /// The ledger of the only payments instance.
    pub async fn ledger(&self) -> Value {
        let mut ledgers = self.ledgers().await;
        assert_eq!(ledgers.len(), 1, "one payments instance");
        ledgers.remove(0)
    }

    /// Inventory's reservations still holding stock, on every shard.
    pub async fn held_reservations(&self) -> Vec<Value> {
        let mut held = Vec::new();
        for svc in self.instances("inventory") {
            let url = format!("{}/v1/reservations?status=held", svc.url);
            let body = get_json(&url).await;
            held.extend(
                body["reservations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| panic!("no reservations array: {body}")),
            );
        }
        held
    }

    /// The invariants of docs/ARCHITECTURE.md once every saga has ended and every event
    /// was delivered, across every shard: for each product `initial = available +
    /// reserved + sold` with nothing reserved or held and `sold` = the confirmed orders'
    /// lines; one capture per confirmed order (for its total, on its payments shard) and
    /// none for the others, the captured sum = the confirmed totals, no authorization
    /// left open; exactly one notification per order, of its final kind, on its shard.
    /// `initial` is each product's stock before the first order.
    pub async fn assert_settled<S: AsRef<str>>(&self, initial: &[(S, u64)], orders: &[Value]) {
        // Inventory: nothing held, every unit in exactly one bucket.
        let held = self.held_reservations().await;
        assert!(held.is_empty(), "reservations still held: {held:?}");
        let sold_by_orders = sold_by_orders(orders);
        for (sku, stock) in initial {
            let sku = sku.as_ref();
            assert_stock_settled(sku, *stock, self.stock(sku).await, &sold_by_orders);
        }

        // Payments, shard by shard.
        let ledgers = self.ledgers().await;
        let count = |ledger: &Value, id: &str, kind: &str| {
            ledger["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["order_id"] == id && e["kind"] == kind)
                .count()
        };
        let mut confirmed_total = 0;
        for o in orders {
            let id = str_of(o, "id");
            let ledger = &ledgers[shard_for_key(id, self.count("payments")) as usize];
            assert!(
                count(ledger, id, "authorize") <= 1,
                "{id}: authorized twice: {ledger}"
            );
            match str_of(o, "status") {
                "confirmed" => {
                    let total = u64_of(o, "total_minor");
                    confirmed_total += total;
                    assert_eq!(count(ledger, id, "capture"), 1, "{id}: captures: {ledger}");
                    let capture = ledger["entries"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|e| e["order_id"] == id && e["kind"] == "capture")
                        .unwrap();
                    assert_eq!(u64_of(capture, "amount_minor"), total, "{id}: {o}");
                }
                "cancelled" => {
                    assert_eq!(
                        count(ledger, id, "capture"),
                        0,
                        "{id}: cancelled but captured"
                    );
                    assert!(o["reason"].is_string(), "cancelled without reason: {o}");
                }
                other => panic!("order {id} is {other}: {o}"),
            }
        }
        let captured: u64 = ledgers
            .iter()
            .map(|l| u64_of(l, "captured_total_minor"))
            .sum();
        assert_eq!(captured, confirmed_total, "captured vs confirmed totals");
        for l in &ledgers {
            assert_eq!(
                u64_of(l, "authorized_open_minor"),
                0,
                "authorizations left open: {l}"
            );
        }

        // Notifications: exactly one per order, of its final kind, on its shard.
        let per_shard = self
            .wait_notifications(orders.len(), Duration::from_secs(30))
            .await;
        let total: usize = per_shard.iter().map(Vec::len).sum();
        assert_eq!(
            total,
            orders.len(),
            "more notifications than orders: {per_shard:?}"
        );
        for o in orders {
            let id = str_of(o, "id");
            let shard = shard_for_key(id, self.count("notifications")) as usize;
            let mine: Vec<&Value> = per_shard[shard]
                .iter()
                .filter(|n| n["order_id"] == id)
                .collect();
            assert_eq!(
                mine.len(),
                1,
                "{id}: notifications on shard {shard}: {mine:?}"
            );
            let kind = format!("order.{}", str_of(o, "status"));
            assert_eq!(mine[0]["kind"], kind.as_str(), "{id}: {o}");
        }
    }
}
