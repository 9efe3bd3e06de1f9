//! OTLP export, end to end: a tiny collector (a std `TcpListener` that answers 200 to
//! every POST and keeps the bodies) receives the spans of instances started with
//! `otlp.enabled`. They carry the trace id of the request's `traceparent`, the caller's
//! span as parent, the span id the log line has, and the service name; an instance
//! with export off (the default) sends nothing; quiet answers (probes) are left out;
//! what is queued at SIGTERM still goes out; an order's saga steps join its trace; a
//! request through the gateway to inventory has server and client spans with the HTTP
//! semantic-convention attributes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::Value;

const TRACE_ON: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_AT_EXIT: &str = "5bf92f3577b34da6a3ce929d0e0e4737";
const TRACE_QUIET: &str = "6bf92f3577b34da6a3ce929d0e0e4738";
const TRACE_OFF: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// One request the collector received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// One exported span, ids in hex.
#[derive(Clone, Debug)]
struct Span {
    service: String,
    instance: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
}

impl Span {
    fn string(&self, key: &str) -> String {
        string_attribute(&self.attributes, key)
    }

    fn int(&self, key: &str) -> Option<i64> {
        self.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::IntValue(i) => Some(*i),
                _ => None,
            })
    }
}

/// A collector that records every request and answers `200` with an empty body (an
/// empty `ExportTraceServiceResponse`).
#[derive(Clone)]
struct Collector {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind collector");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Collector { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Every span received so far, decoded.
    fn spans(&self) -> Vec<Span> {
        let mut spans = Vec::new();
        for r in self.received() {
            let request = ExportTraceServiceRequest::decode(r.body.as_slice())
                .unwrap_or_else(|e| panic!("not an OTLP trace export ({e}): {r:?}"));
            for resource_spans in request.resource_spans {
                let attributes = resource_spans.resource.unwrap_or_default().attributes;
                for scope_spans in resource_spans.scope_spans {
                    for span in scope_spans.spans {
                        let kind = span.kind();
                        spans.push(Span {
                            service: string_attribute(&attributes, "service.name"),
                            instance: string_attribute(&attributes, "service.instance.id"),
                            name: span.name,
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_span_id: hex(&span.parent_span_id),
                            kind,
                            attributes: span.attributes,
                        });
                    }
                }
            }
        }
        spans
    }

    /// The spans of `trace` received so far.
    fn trace(&self, trace: &str) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .collect()
    }
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> String {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .and_then(|v| match v {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves the requests of one connection (keep-alive) until it closes.
fn serve(stream: TcpStream, sink: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "content-type" => content_type = value.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        sink.lock().unwrap().push(Received {
            path,
            content_type,
            body,
        });
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

async fn get_traced(url: &str, path: &str, trace_id: &str) -> u16 {
    http()
        .get(format!("{url}{path}"))
        .header("traceparent", format!("00-{trace_id}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn wait_for_trace(collector: &Collector, trace: &str) -> Vec<Span> {
    wait_for(
        &format!("trace {trace} at the collector"),
        Duration::from_secs(10),
        || {
            let spans = collector.trace(trace);
            async move {
                (!spans.is_empty())
                    .then_some(spans)
                    .ok_or_else(|| "not yet".to_string())
            }
        },
    )
    .await
    .0
}

#[tokio::test]
async fn spans_go_to_the_collector_with_the_ids_of_the_logs_only_when_enabled() {
    let collector = Collector::start();
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let start = |id: &str, enabled: bool| {
        let config = sandbox.write_file(
            &format!("{id}.yaml"),
            &format!(
                "otlp:\n  enabled: {enabled}\n  endpoint: {}\n  export_timeout: 2s\n",
                collector.url
            ),
        );
        let mut cmd = sandbox.run_command("inventory", id, &registry.url);
        cmd.arg("--config").arg(config);
        cmd.arg("--log-file")
            .arg(sandbox.dir.path().join(format!("{id}.jsonl")));
        sandbox.start_cmd(cmd, "inventory", id)
    };
    let mut on = start("inv-on", true);
    let off = start("inv-off", false);

    assert_eq!(
        get_traced(&off.url, "/v1/products/tea", TRACE_OFF).await,
        404
    );
    // A probe: a quiet answer, left out of the export as it is out of the log file.
    assert_eq!(get_traced(&on.url, "/health/live", TRACE_QUIET).await, 200);
    assert_eq!(get_traced(&on.url, "/v1/products/tea", TRACE_ON).await, 404);

    let spans = wait_for_trace(&collector, TRACE_ON).await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(
        (
            span.service.as_str(),
            span.instance.as_str(),
            span.name.as_str()
        ),
        ("svc-inventory", "inv-on", "request"),
        "{span:?}"
    );
    assert_eq!(
        span.parent_span_id, CALLER_SPAN,
        "the caller's span as parent"
    );
    let export = &collector.received()[0];
    assert_eq!(export.path, "/v1/traces");
    assert_eq!(export.content_type, "application/x-protobuf");
    assert!(
        collector.trace(TRACE_QUIET).is_empty(),
        "a probe was exported"
    );
    // The exported span is the one the log line names.
    let log = std::fs::read_to_string(sandbox.dir.path().join("inv-on.jsonl")).unwrap();
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["trace_id"] == TRACE_ON && l["msg"] == "request refused")
        .unwrap_or_else(|| panic!("no request line for the trace in:\n{log}"));
    assert_eq!(line["parent_span_id"], CALLER_SPAN, "{line}");
    assert_eq!(line["span_id"], span.span_id.as_str(), "{line}");
    // The exported span's kind and HTTP attributes are not fields of its log lines.
    for key in [
        "http.route",
        "http.response.status_code",
        "otel.kind",
        "svc.span_kind",
    ] {
        assert!(line.get(key).is_none(), "{key} in {line}");
    }

    // Stopped at once, before the next batch is due: the span goes out at exit.
    assert_eq!(
        get_traced(&on.url, "/v1/products/tea", TRACE_AT_EXIT).await,
        404
    );
    assert_eq!(on.terminate().code(), Some(0), "{}", on.stderr());
    assert_eq!(
        collector.trace(TRACE_AT_EXIT).len(),
        1,
        "the last span was lost at exit"
    );

    // Export off: after more than a batch interval, nothing of it reached the collector.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let spans = collector.spans();
    assert!(spans.iter().all(|s| s.instance == "inv-on"), "{spans:?}");
    assert!(collector.received().iter().all(|r| r.path == "/v1/traces"));
    drop(off);
}

#[tokio::test]
async fn an_order_is_one_trace_at_the_collector_saga_steps_included() {
    const TRACE: &str = "7bf92f3577b34da6a3ce929d0e0e4739";
    let collector = Collector::start();
    let shop = Topology::shop()
        .config(&format!(
            "otlp:\n  enabled: true\n  endpoint: {}\n",
            collector.url
        ))
        .start()
        .await;
    shop.create_product("tea", 250, 10).await;
    let res = http()
        .post(format!("{}/orders", shop.api))
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .json(&order_body(&[("tea", 2)], None))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text().await);

    // Every role the order went through exported spans of the caller's trace: requests
    // and the four saga steps, each step a child of the request that created the order.
    let (spans, _) = wait_for("every span of the order", Duration::from_secs(15), || {
        let spans = collector.trace(TRACE);
        async move {
            let services = |name: &str| {
                let mut s: Vec<&str> = spans
                    .iter()
                    .filter(|s| s.name == name)
                    .map(|s| s.service.as_str())
                    .collect();
                s.sort();
                s.dedup();
                s
            };
            let steps = spans.iter().filter(|s| s.name == "saga").count();
            let requests = services("request");
            let all = ["svc-gateway", "svc-inventory", "svc-orders", "svc-payments"];
            (steps == 4 && all.iter().all(|r| requests.contains(r)))
                .then_some(spans.clone())
                .ok_or_else(|| format!("{steps} saga steps, requests at {requests:?}"))
        }
    })
    .await;
    let gateway = spans
        .iter()
        .find(|s| s.service == "svc-gateway" && s.name == "request")
        .unwrap();
    assert_eq!(gateway.parent_span_id, CALLER_SPAN);
    let create = spans
        .iter()
        .find(|s| {
            s.service == "svc-orders" && s.name == "request" && s.parent_span_id == gateway.span_id
        })
        .unwrap_or_else(|| panic!("no orders span under the gateway's: {spans:#?}"));
    for step in spans.iter().filter(|s| s.name == "saga") {
        assert_eq!(step.service, "svc-orders");
        assert_eq!(step.kind, SpanKind::Internal, "{step:?}");
        assert_eq!(step.parent_span_id, create.span_id, "{step:?}");
    }
    // And every span's parent is a span of the trace, or the caller's.
    for span in &spans {
        assert!(
            span.parent_span_id == CALLER_SPAN
                || spans.iter().any(|p| p.span_id == span.parent_span_id),
            "{span:?} has no parent in {spans:#?}"
        );
    }
}

#[tokio::test]
async fn a_request_through_the_gateway_has_server_and_client_spans_with_http_attributes() {
    const TRACE: &str = "8bf92f3577b34da6a3ce929d0e0e4740";
    let collector = Collector::start();
    let shop = Topology::new()
        .gateways(1)
        .shards("inventory", 1)
        .config(&format!(
            "otlp:\n  enabled: true\n  endpoint: {}\n",
            collector.url
        ))
        .start()
        .await;
    shop.create_product("tea", 250, 10).await;
    let api = reqwest::Url::parse(&shop.api).unwrap();
    assert_eq!(get_traced(&shop.api, "/products/tea", TRACE).await, 200);

    let (spans, _) = wait_for("the spans of the request", Duration::from_secs(10), || {
        let spans = collector.trace(TRACE);
        async move {
            let kinds: Vec<(&str, SpanKind)> =
                spans.iter().map(|s| (s.service.as_str(), s.kind)).collect();
            let want = [
                ("svc-gateway", SpanKind::Server),
                ("svc-gateway", SpanKind::Client),
                ("svc-inventory", SpanKind::Server),
            ];
            want.iter()
                .all(|w| kinds.contains(w))
                .then_some(spans.clone())
                .ok_or_else(|| format!("spans so far: {kinds:?}"))
        }
    })
    .await;
    let one = |service: &str, kind: SpanKind| {
        let found: Vec<&Span> = spans
            .iter()
            .filter(|s| s.service == service && s.kind == kind)
            .collect();
        assert_eq!(found.len(), 1, "{service} {kind:?} in {spans:#?}");
        found[0].clone()
    };
    let (edge, call, served) = (
        one("svc-gateway", SpanKind::Server),
        one("svc-gateway", SpanKind::Client),
        one("svc-inventory", SpanKind::Server),
    );
    assert_eq!(spans.len(), 3, "{spans:#?}");

    // The gateway's request, as the client addressed it.
    assert_eq!(edge.string("http.request.method"), "GET", "{edge:?}");
    assert_eq!(edge.string("url.path"), "/api/v1/products/tea", "{edge:?}");
    assert_eq!(
        edge.string("http.route"),
        "/api/v1/products/{sku}",
        "{edge:?}"
    );
    assert_eq!(edge.int("http.response.status_code"), Some(200), "{edge:?}");
    assert_eq!(edge.string("server.address"), api.host_str().unwrap());
    assert_eq!(edge.int("server.port"), api.port().map(i64::from));
    assert_eq!(edge.parent_span_id, CALLER_SPAN);

    // Its call to inventory, a child of the gateway's span.
    let url = reqwest::Url::parse(&call.string("url.full")).unwrap();
    assert_eq!(call.string("http.request.method"), "GET", "{call:?}");
    assert_eq!(url.path(), "/v1/products/tea", "{call:?}");
    assert_eq!(call.string("server.address"), url.host_str().unwrap());
    assert_eq!(call.int("server.port"), url.port().map(i64::from));
    assert_eq!(call.int("http.response.status_code"), Some(200), "{call:?}");
    assert_eq!(call.parent_span_id, edge.span_id);

    // Inventory's request, under the gateway's span (which its log lines name).
    assert_eq!(served.string("http.request.method"), "GET");
    assert_eq!(served.string("url.path"), "/v1/products/tea");
    assert_eq!(
        served.string("http.route"),
        "/v1/products/{sku}",
        "{served:?}"
    );
    assert_eq!(served.int("http.response.status_code"), Some(200));
    assert_eq!(served.int("server.port"), url.port().map(i64::from));
    assert_eq!(served.parent_span_id, edge.span_id);

    // The kind is the span's, not an attribute left behind; nothing of svc's own.
    for span in &spans {
        assert!(
            span.attributes.iter().all(|kv| !kv.key.starts_with("svc.")),
            "{span:?}"
        );
    }
}
