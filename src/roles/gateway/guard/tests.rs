//! The guard in an in-process actix app: each refusal's status and headers, and that
//! a request that passes reaches its handler. (`tests/gateway_guard.rs` does the same
//! over real connections, through a whole cluster.)

use std::time::Duration;

use actix_web::{
    body::MessageBody,
    dev::{Payload, Service, ServiceResponse},
    http::{header, ConnectionType},
    test::{self, TestRequest},
    web, App, HttpResponse,
};
use bytes::Bytes;
use futures::Stream;

use super::*;
use svc_platform::config::PositiveDuration;

const SHOP: &str = "svck_0000000000000000000000000000000000000000000000000000000000000001";
const READER: &str = "svck_0000000000000000000000000000000000000000000000000000000000000002";

fn settings() -> GatewaySettings {
    let mut s = GatewaySettings::default();
    s.rate_limit.per_second = 1.0;
    s.rate_limit.burst = 100;
    s.request_timeout = PositiveDuration::from_millis(200);
    s
}

fn keys() -> Vec<ApiKeySettings> {
    let key = |name: &str, key: &str, scopes: Vec<Scope>, burst: Option<u32>| ApiKeySettings {
        name: name.into(),
        sha256: hash_key(key),
        scopes,
        rate_per_second: None,
        burst,
    };
    vec![
        key(
            "shop",
            SHOP,
            vec![Scope::OrdersRead, Scope::OrdersWrite],
            None,
        ),
        key("reader", READER, vec![Scope::OrdersRead], Some(2)),
    ]
}

fn guard() -> Guard {
    Guard::new(&settings(), &keys(), &Registry::new()).unwrap()
}

/// The app under test: three routes behind the guard of [`settings`] and [`keys`].
macro_rules! app {
    () => {{
        let g = guard();
        test::init_service(
            App::new()
                .route(
                    "/orders",
                    g.protect(
                        Scope::OrdersRead,
                        "/orders",
                        web::get().to(HttpResponse::Ok),
                    ),
                )
                .route(
                    "/orders",
                    g.protect(
                        Scope::OrdersWrite,
                        "/orders",
                        web::post().to(|body: web::Json<serde_json::Value>| async move {
                            HttpResponse::Created().json(body.into_inner())
                        }),
                    ),
                )
                .route(
                    "/slow",
                    g.protect(
                        Scope::OrdersRead,
                        "/slow",
                        web::get().to(|| async {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            HttpResponse::Ok().finish()
                        }),
                    ),
                ),
        )
        .await
    }};
}

/// Status, headers, connection type and body of whatever the app answered, error or not.
async fn answer<R, B: MessageBody + 'static>(
    app: &impl Service<R, Response = ServiceResponse<B>, Error = Error>,
    req: R,
) -> (u16, header::HeaderMap, ConnectionType, String) {
    let res = match app.call(req).await {
        Ok(res) => res.into_parts().1.map_into_boxed_body(),
        Err(e) => e.error_response(),
    };
    let (status, headers, connection) = (
        res.status(),
        res.headers().clone(),
        res.head().connection_type(),
    );
    let body = res.into_body().try_into_bytes().unwrap_or_default();
    (
        status.as_u16(),
        headers,
        connection,
        String::from_utf8_lossy(&body).into(),
    )
}

#[actix_web::test]
async fn a_known_key_with_the_scope_reaches_the_handler() {
    let app = app!();
    let req = TestRequest::get()
        .uri("/orders")
        .insert_header(("authorization", format!("Bearer {SHOP}")));
    assert_eq!(answer(&app, req.to_request()).await.0, 200);
    let req = TestRequest::post()
        .uri("/orders")
        .insert_header(("x-api-key", SHOP))
        .set_json(serde_json::json!({ "lines": [] }));
    let (status, _, _, body) = answer(&app, req.to_request()).await;
    assert_eq!((status, body.as_str()), (201, r#"{"lines":[]}"#));
}

#[actix_web::test]
async fn missing_and_unknown_keys_get_the_same_401() {
    let app = app!();
    let missing = answer(&app, TestRequest::get().uri("/orders").to_request()).await;
    let unknown = TestRequest::get()
        .uri("/orders")
        .insert_header(("x-api-key", "svck_nope"));
    let unknown = answer(&app, unknown.to_request()).await;
    for (status, headers, _, _) in [&missing, &unknown] {
        assert_eq!(*status, 401);
        assert_eq!(
            headers.get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer realm=\"svc\""
        );
        assert_eq!(
            headers.get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
    }
    assert_eq!(missing.3, unknown.3);
}

#[actix_web::test]
async fn a_key_without_the_scope_gets_403_naming_it() {
    let app = app!();
    let req = TestRequest::post()
        .uri("/orders")
        .insert_header(("x-api-key", READER))
        .set_json(serde_json::json!({}));
    let (status, _, _, body) = answer(&app, req.to_request()).await;
    assert_eq!(status, 403);
    assert!(
        body.contains("orders:write") && !body.contains("reader") && !body.contains(READER),
        "{body}"
    );
}

#[actix_web::test]
async fn past_the_burst_the_answer_is_429_with_retry_after() {
    let app = app!();
    let req = || {
        TestRequest::get()
            .uri("/orders")
            .insert_header(("x-api-key", READER))
            .to_request()
    };
    assert_eq!(answer(&app, req()).await.0, 200);
    assert_eq!(answer(&app, req()).await.0, 200);
    let (status, headers, _, _) = answer(&app, req()).await;
    assert_eq!(status, 429);
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    // Each key has its own bucket.
    let shop = TestRequest::get()
        .uri("/orders")
        .insert_header(("x-api-key", SHOP));
    assert_eq!(answer(&app, shop.to_request()).await.0, 200);
}

#[actix_web::test]
async fn oversized_headers_get_431_before_anything_else() {
    let app = app!();
    let req = TestRequest::get()
        .uri("/orders")
        .insert_header(("x-padding", "x".repeat(16 * 1024)));
    let (status, _, _, body) = answer(&app, req.to_request()).await;
    assert_eq!(status, 431, "{body}");
}

/// A body stream that never ends, like a client that stopped sending.
fn stalled_body() -> Payload {
    let stream: std::pin::Pin<
        Box<dyn Stream<Item = Result<Bytes, actix_web::error::PayloadError>>>,
    > = Box::pin(futures::stream::pending());
    Payload::from(stream)
}

#[actix_web::test]
async fn a_body_not_sent_in_time_gets_408_and_a_closed_connection() {
    let app = app!();
    let req = TestRequest::post()
        .uri("/orders")
        .insert_header(("x-api-key", SHOP))
        .insert_header(("content-type", "application/json"))
        .insert_header(("content-length", "100"))
        .to_request();
    let (req, _) = req.replace_payload(stalled_body());
    let (status, _, connection, body) = answer(&app, req).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(connection, ConnectionType::Close);
}

#[actix_web::test]
async fn a_complete_request_answered_late_gets_504() {
    let app = app!();
    let req = TestRequest::get()
        .uri("/slow")
        .insert_header(("x-api-key", SHOP))
        .insert_header(("content-length", "0"));
    let (status, _, connection, _) = answer(&app, req.to_request()).await;
    assert_eq!(status, 504);
    assert_ne!(connection, ConnectionType::Close);
}

#[test]
fn admit_tells_who_was_refused_and_why() {
    let g = guard();
    let now = Instant::now();
    let mut h = HeaderMap::new();
    h.insert(
        header::HeaderName::from_static("x-api-key"),
        header::HeaderValue::from_static(READER),
    );
    assert_eq!(
        g.admit(&h, Scope::OrdersRead, now),
        Ok("reader".to_string())
    );
    let (name, denial) = g.admit(&h, Scope::ProductsRead, now).unwrap_err();
    assert_eq!(
        (name.as_deref(), denial.reason()),
        (Some("reader"), "forbidden")
    );
    assert_eq!(g.key_count(), 2);
}
