//! Registration and discovery: instances register at the registry, find each other
//! through it, and the gateway reaches inventory by what it discovered.

use crate::harness::*;
use serde_json::Value;

#[tokio::test]
async fn two_instances_register_and_discover_each_other() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let inventory = sandbox.start("inventory", "inv-1", &registry.url);
    let orders = sandbox.start("orders", "ord-1", &registry.url);

    // The ready line comes after the registration was accepted.
    assert_eq!(inventory.ready["registered_at"], 1, "{}", inventory.ready);
    assert_eq!(orders.ready["registered_at"], 1, "{}", orders.ready);
    assert_eq!(
        inventory.ready["store"].as_str(),
        Some(show(&sandbox.store_path("inventory", "inv-1")).as_str())
    );

    // So the catalog lists both at once, with the addresses they serve on.
    let catalog = catalog(&registry).await;
    assert!(lists(&catalog, &inventory), "{catalog}");
    assert!(lists(&catalog, &orders), "{catalog}");
    assert_eq!(members(&catalog).len(), 2, "{catalog}");

    // The per-role listing agrees.
    let listed = get_json(&format!("{}/v1/roles/inventory/instances", registry.url)).await;
    let instances = listed["instances"].as_array().expect("instances array");
    assert_eq!(instances.len(), 1, "{listed}");
    assert_eq!(instances[0]["instance_id"], "inv-1");
    assert_eq!(
        instances[0]["address"].as_str(),
        Some(inventory.url.as_str())
    );

    // Each one learns the other's address through its watch on the registry.
    wait_peers(&orders, &[&inventory]).await;
    wait_peers(&inventory, &[&orders]).await;

    // And the registered addresses really serve the instances named.
    for svc in [&inventory, &orders] {
        let live = get_json(&format!("{}/health/live", svc.url)).await;
        assert_eq!(live["instance"].as_str(), Some(svc.instance_id().as_str()));
        let ready = get_json(&format!("{}/health/ready", svc.url)).await;
        assert_eq!(ready["status"], "ready");
    }
}

#[tokio::test]
async fn gateway_forwards_to_the_inventory_it_discovered() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let inventory = sandbox.start("inventory", "inv-1", &registry.url);
    let gateway = sandbox.start("gateway", "gw-1", &registry.url);
    wait_peers(&gateway, &[&inventory]).await;

    let res = post_json(
        &format!("{}/api/v1/products", gateway.url),
        &product("tea-1"),
    )
    .await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["sku"], "tea-1");

    // Stored by inventory: readable directly and through the gateway.
    let direct = get_json(&format!("{}/v1/products/tea-1", inventory.url)).await;
    assert_eq!(direct["available"], 7, "{direct}");
    let via_gateway = get_json(&format!("{}/api/v1/products/tea-1", gateway.url)).await;
    assert_eq!(via_gateway, direct);
    let list = get_json(&format!("{}/api/v1/products", gateway.url)).await;
    assert_eq!(list["products"].as_array().map(Vec::len), Some(1), "{list}");

    // Inventory's answers are relayed as they are: a duplicate is a conflict.
    let again = post_json(
        &format!("{}/api/v1/products", gateway.url),
        &product("tea-1"),
    )
    .await;
    assert_eq!(again.status(), 409);
}
