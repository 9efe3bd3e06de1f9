//! A cluster for fault tests (tests/chaos.rs): the roles of a [`ShardedCluster`], but with
//! several registries (every instance registers at all of them), every instance
//! restartable in place (same id, data dir and shard; a gateway also on the same port,
//! since clients know gateways by address), and the invariants checked across shards.

use super::*;

/// The kind of the I/O error behind `e`, if one is.
fn io_kind(e: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}

/// Whether `e` is a refused connection: nothing listened, so the request was never sent.
pub fn is_refused(e: &reqwest::Error) -> bool {
    io_kind(e) == Some(std::io::ErrorKind::ConnectionRefused)
}

/// Whether `e` is a connection reset by the server.
pub fn is_reset(e: &reqwest::Error) -> bool {
    io_kind(e) == Some(std::io::ErrorKind::ConnectionReset)
}

/// The sum of the samples of metric `name` whose labels include every pair of `labels`
/// (`None` when there is no such sample).
pub fn metric_sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric_name, rest) = series.split_once('{').unwrap_or((series, ""));
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (metric_name == name && all)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Milliseconds since the Unix epoch (the registry's `renewed_at_ms` clock).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One instance of a [`ChaosCluster`].
pub struct Member {
    pub role: String,
    /// `gw-N` for gateways, `role-N` (shard N) for the stateful roles.
    pub id: String,
    pub shard: Option<u32>,
    /// The port it is started on: fixed after the first start for gateways, else 0.
    pub port: u16,
    pub svc: Svc,
}

/// See the section comment. Fields drop (SIGKILL) in declaration order: the instances,
/// then the registries, then the temporary directory.
pub struct ChaosCluster {
    pub members: Vec<Member>,
    pub registries: Vec<Svc>,
    registry_ports: Vec<u16>,
    pub options: ShardedOptions,
    config: PathBuf,
    pub client: reqwest::Client,
    pub cluster: Cluster,
}

impl ChaosCluster {
    /// Starts `registries` registries, then every shard of every stateful role, then the
    /// gateways, and waits until everyone is registered everywhere and knows its peers.
    pub async fn start(options: ShardedOptions, registries: usize) -> ChaosCluster {
        let cluster = Cluster::new();
        let config = cluster.write_file(
            "chaos.yaml",
            "orders:\n  create_wait: 5s\n  step_retry_max: 500ms\n",
        );
        let mut chaos = ChaosCluster {
            members: Vec::new(),
            registries: Vec::new(),
            registry_ports: vec![0; registries],
            options,
            config,
            client: http(),
            cluster,
        };
        for n in 0..registries {
            let svc = chaos.spawn_registry(n);
            chaos.registry_ports[n] = svc.port();
            chaos.registries.push(svc);
        }
        for role in ["inventory", "payments", "notifications", "orders"] {
            for shard in 0..chaos.options.count(role) {
                let id = format!("{role}-{shard}");
                let svc = chaos.spawn(role, &id, Some(shard), 0);
                chaos.members.push(Member {
                    role: role.to_string(),
                    id,
                    shard: Some(shard),
                    port: 0,
                    svc,
                });
            }
        }
        for n in 0..chaos.options.gateways {
            let id = format!("gw-{n}");
            let svc = chaos.spawn("gateway", &id, None, 0);
            chaos.members.push(Member {
                role: "gateway".to_string(),
                id,
                shard: None,
                port: svc.port(),
                svc,
            });
        }
        for i in 0..chaos.members.len() {
            chaos.wait_in_views(i).await;
        }
        chaos
    }
}

impl ChaosCluster {
    /// Every registry's URL, comma-separated: what each instance gets as `--registry`.
    pub fn registry_urls(&self) -> String {
        let urls: Vec<String> = self
            .registry_ports
            .iter()
            .map(|p| format!("https://127.0.0.1:{p}"))
            .collect();
        urls.join(",")
    }

    /// Starts registry `reg-n` on its port (any port the first time) with its own data
    /// dir, so a restart comes back with what it had written.
    pub fn spawn_registry(&self, n: usize) -> Svc {
        let mut cmd = svc_command();
        cmd.arg("run")
            .args(["--role", "registry"])
            .args(["--listen", &format!("127.0.0.1:{}", self.registry_ports[n])])
            .arg("--data-dir")
            .arg(self.cluster.data_dir().join(format!("reg-{n}")))
            .args(["--instance-id", &format!("reg-{n}")])
            .arg("--config")
            .arg(self.cluster.registry_config());
        Svc::spawn(cmd, &format!("registry/reg-{n}")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts instance `id` of `role` (shard `shard`) on `port` (0: any).
    pub fn spawn(&self, role: &str, id: &str, shard: Option<u32>, port: u16) -> Svc {
        let mut cmd = svc_command();
        cmd.arg("run")
            .args(["--role", role])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(self.cluster.data_dir())
            .args(["--instance-id", id])
            .args(["--registry", &self.registry_urls()])
            .arg("--config")
            .arg(&self.config)
            .args(["--shards", &self.options.shards_flag()]);
        if let Some(shard) = shard {
            cmd.args(["--shard", &shard.to_string()]);
        }
        self.cluster.start_cmd(cmd, role, id)
    }

    /// Starts member `i` again, as it was (after the test killed or stopped it).
    pub fn respawn(&mut self, i: usize) {
        let m = &self.members[i];
        let svc = self.spawn(&m.role, &m.id, m.shard, m.port);
        self.members[i].svc = svc;
    }

    /// The index of the member with instance id `id`.
    pub fn index(&self, id: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.id == id)
            .unwrap_or_else(|| panic!("no member `{id}`"))
    }

    pub fn member(&self, id: &str) -> &Member {
        &self.members[self.index(id)]
    }

    /// The gateways' base URLs, in order (stable: a gateway restarts on its port).
    pub fn gateway_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.role == "gateway")
            .map(|m| m.svc.url.clone())
            .collect()
    }

    /// The public API base of gateway `n` (wrapping around the gateways).
    pub fn api(&self, n: usize) -> String {
        let urls = self.gateway_urls();
        format!("{}/api/v1", urls[n % urls.len()])
    }

    /// The members that call member `i`'s role: the gateways call every role, orders
    /// calls inventory and payments and sends events to notifications.
    pub fn callers(&self, i: usize) -> Vec<usize> {
        let role = self.members[i].role.as_str();
        (0..self.members.len())
            .filter(|&c| match self.members[c].role.as_str() {
                "gateway" => role != "gateway",
                "orders" => matches!(role, "inventory" | "payments" | "notifications"),
                _ => false,
            })
            .collect()
    }

    /// Waits until member `i`, as it runs now, is in every registry's catalog and in the
    /// peers view of every member that calls it.
    pub async fn wait_in_views(&self, i: usize) {
        let svc = &self.members[i].svc;
        for registry in &self.registries {
            wait_registered(registry, &[svc]).await;
        }
        for c in self.callers(i) {
            wait_peers(&self.members[c].svc, &[svc]).await;
        }
    }

    pub async fn create_product(&self, sku: &str, price_minor: u64, stock: u64) {
        let body = serde_json::json!({
            "sku": sku, "name": format!("Product {sku}"),
            "price_minor": price_minor, "stock": stock,
        });
        let res = post_json(&format!("{}/products", self.api(0)), &body).await;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert_eq!(status, 201, "create product {sku}: {text}");
    }

    /// Every order, through the gateways' merged listing; `Err` if a shard is missing.
    pub async fn try_all_orders(&self) -> Result<Vec<Value>, String> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for n in 0.. {
            let mut url = format!("{}/orders?limit=1000", self.api(n));
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let body = try_get_json(&url).await?;
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

    /// Waits until no order is pending; returns every order.
    pub async fn wait_all_final(&self, timeout: Duration) -> Vec<Value> {
        wait_for("every order to end", timeout, || async {
            let all = self.try_all_orders().await?;
            none_pending(all)
        })
        .await
        .0
    }

    fn shard_members(&self, role: &str) -> Vec<&Member> {
        let mut shards: Vec<&Member> = self.members.iter().filter(|m| m.role == role).collect();
        shards.sort_by_key(|m| m.shard);
        shards
    }

    /// The invariants of docs/ARCHITECTURE.md once every saga has ended and every event
    /// was delivered, across every shard: for each product `initial = available +
    /// reserved + sold` with nothing reserved or held and `sold` = the confirmed orders'
    /// lines; one capture per confirmed order (for its total, on its payments shard) and
    /// none for the others, the captured sum = the confirmed totals, no authorization
    /// left open; exactly one notification per order, of its final kind, on its shard.
    pub async fn assert_settled(&self, initial: &[(String, u64)], orders: &[Value]) {
        for inv in self.shard_members("inventory") {
            let url = format!("{}/v1/reservations?status=held", inv.svc.url);
            let held = get_json(&url).await;
            assert_eq!(
                held["reservations"].as_array().map(Vec::len),
                Some(0),
                "{}: reservations still held: {held}",
                inv.id
            );
        }
        let sold_by_orders = sold_by_orders(orders);
        for (sku, stock) in initial {
            let p = get_json(&format!("{}/products/{sku}", self.api(0))).await;
            let counts = (
                u64_of(&p, "available"),
                u64_of(&p, "reserved"),
                u64_of(&p, "sold"),
            );
            assert_stock_settled(sku, *stock, counts, &sold_by_orders);
        }

        // Payments, shard by shard.
        let payments = self.shard_members("payments");
        let mut ledgers = Vec::new();
        for p in &payments {
            ledgers.push(get_json(&format!("{}/v1/ledger", p.svc.url)).await);
        }
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
            let shard = shard_for_key(id, self.options.payments) as usize;
            let ledger = &ledgers[shard];
            assert!(
                count(ledger, id, "authorize") <= 1,
                "{id}: authorized twice"
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
            assert_eq!(u64_of(l, "authorized_open_minor"), 0, "open: {l}");
        }

        // Notifications: one per order, on the shard its id hashes to.
        let shards = self.shard_members("notifications");
        let urls: Vec<String> = shards
            .iter()
            .map(|m| format!("{}/v1/notifications", m.svc.url))
            .collect();
        let (per_shard, _) = wait_for(
            "one notification per order",
            Duration::from_secs(30),
            || async {
                let mut per_shard = Vec::new();
                for url in &urls {
                    let body = try_get_json(url).await?;
                    per_shard.push(
                        body["notifications"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    );
                }
                let n: usize = per_shard.iter().map(Vec::len).sum();
                if n >= orders.len() {
                    Ok(per_shard)
                } else {
                    Err(format!("{n} of {}", orders.len()))
                }
            },
        )
        .await;
        let total: usize = per_shard.iter().map(Vec::len).sum();
        assert_eq!(total, orders.len(), "more notifications than orders");
        for o in orders {
            let id = str_of(o, "id");
            let shard = shard_for_key(id, self.options.notifications) as usize;
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
