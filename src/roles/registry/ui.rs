//! `GET /ui`: one HTML page showing the live catalog, for a person with a browser.
//!
//! The page is embedded at build time and fetches `/v1/catalog` itself every two
//! seconds, so the registry serves one static string and no second view of its state
//! can drift from the API. Its success is quiet in the logs: an open tab polls.

use actix_web::http::header;
use actix_web::HttpResponse;

use svc_platform::server::quiet;

const PAGE: &str = include_str!("ui.html");

pub async fn page() -> HttpResponse {
    quiet(
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'",
            ))
            .body(PAGE),
    )
}
