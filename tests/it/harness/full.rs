//! A full order-processing cluster: registry, inventory, payments, orders, notifications
//! and a gateway, all on 127.0.0.1:0, plus helpers for the public API.

use super::*;

/// The test card payments always declines.
pub const DECLINED_CARD: &str = "4000000000000002";

/// The instance id every [`FullCluster`] gives `role` (so a restart reuses its data).
pub fn full_instance_id(role: &str) -> &'static str {
    match role {
        "inventory" => "inv-1",
        "payments" => "pay-1",
        "orders" => "ord-1",
        "notifications" => "ntf-1",
        "gateway" => "gw-1",
        other => panic!("no instance id for role `{other}`"),
    }
}

/// How [`FullCluster::start_with`] runs the roles.
#[derive(Clone, Debug)]
pub struct FullOptions {
    /// `orders.create_wait`: how long a create waits for its saga before answering 202.
    pub create_wait: Duration,
    /// `orders.step_retry_max`: short, so sagas resume quickly after a peer comes back.
    pub step_retry_max: Duration,
    /// Extra environment of the first orders process (e.g. [`FAULT_SAGA_STEP_DELAY`]).
    pub orders_env: Vec<(String, String)>,
    /// `--log-format json` and `RUST_LOG=info,svc=debug` on every role but the registry.
    pub debug_json_logs: bool,
    /// More YAML for the shared config file (top-level sections other than `orders`),
    /// e.g. `"http:\n  call_timeout: 500ms\n"`.
    pub extra_config: String,
}

impl Default for FullOptions {
    fn default() -> Self {
        FullOptions {
            // Generous: a confirmed order answers 201 even on a loaded CI machine.
            create_wait: Duration::from_secs(5),
            step_retry_max: Duration::from_millis(500),
            orders_env: Vec::new(),
            debug_json_logs: false,
            extra_config: String::new(),
        }
    }
}

/// Every role of the backend, started and connected. Fields drop (SIGKILL) in
/// declaration order: the gateway first, the temporary directory last.
pub struct FullCluster {
    pub gateway: Svc,
    pub orders: Svc,
    pub notifications: Svc,
    pub payments: Svc,
    pub inventory: Svc,
    pub registry: Svc,
    /// The public API base, e.g. `http://127.0.0.1:41234/api/v1`.
    pub api: String,
    pub options: FullOptions,
    /// One client for the test (no connection reuse, see [`http`]).
    pub client: reqwest::Client,
    config: PathBuf,
    pub cluster: Cluster,
}

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

impl FullCluster {
    /// All roles with the default options.
    pub async fn start() -> FullCluster {
        Self::start_with(FullOptions::default()).await
    }

    pub async fn start_with(options: FullOptions) -> FullCluster {
        let cluster = Cluster::new();
        let config = cluster.write_file(
            "full.yaml",
            &format!(
                "orders:\n  create_wait: {}ms\n  step_retry_max: {}ms\n{}",
                options.create_wait.as_millis(),
                options.step_retry_max.as_millis(),
                options.extra_config
            ),
        );
        let registry = cluster.start_registry();
        let spawn = |role: &str, env: &[(String, String)]| {
            let cmd = full_command(&cluster, &config, &options, &registry.url, role, env);
            cluster.start_cmd(cmd, role, full_instance_id(role))
        };
        let inventory = spawn("inventory", &[]);
        let payments = spawn("payments", &[]);
        let notifications = spawn("notifications", &[]);
        let orders = spawn("orders", &options.orders_env);
        let gateway = spawn("gateway", &[]);
        let full = FullCluster {
            api: format!("{}/api/v1", gateway.url),
            gateway,
            orders,
            notifications,
            payments,
            inventory,
            registry,
            options,
            client: http(),
            config,
            cluster,
        };
        full.wait_connected().await;
        full
    }

    /// The `svc run` command of `role` in this cluster (same id, data dir and config).
    pub fn command(&self, role: &str, env: &[(String, String)]) -> Command {
        full_command(
            &self.cluster,
            &self.config,
            &self.options,
            &self.registry.url,
            role,
            env,
        )
    }

    /// Starts `role` again (after the test killed it), with `env` added.
    pub fn spawn_role(&self, role: &str, env: &[(String, String)]) -> Svc {
        self.cluster
            .start_cmd(self.command(role, env), role, full_instance_id(role))
    }

    /// Waits until the gateway and orders know every role they call, at the addresses
    /// the running instances serve on.
    pub async fn wait_connected(&self) {
        wait_peers(
            &self.gateway,
            &[
                &self.inventory,
                &self.orders,
                &self.payments,
                &self.notifications,
            ],
        )
        .await;
        wait_peers(
            &self.orders,
            &[&self.inventory, &self.payments, &self.notifications],
        )
        .await;
    }

    pub async fn create_product(&self, sku: &str, price_minor: u64, stock: u64) {
        create_product_at(&self.client, &self.api, sku, price_minor, stock).await;
    }

    async fn get(&self, url: &str) -> Result<(u16, Value), String> {
        let res = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| format!("GET {url}: {e}"))?;
        let body = serde_json::from_str(&text)
            .map_err(|e| format!("GET {url}: {status}: not JSON ({e}): {text}"))?;
        Ok((status, body))
    }

    /// GET `url`, expecting 200 JSON.
    pub async fn get_ok(&self, url: &str) -> Value {
        match self.get(url).await {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("GET {url}: {status}: {body}"),
            Err(e) => panic!("{e}"),
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

    /// `POST /api/v1/orders` with an optional `Idempotency-Key`.
    pub async fn place_order(&self, body: &Value, key: Option<&str>) -> Placed {
        place_order_at(&self.client, &self.api, body, key).await
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
            match self.get(&url).await? {
                (200, o) if o["status"] != "pending" => Ok(o),
                (status, o) => Err(format!("{status}: {o}")),
            }
        })
        .await
        .0
    }

    /// Every order, walking the pages of `GET /api/v1/orders` (`page` at a time).
    pub async fn try_all_orders(&self, page: usize) -> Result<Vec<Value>, String> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let url = match &after {
                Some(a) => format!("{}/orders?limit={page}&after={a}", self.api),
                None => format!("{}/orders?limit={page}", self.api),
            };
            let body = match self.get(&url).await? {
                (200, body) => body,
                (status, body) => return Err(format!("GET {url}: {status}: {body}")),
            };
            let orders = body["orders"]
                .as_array()
                .ok_or_else(|| format!("no orders array: {body}"))?;
            all.extend(orders.iter().cloned());
            match body["next_after"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => return Ok(all),
            }
        }
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
        self.get(&format!("{}/orders/{id}/payment", self.api))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The notifications of one order, through the gateway.
    pub async fn order_notifications(&self, id: &str) -> Vec<Value> {
        let body = self
            .get_ok(&format!("{}/orders/{id}/notifications", self.api))
            .await;
        body["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every notification, from the notifications instance itself.
    pub async fn try_all_notifications(&self) -> Result<Vec<Value>, String> {
        let url = format!("{}/v1/notifications", self.notifications.url);
        match self.get(&url).await? {
            (200, body) => body["notifications"]
                .as_array()
                .cloned()
                .ok_or_else(|| format!("no notifications array: {body}")),
            (status, body) => Err(format!("GET {url}: {status}: {body}")),
        }
    }

    /// Waits until there are at least `n` notifications in all; returns them.
    pub async fn wait_notifications(&self, n: usize, timeout: Duration) -> Vec<Value> {
        wait_for(&format!("{n} notifications"), timeout, || async {
            let all = self.try_all_notifications().await?;
            if all.len() >= n {
                Ok(all)
            } else {
                Err(format!("{} so far", all.len()))
            }
        })
        .await
        .0
    }

    /// Payments' ledger (`GET /v1/ledger` on the payments instance).
    pub async fn ledger(&self) -> Value {
        self.get_ok(&format!("{}/v1/ledger", self.payments.url))
            .await
    }

    /// Inventory's reservations still holding stock.
    pub async fn held_reservations(&self) -> Vec<Value> {
        let body = self
            .get_ok(&format!(
                "{}/v1/reservations?status=held",
                self.inventory.url
            ))
            .await;
        body["reservations"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no reservations array: {body}"))
    }

    /// Checks everything that must hold once every saga has ended and every event was
    /// delivered: `orders` (all final) against inventory, payments and notifications.
    /// `initial` is each product's stock before the first order.
    pub async fn assert_settled(&self, initial: &[(&str, u64)], orders: &[Value]) {
        // Inventory: nothing held, every unit in exactly one bucket.
        let held = self.held_reservations().await;
        assert!(held.is_empty(), "reservations still held: {held:?}");
        let sold_by_orders = sold_by_orders(orders);
        for (sku, stock) in initial {
            assert_stock_settled(sku, *stock, self.stock(sku).await, &sold_by_orders);
        }

        // Payments: one capture per confirmed order, for its total; none for the others.
        let ledger = self.ledger().await;
        let entries = ledger["entries"].as_array().cloned().unwrap_or_default();
        let count = |id: &str, kind: &str| {
            entries
                .iter()
                .filter(|e| e["order_id"] == id && e["kind"] == kind)
                .count()
        };
        let mut confirmed_total = 0;
        for o in orders {
            let id = str_of(o, "id");
            assert!(
                count(id, "authorize") <= 1,
                "{id}: authorized twice: {ledger}"
            );
            match str_of(o, "status") {
                "confirmed" => {
                    let total = u64_of(o, "total_minor");
                    confirmed_total += total;
                    assert_eq!(count(id, "capture"), 1, "{id}: captures: {ledger}");
                    let capture = entries
                        .iter()
                        .find(|e| e["order_id"] == id && e["kind"] == "capture")
                        .unwrap();
                    assert_eq!(u64_of(capture, "amount_minor"), total, "{id}: {o}");
                }
                "cancelled" => {
                    assert_eq!(count(id, "capture"), 0, "{id}: cancelled but captured");
                    assert!(o["reason"].is_string(), "cancelled without reason: {o}");
                }
                other => panic!("order {id} is {other}: {o}"),
            }
        }
        assert_eq!(
            u64_of(&ledger, "captured_total_minor"),
            confirmed_total,
            "captured total vs confirmed orders: {ledger}"
        );
        assert_eq!(
            u64_of(&ledger, "authorized_open_minor"),
            0,
            "authorizations left open: {ledger}"
        );

        // Notifications: exactly one per order, of the kind its final status says.
        let all = self
            .wait_notifications(orders.len(), Duration::from_secs(20))
            .await;
        assert_eq!(all.len(), orders.len(), "notifications: {all:?}");
        for o in orders {
            let id = str_of(o, "id");
            let kind = format!("order.{}", str_of(o, "status"));
            let mine: Vec<&Value> = all.iter().filter(|n| n["order_id"] == id).collect();
            assert_eq!(mine.len(), 1, "{id}: notifications {mine:?}");
            assert_eq!(mine[0]["kind"], kind.as_str(), "{id}: {o}");
        }
    }
}

pub(crate) fn full_command(
    cluster: &Cluster,
    config: &Path,
    options: &FullOptions,
    registry: &str,
    role: &str,
    env: &[(String, String)],
) -> Command {
    let mut cmd = cluster.run_command(role, full_instance_id(role), registry);
    cmd.arg("--config").arg(config);
    if options.debug_json_logs {
        cmd.args(["--log-format", "json"])
            .env("RUST_LOG", "info,svc=debug");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
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
