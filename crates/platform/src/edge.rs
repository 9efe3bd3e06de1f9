//! What a public listener does first: headers meant for instances never get in.
//!
//! Instances trust a few request headers from each other because only a caller holding
//! a cluster certificate can reach them: every such header is named `x-svc-*`
//! ([`INTERNAL_HEADER_PREFIX`]; today the caller's deadline, [`crate::client::deadline`]).
//! A client on the internet holds no certificate, so on a public listener
//! [`strip_internal_headers`] removes them before anything else reads the request (it
//! is the outermost middleware there): the deadline of a public request is set by the
//! role's own limits alone (the gateway's `request_timeout`), and no outsider, with or
//! without an API key, can make a request fail faster or be handled differently.
//!
//! `traceparent` and `x-request-id` stay: they name a trace for correlation and grant
//! nothing. Both are parsed strictly, and the edge runs in a span of its own under
//! them. Who a caller is comes only from its certificate (or, at the edge, its API
//! key), never from a header.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::HeaderName,
    middleware::Next,
    Error,
};

/// Every request header instances trust from each other starts with this.
pub const INTERNAL_HEADER_PREFIX: &str = "x-svc-";

/// Whether `name` (lower case, as `HeaderName`s are) is an internal header.
pub fn is_internal_header(name: &str) -> bool {
    name.starts_with(INTERNAL_HEADER_PREFIX)
}

/// Middleware of a public listener: removes every internal header from the request.
pub(crate) async fn strip_internal_headers(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let internal: Vec<HeaderName> = req
        .headers()
        .keys()
        .filter(|name| is_internal_header(name.as_str()))
        .cloned()
        .collect();
    for name in internal {
        req.headers_mut().remove(name);
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use actix_web::{middleware::from_fn, test as actix_test, web, App, HttpRequest, HttpResponse};

    use super::*;
    use crate::client::deadline;
    use crate::registry_api::INDEX_HEADER;

    #[test]
    fn every_internal_request_header_has_the_prefix() {
        for name in [deadline::HEADER, INDEX_HEADER] {
            assert!(is_internal_header(name), "{name}");
        }
        for public in [
            "traceparent",
            "x-request-id",
            "idempotency-key",
            "x-api-key",
        ] {
            assert!(!is_internal_header(public), "{public}");
        }
    }

    #[actix_web::test]
    async fn the_handler_never_sees_an_internal_header() {
        async fn echo(req: HttpRequest) -> HttpResponse {
            let names: Vec<&str> = req.headers().keys().map(|n| n.as_str()).collect();
            let mut names = names.join(",");
            names.push(';');
            HttpResponse::Ok().body(names)
        }
        let app = App::new()
            .wrap(from_fn(strip_internal_headers))
            .route("/", web::get().to(echo));
        let app = actix_test::init_service(app).await;
        let req = actix_test::TestRequest::get()
            .uri("/")
            .insert_header((deadline::HEADER, "3"))
            .insert_header(("X-Svc-Anything", "1"))
            .insert_header((
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ))
            .to_request();
        let body = actix_test::call_and_read_body(&app, req).await;
        let seen = String::from_utf8_lossy(&body);
        assert!(!seen.contains("x-svc-"), "{seen}");
        assert!(seen.contains("traceparent"), "{seen}");
    }
}
