//! A sharded cluster: several shards of the stateful roles and one or more gateways, with
//! the instance of shard `n` of role `r` named `r-n`.

use super::*;

/// FNV-1a 64, as the routing rules in docs/ARCHITECTURE.md define it: tests compute where
/// a key lives independently of the code under test.
pub fn fnv1a64(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The shard among `count` that owns `key`.
pub fn shard_for_key(key: &str, count: u32) -> u32 {
    (fnv1a64(key) % u64::from(count)) as u32
}

/// `n` keys `{prefix}-0`, `{prefix}-1`, ... that live on `shard` of `count`.
pub fn keys_on_shard(prefix: &str, shard: u32, count: u32, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|k| shard_for_key(k, count) == shard)
        .take(n)
        .collect()
}

/// The shard an order id (`ord-<shard>-<ulid>`) names.
pub fn shard_of_order(id: &str) -> u32 {
    id.split('-')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no shard in order id `{id}`"))
}

/// How many instances [`ShardedCluster::start`] runs.
#[derive(Clone, Debug)]
pub struct ShardedOptions {
    pub orders: u32,
    pub inventory: u32,
    pub payments: u32,
    pub notifications: u32,
    pub gateways: usize,
}

impl Default for ShardedOptions {
    fn default() -> Self {
        ShardedOptions {
            orders: 2,
            inventory: 2,
            payments: 2,
            notifications: 1,
            gateways: 2,
        }
    }
}

impl ShardedOptions {
    /// The `--shards` every instance gets.
    pub fn shards_flag(&self) -> String {
        format!(
            "orders={},inventory={},payments={},notifications={}",
            self.orders, self.inventory, self.payments, self.notifications
        )
    }

    pub fn count(&self, role: &str) -> u32 {
        match role {
            "orders" => self.orders,
            "inventory" => self.inventory,
            "payments" => self.payments,
            "notifications" => self.notifications,
            other => panic!("`{other}` is not sharded"),
        }
    }
}

/// Every role, each stateful one in several shards. Fields drop (SIGKILL) in declaration
/// order: the gateways first, the registry and the temporary directory last.
pub struct ShardedCluster {
    pub gateways: Vec<Svc>,
    pub orders: Vec<Svc>,
    pub inventory: Vec<Svc>,
    pub payments: Vec<Svc>,
    pub notifications: Vec<Svc>,
    pub registry: Svc,
    pub options: ShardedOptions,
    pub client: reqwest::Client,
    config: PathBuf,
    pub cluster: Cluster,
}

impl ShardedCluster {
    pub async fn start(options: ShardedOptions) -> ShardedCluster {
        let cluster = Cluster::new();
        let config = cluster.write_file(
            "sharded.yaml",
            "orders:\n  create_wait: 5s\n  step_retry_max: 500ms\n",
        );
        let registry = cluster.start_registry();
        let mut full = ShardedCluster {
            gateways: Vec::new(),
            orders: Vec::new(),
            inventory: Vec::new(),
            payments: Vec::new(),
            notifications: Vec::new(),
            registry,
            options,
            client: http(),
            config,
            cluster,
        };
        for role in ["inventory", "payments", "notifications", "orders"] {
            for shard in 0..full.options.count(role) {
                let svc = full.spawn_shard(role, shard);
                full.shards_mut(role).push(svc);
            }
        }
        for n in 0..full.options.gateways {
            let id = format!("gw-{n}");
            let mut cmd = full.command("gateway", &id);
            cmd.args(["--shards", &full.options.shards_flag()]);
            full.gateways
                .push(full.cluster.start_cmd(cmd, "gateway", &id));
        }
        full.wait_connected().await;
        full
    }

    fn command(&self, role: &str, id: &str) -> Command {
        let mut cmd = self.cluster.run_command(role, id, &self.registry.url);
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    /// The `svc run` command of shard `shard` of `role` (same id and data on a restart).
    pub fn shard_command(&self, role: &str, shard: u32) -> Command {
        let mut cmd = self.command(role, &format!("{role}-{shard}"));
        cmd.args(["--shards", &self.options.shards_flag()])
            .args(["--shard", &shard.to_string()]);
        cmd
    }

    /// Starts shard `shard` of `role` (again, after the test killed it).
    pub fn spawn_shard(&self, role: &str, shard: u32) -> Svc {
        let id = format!("{role}-{shard}");
        self.cluster
            .start_cmd(self.shard_command(role, shard), role, &id)
    }

    pub fn shards(&self, role: &str) -> &[Svc] {
        match role {
            "orders" => &self.orders,
            "inventory" => &self.inventory,
            "payments" => &self.payments,
            "notifications" => &self.notifications,
            other => panic!("`{other}` is not sharded"),
        }
    }

    fn shards_mut(&mut self, role: &str) -> &mut Vec<Svc> {
        match role {
            "orders" => &mut self.orders,
            "inventory" => &mut self.inventory,
            "payments" => &mut self.payments,
            "notifications" => &mut self.notifications,
            other => panic!("`{other}` is not sharded"),
        }
    }

    /// The public API base of gateway `n` (wrapping around the gateways).
    pub fn api(&self, n: usize) -> String {
        format!("{}/api/v1", self.gateways[n % self.gateways.len()].url)
    }

    /// Waits until every gateway knows every shard, and every orders shard knows every
    /// shard it calls or sends events to.
    pub async fn wait_connected(&self) {
        let callees: Vec<&Svc> = self
            .inventory
            .iter()
            .chain(&self.payments)
            .chain(&self.notifications)
            .collect();
        let mut everyone = callees.clone();
        everyone.extend(&self.orders);
        for gateway in &self.gateways {
            wait_peers(gateway, &everyone).await;
        }
        for orders in &self.orders {
            wait_peers(orders, &callees).await;
        }
    }

    /// Waits until `svc`'s view of its peers no longer lists any of `gone`.
    pub async fn wait_forgotten(&self, svc: &Svc, gone: &[&Svc]) {
        let url = format!("{}/v1/peers", svc.internal_url);
        wait_for(
            &format!("{} to forget dead peers", svc.label),
            Duration::from_secs(10),
            || async {
                let v = try_get_json(&url).await?;
                match gone.iter().find(|g| lists(&v, g)) {
                    None => Ok(()),
                    Some(g) => Err(format!("{} still in {v}", g.label)),
                }
            },
        )
        .await;
    }

    pub async fn create_product(&self, sku: &str, price_minor: u64, stock: u64) {
        create_product_at(&self.client, &self.api(0), sku, price_minor, stock).await;
    }

    /// `GET url`: status, `Retry-After` and the JSON body.
    pub async fn get(&self, url: &str) -> (u16, Option<String>, Value) {
        let res = self
            .client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = res.status().as_u16();
        let retry_after = header(&res, "retry-after");
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {url}: {status}: not JSON ({e}): {text}"));
        (status, retry_after, body)
    }

    /// `GET url`, expecting 200.
    pub async fn get_ok(&self, url: &str) -> Value {
        match self.get(url).await {
            (200, _, body) => body,
            (status, _, body) => panic!("GET {url}: {status}: {body}"),
        }
    }

    /// `POST /api/v1/orders` at gateway `gateway`, with an optional `Idempotency-Key`.
    pub async fn place_order(&self, gateway: usize, body: &Value, key: Option<&str>) -> Placed {
        place_order_at(&self.client, &self.api(gateway), body, key).await
    }

    /// Walks every page of a listing (`GET {api}/{what}?limit={page}`); returns the items
    /// and every page's `missing_shards`.
    pub async fn walk(&self, what: &str, page: usize) -> (Vec<Value>, Vec<Vec<u64>>) {
        let mut items = Vec::new();
        let mut missing = Vec::new();
        let mut after: Option<String> = None;
        for n in 0.. {
            let mut url = format!("{}/{what}?limit={page}", self.api(n));
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
}

/// The platform server's fault-injection variable: with `1`, the instance answers 500 to
/// everything but its health, metrics and peers endpoints. Pass it with `Command::env`.
pub const FAULT_HTTP_500: &str = "SVC_FAULT_HTTP_500";
