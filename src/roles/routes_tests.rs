//! Every endpoint a role's manifest declares is served by one of that role's routes.
//!
//! The access policy lets a declared endpoint through for its callers; if no route
//! matched it, they would get a 404 that no process-level test might notice. Each role
//! is started here as `lifecycle::run` starts it, on a temporary store with no peers,
//! and every declared `METHOD /path/{param}` is sent to its routes: the request must
//! reach a handler (any answer but the app's own "no route"). Needs no network.

use std::sync::Arc;

use actix_web::{http::Method, test, web, App, HttpResponse};

use svc_platform::client::ServiceClient;
use svc_platform::config::PlatformConfig;
use svc_platform::metrics::Metrics;
use svc_platform::peer_view::PeerView;
use svc_platform::role::RoleContext;
use svc_platform::shutdown::Shutdown;
use svc_platform::store::Store;

use crate::config::Config;

/// What the test app answers when no route matched: a status no handler uses.
const NO_ROUTE: u16 = 599;

#[actix_web::test]
async fn every_declared_endpoint_has_a_route() {
    let catalog = super::built_in();
    let mut checked = 0;
    for (entry, manifest) in super::ALL.iter().zip(catalog.iter()) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("role.redb")).unwrap());
        let config = PlatformConfig::default();
        let metrics = Metrics::new(&manifest.name, "routes-test");
        let client = ServiceClient::new(
            PeerView::restore(store.clone()),
            &config,
            metrics.registry(),
            None,
        )
        .unwrap();
        let shutdown = Shutdown::new();
        let ctx = RoleContext {
            manifest: manifest.clone(),
            catalog: catalog.clone(),
            config,
            instance_id: "routes-test".into(),
            store,
            client,
            metrics,
            shutdown: shutdown.clone(),
            reloads: Default::default(),
            health: Default::default(),
        };
        let routes = (entry.start)(&ctx, &Config::default())
            .unwrap_or_else(|e| panic!("{} does not start: {e:#}", manifest.name));
        let app = test::init_service(App::new().configure(|cfg| routes(cfg)).default_service(
            web::to(|| async {
                HttpResponse::build(actix_web::http::StatusCode::from_u16(NO_ROUTE).unwrap())
                    .finish()
            }),
        ))
        .await;
        for (method, template) in manifest.endpoints() {
            // Every `{param}` becomes a plausible id; handlers may refuse it, not miss it.
            let path = template
                .split('/')
                .map(|s| if s.starts_with('{') { "x-0-1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let req = test::TestRequest::default()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(&path)
                .insert_header(("content-type", "application/json"))
                .set_payload("{}")
                .to_request();
            let res = test::call_service(&app, req).await;
            assert_ne!(
                res.status().as_u16(),
                NO_ROUTE,
                "{}: `{method} {template}` is declared in roles/{}.yaml but no route serves it",
                manifest.name,
                manifest.name
            );
            checked += 1;
        }
        shutdown.trigger();
    }
    assert!(checked > 20, "only {checked} endpoints were checked");
}
