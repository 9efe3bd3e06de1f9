//! Routes under one static prefix as one table, matched without a regular expression.
//!
//! actix's router runs a regular expression for every route pattern with a parameter
//! (`/api/v1/products/{sku}`), in order, on every request, until one matches: on the
//! gateway's public routes and the registry's lease renewals, the busiest paths of the
//! system, that was a measurable part of each request (about 10 % of the registry's CPU
//! while renewing).
//! Here the routes under one static prefix (`/api/v1`, which actix matches by string
//! comparison) are mounted as one service, which finds the route by method and
//! [`PathTemplate`] (a few string comparisons, no allocation), and then calls that
//! route's actix [`Route`] as actix would: the guard and the extractors wrapped around
//! each handler are unchanged.
//!
//! Answers are those of the routes actix would have picked, the same for everything
//! else: a path under the prefix that no route serves gets the platform's 404 problem
//! ([`server::not_found`]), as the app's default service gave it; a path some route
//! serves, with another method, gets 405 naming the methods it takes in `Allow`. The parameters are handed to the route where actix puts them
//! ([`Path`](actix_web::web::Path) reads them there), taken from the same path actix
//! matches (the request path after actix's own requoting). The route's pattern names
//! the request in the metrics and logs ([`server::RouteName`]), as actix's pattern did.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use actix_service::boxed::{self, BoxService};
use actix_web::{
    dev::{
        AppService, HttpServiceFactory, ResourceDef, Service, ServiceFactory, ServiceRequest,
        ServiceResponse,
    },
    http::Method,
    Error, HttpMessage, Route,
};

use crate::path_template::PathTemplate;
use crate::problem::Problem;
use crate::server::{self, RouteName};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// One route of the table.
struct Entry {
    method: Method,
    pattern: &'static str,
    template: PathTemplate,
    route: Route,
}

/// Routes under one static prefix, matched in the order they were added.
pub struct RouteTable {
    prefix: &'static str,
    entries: Vec<Entry>,
}

impl RouteTable {
    /// An empty table for paths under `prefix` (e.g. `/api/v1`).
    pub fn new(prefix: &'static str) -> RouteTable {
        RouteTable {
            prefix,
            entries: Vec::new(),
        }
    }

    /// Serves `method pattern` with `route` (a route without a method guard:
    /// `web::to(handler)`; the table checks the method). Panics on a pattern outside
    /// the prefix or that [`PathTemplate`] cannot compile: the table is written in
    /// code, and such a route would never be served.
    pub fn route(mut self, method: Method, pattern: &'static str, route: Route) -> RouteTable {
        assert!(
            pattern.starts_with(self.prefix) && pattern[self.prefix.len()..].starts_with('/'),
            "route `{pattern}` is not under `{}`",
            self.prefix
        );
        let template = PathTemplate::parse(pattern).unwrap_or_else(|e| panic!("{e}"));
        self.entries.push(Entry {
            method,
            pattern,
            template,
            route,
        });
        self
    }

    /// What the table serves: each route's method and pattern, in the order added.
    pub fn routes(&self) -> impl Iterator<Item = (&Method, &'static str)> {
        self.entries.iter().map(|e| (&e.method, e.pattern))
    }
}

/// The names of `pattern`'s parameters, in order, borrowed from the pattern itself.
fn param_names(pattern: &'static str) -> Vec<&'static str> {
    pattern
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

impl HttpServiceFactory for RouteTable {
    fn register(self, config: &mut AppService) {
        // A static prefix: actix compares it as a string, no regular expression.
        let rdef = ResourceDef::prefix(self.prefix);
        config.register_service(rdef, None, self, None);
    }
}

impl ServiceFactory<ServiceRequest> for RouteTable {
    type Response = ServiceResponse;
    type Error = Error;
    type Config = ();
    type Service = TableService;
    type InitError = ();
    type Future = BoxFuture<Result<TableService, ()>>;

    fn new_service(&self, _: ()) -> Self::Future {
        let making: Vec<_> = self
            .entries
            .iter()
            .map(|e| e.route.new_service(()))
            .collect();
        let keys: Vec<_> = self
            .entries
            .iter()
            .map(|e| Key {
                method: e.method.clone(),
                pattern: e.pattern,
                names: param_names(e.pattern),
                template: e.template.clone(),
            })
            .collect();
        Box::pin(async move {
            let mut services = Vec::with_capacity(making.len());
            for made in making {
                services.push(boxed::service(made.await?));
            }
            Ok(TableService(Rc::new(Inner { keys, services })))
        })
    }
}

/// What a route is found by.
struct Key {
    method: Method,
    pattern: &'static str,
    names: Vec<&'static str>,
    template: PathTemplate,
}

struct Inner {
    keys: Vec<Key>,
    services: Vec<BoxService<ServiceRequest, ServiceResponse, Error>>,
}

/// The table of one worker.
#[derive(Clone)]
pub struct TableService(Rc<Inner>);

impl Service<ServiceRequest> for TableService {
    type Response = ServiceResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ServiceResponse, Error>>;

    actix_web::dev::always_ready!();

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let inner = &self.0;
        // The path actix's own router matches (requoted), whole, prefix included.
        let found = {
            let path = req.match_info().as_str();
            let method = req.method();
            let mut values: Vec<&str> = Vec::new();
            inner
                .keys
                .iter()
                .position(|key| {
                    values.clear();
                    key.method == method && key.template.match_each(path, |v| values.push(v))
                })
                .map(|at| {
                    let key = &inner.keys[at];
                    let params: Vec<(&'static str, String)> = key
                        .names
                        .iter()
                        .zip(&values)
                        .map(|(name, value)| (*name, value.to_string()))
                        .collect();
                    (at, key.pattern, params)
                })
        };
        let Some((at, pattern, params)) = found else {
            // A path some route serves, with another method: 405, named by the first
            // such route's pattern.
            let path = req.match_info().as_str();
            let serving: Vec<&Key> = inner
                .keys
                .iter()
                .filter(|key| key.template.matches(path))
                .collect();
            let problem = match serving.first() {
                Some(first) => {
                    req.extensions_mut().insert(RouteName(Some(first.pattern)));
                    let allowed: Vec<&str> = serving.iter().map(|k| k.method.as_str()).collect();
                    Problem::method_not_allowed(req.method().as_str(), req.path(), &allowed)
                }
                None => {
                    req.extensions_mut().insert(RouteName(None));
                    server::no_route(req.method(), req.path())
                }
            };
            return Box::pin(std::future::ready(Ok(req.error_response(problem))));
        };
        req.extensions_mut().insert(RouteName(Some(pattern)));
        let info = req.match_info_mut();
        for (name, value) in params {
            info.add_static(name, value);
        }
        inner.services[at].call(req)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{body::to_bytes, test, web, App, HttpResponse};

    use super::*;

    async fn echo(path: web::Path<String>) -> HttpResponse {
        HttpResponse::Ok().body(format!("one {}", path.into_inner()))
    }

    async fn two(path: web::Path<(String, String)>) -> HttpResponse {
        let (a, b) = path.into_inner();
        HttpResponse::Ok().body(format!("two {a} {b}"))
    }

    fn table() -> RouteTable {
        RouteTable::new("/api/v1")
            .route(
                Method::GET,
                "/api/v1/things",
                web::to(|| async { HttpResponse::Ok().body("list") }),
            )
            .route(
                Method::POST,
                "/api/v1/things",
                web::to(|| async { HttpResponse::Created().body("made") }),
            )
            .route(Method::GET, "/api/v1/things/{id}", web::to(echo))
            .route(
                Method::GET,
                "/api/v1/things/{id}/parts/{part}",
                web::to(two),
            )
    }

    /// Status, route name and body of `method path` on the table, and the same on the
    /// same routes mounted the usual way (actix's router), which must agree.
    async fn both(method: Method, path: &str) -> [(u16, String); 2] {
        let ours = test::init_service(
            App::new()
                .service(table())
                .default_service(web::to(HttpResponse::ImATeapot)),
        )
        .await;
        let actix = test::init_service(
            App::new()
                .route(
                    "/api/v1/things",
                    web::get().to(|| async { HttpResponse::Ok().body("list") }),
                )
                .route(
                    "/api/v1/things",
                    web::post().to(|| async { HttpResponse::Created().body("made") }),
                )
                .route("/api/v1/things/{id}", web::get().to(echo))
                .route("/api/v1/things/{id}/parts/{part}", web::get().to(two))
                .default_service(web::to(HttpResponse::ImATeapot)),
        )
        .await;
        let mut out = Vec::new();
        for (i, app) in [0, 1].into_iter().zip([&ours, &actix]) {
            let req = test::TestRequest::default()
                .method(method.clone())
                .uri(path)
                .to_request();
            let res = test::call_service(app, req).await;
            let status = res.status().as_u16();
            let body = to_bytes(res.into_body()).await.unwrap();
            let body = String::from_utf8_lossy(&body).into_owned();
            // Under the prefix, the table answers "no route" itself, as the platform's
            // default service does; actix's app here falls to its teapot.
            let body = if i == 1 && status == 418 {
                "no route".into()
            } else {
                body
            };
            let status = if i == 1 && status == 418 { 404 } else { status };
            out.push((status, body));
        }
        [out[0].clone(), out[1].clone()]
    }

    #[actix_web::test]
    async fn answers_as_actix_routes_the_same_patterns() {
        for (method, path, status, body) in [
            (Method::GET, "/api/v1/things", 200, "list"),
            (Method::POST, "/api/v1/things", 201, "made"),
            (Method::GET, "/api/v1/things/tea", 200, "one tea"),
            (Method::GET, "/api/v1/things/t%20a", 200, "one t a"),
            (Method::GET, "/api/v1/things/a/parts/b", 200, "two a b"),
            (Method::GET, "/api/v1/things/", 404, ""),
            (Method::GET, "/api/v1/things/a/parts", 404, ""),
            (Method::GET, "/api/v1/things/a/b", 404, ""),
            (Method::GET, "/api/v1", 404, ""),
            (Method::GET, "/api/v1/", 404, ""),
            (Method::GET, "/api/v1/other", 404, ""),
        ] {
            let [ours, actix] = both(method.clone(), path).await;
            assert_eq!(ours.0, status, "{method} {path}: {ours:?}");
            assert_eq!(
                ours.0, actix.0,
                "{method} {path}: table {ours:?}, actix {actix:?}"
            );
            if status < 400 {
                assert_eq!(ours.1, body, "{method} {path}");
                assert_eq!(ours.1, actix.1, "{method} {path}");
            } else {
                assert!(
                    ours.1.contains("no route for"),
                    "{method} {path}: {}",
                    ours.1
                );
            }
        }
    }

    /// Issue 13: a wrong method on a known route used to be 404, as if the route did
    /// not exist.
    #[actix_web::test]
    async fn a_known_path_with_another_method_is_405_with_allow() {
        let app = test::init_service(App::new().service(table())).await;
        for (method, path, allow) in [
            (Method::DELETE, "/api/v1/things", "GET, POST"),
            (Method::HEAD, "/api/v1/things/tea", "GET"),
            (Method::PUT, "/api/v1/things/a/parts/b", "GET"),
        ] {
            let req = test::TestRequest::default()
                .method(method.clone())
                .uri(path)
                .to_request();
            let res = test::call_service(&app, req).await;
            assert_eq!(res.status().as_u16(), 405, "{method} {path}");
            let got = res.headers().get("allow").and_then(|v| v.to_str().ok());
            assert_eq!(got, Some(allow), "{method} {path}");
            let body = to_bytes(res.into_body()).await.unwrap();
            let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem["status"], 405, "{problem}");
        }
    }

    #[actix_web::test]
    async fn outside_the_prefix_the_app_routes_as_before() {
        let app = test::init_service(
            App::new()
                .service(table())
                .default_service(web::to(HttpResponse::ImATeapot)),
        )
        .await;
        for path in ["/api/v2/things", "/api/v10/things", "/apiv1/things", "/"] {
            let req = test::TestRequest::get().uri(path).to_request();
            let res = test::call_service(&app, req).await;
            assert_eq!(res.status().as_u16(), 418, "{path}");
        }
    }

    #[actix_web::test]
    async fn the_route_is_named_for_metrics_and_logs() {
        let app = test::init_service(App::new().service(table())).await;
        for (path, name) in [
            ("/api/v1/things/tea", Some("/api/v1/things/{id}")),
            (
                "/api/v1/things/a/parts/b",
                Some("/api/v1/things/{id}/parts/{part}"),
            ),
            ("/api/v1/nothing", None),
        ] {
            let req = test::TestRequest::get().uri(path).to_request();
            let res = test::call_service(&app, req).await;
            let named = res.request().extensions().get::<RouteName>().copied();
            assert_eq!(named, Some(RouteName(name)), "{path}");
        }
    }

    // `test` here is actix's module: the attribute is named in full.
    #[core::prelude::v1::test]
    #[should_panic(expected = "is not under")]
    fn a_route_outside_the_prefix_is_refused() {
        let _ =
            RouteTable::new("/api/v1").route(Method::GET, "/api/v10/x", web::to(HttpResponse::Ok));
    }
}
