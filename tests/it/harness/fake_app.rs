//! A stand-in for the application beside a sidecar (`svc run --app`): a plain HTTP
//! server on 127.0.0.1 that records every request it gets (method, path and query,
//! headers, body) and answers with JSON naming them; `GET /health` answers 200 or 503
//! as the test sets, and any path ending in `/slow` answers after two seconds.
//!
//! It serves on its own thread with its own actix system, like [`super::FakeInstance`];
//! dropping it stops the server and joins that thread.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::json;

/// One request as the application received it.
#[derive(Debug, Clone)]
pub struct AppRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// The application: its URL, what it received, and its health switch.
pub struct FakeApp {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    received: Arc<Mutex<Vec<AppRequest>>>,
    healthy: Arc<AtomicBool>,
    server: actix_web::dev::ServerHandle,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct AppState {
    received: Arc<Mutex<Vec<AppRequest>>>,
    healthy: Arc<AtomicBool>,
}

impl FakeApp {
    /// Serves on a free port of 127.0.0.1, healthy.
    pub fn start() -> FakeApp {
        let state = AppState {
            received: Arc::default(),
            healthy: Arc::new(AtomicBool::new(true)),
        };
        let (bound, listening) = std::sync::mpsc::channel();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(web::Data::new(shared.clone()))
                        .route("/health", web::get().to(health))
                        .default_service(web::to(record))
                })
                .workers(1)
                .disable_signals()
                .bind("127.0.0.1:0")
                .expect("bind the fake app");
                let address = server.addrs()[0];
                let server = server.run();
                bound.send((address, server.handle())).unwrap();
                let _ = server.await;
            });
        });
        let (address, server) = listening.recv().expect("the fake app is listening");
        FakeApp {
            url: format!("http://{address}"),
            received: state.received,
            healthy: state.healthy,
            server,
            thread: Some(thread),
        }
    }

    /// What `GET /health` answers from now on: 200 (`true`) or 503.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Every request but health checks, in order.
    pub fn received(&self) -> Vec<AppRequest> {
        self.received.lock().unwrap().clone()
    }
}

impl FakeApp {
    /// Stops serving: from now on its port refuses connections.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            futures::executor::block_on(self.server.stop(false));
            let _ = thread.join();
        }
    }
}

impl Drop for FakeApp {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    if state.healthy.load(Ordering::SeqCst) {
        HttpResponse::Ok().json(json!({"status": "ok"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "down"}))
    }
}

async fn record(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let request = AppRequest {
        method: req.method().to_string(),
        target: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    state.received.lock().unwrap().push(request.clone());
    if req.path().ends_with("/slow") {
        actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    }
    HttpResponse::Created()
        .content_type("application/vnd.loyalty+json")
        .json(json!({
            "method": request.method,
            "target": request.target,
            "body": request.body,
        }))
}
