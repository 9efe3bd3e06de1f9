//! The OpenAPI document (`openapi.json`) against the code, both ways: every route the
//! gateway serves is documented with its method, and every documented operation is
//! served. The routes come from the gateway's own [`RouteTable`](super::public_routes),
//! not a copied list, so a route added in code and not in the document (or the other
//! way round) fails here. Also checked: every operation has a unique `operationId`,
//! every object schema of an answer says which fields are `required`, and the refusals
//! the gateway gives (405 for a path served with another method, 415 for a JSON body
//! sent as something else) are documented where, and only where, it gives them.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::http::Method;
use actix_web::{test as actix_test, web, App};
use serde_json::Value;

use super::{openapi, public_routes, OPENAPI, OPENAPI_PATH};

/// The methods an OpenAPI path item may hold operations under.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
}

/// Every documented operation: (method, path) → the operation object.
fn documented(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut operations = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (key, operation) in item.as_object().expect("a path item") {
            if METHODS.contains(&key.as_str()) {
                operations.insert((key.to_ascii_uppercase(), path.clone()), operation.clone());
            }
        }
    }
    operations
}

/// Every (method, pattern) the gateway serves on its public listener.
fn served() -> BTreeSet<(String, String)> {
    let table = public_routes(|_, _, route| route);
    let mut routes: BTreeSet<_> = table
        .routes()
        .map(|(method, pattern)| (method.to_string(), pattern.to_string()))
        .collect();
    routes.insert((Method::GET.to_string(), OPENAPI_PATH.to_string()));
    routes
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_served() {
    let documented: BTreeSet<_> = documented(&document()).into_keys().collect();
    let served = served();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served, not in openapi.json: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in openapi.json, not served: {unserved:?}"
    );
}

#[test]
fn every_operation_has_a_unique_operation_id() {
    let mut seen = BTreeMap::new();
    for ((method, path), operation) in documented(&document()) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        if let Some(first) = seen.insert(id.to_string(), format!("{method} {path}")) {
            panic!("operationId `{id}` of {method} {path} is also {first}'s");
        }
    }
}

/// `schema`, or what its `$ref` names in `doc`'s components.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a reference outside the schemas: {reference}"));
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Every object schema within `schema` (itself, its properties, array items) lacking
/// a non-empty `required`; `at` names where, for the message.
fn objects_without_required(doc: &Value, schema: &Value, at: &str, found: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(properties) = schema["properties"].as_object() {
        let required = schema["required"].as_array().map_or(0, Vec::len);
        if required == 0 {
            found.push(at.to_string());
        }
        for (name, property) in properties {
            objects_without_required(doc, property, &format!("{at}.{name}"), found);
        }
    }
    if schema["items"].is_object() {
        objects_without_required(doc, &schema["items"], &format!("{at}[]"), found);
    }
}

#[test]
fn every_object_in_an_answer_says_which_fields_are_required() {
    let doc = document();
    let mut found = Vec::new();
    for ((method, path), operation) in documented(&doc) {
        for (status, response) in operation["responses"].as_object().expect("responses") {
            let Some(content) = response["content"].as_object() else {
                continue;
            };
            for (media, body) in content {
                let at = format!("{method} {path} {status} {media}");
                objects_without_required(&doc, &body["schema"], &at, &mut found);
            }
        }
    }
    assert!(found.is_empty(), "no `required` in: {found:#?}");
}

/// A concrete path for `pattern`: each `{parameter}` replaced by `x`.
fn example_path(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|s| if s.starts_with('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// 405 is documented on exactly the operations whose path answers it: asked of the
/// gateway's own routes (no guard: a refused method is refused before any key check).
#[actix_web::test]
async fn method_not_allowed_is_documented_where_the_gateway_answers_it() {
    let app = actix_test::init_service(
        App::new()
            .route(OPENAPI_PATH, web::get().to(openapi))
            .service(public_routes(|_, _, route| route)),
    )
    .await;
    for ((method, path), operation) in documented(&document()) {
        let req = actix_test::TestRequest::default()
            .method(Method::DELETE)
            .uri(&example_path(&path))
            .to_request();
        let answered = actix_test::call_service(&app, req).await.status().as_u16() == 405;
        let documented = operation["responses"]["405"].is_object();
        assert_eq!(
            documented, answered,
            "{method} {path}: 405 documented {documented}, answered {answered}"
        );
    }
}

/// 415 is documented on exactly the operations that take a JSON body: those whose
/// handler reads `Json`, which answers 415 for another `Content-Type`
/// (`problem::from_json_error`).
#[test]
fn unsupported_media_type_is_documented_where_a_json_body_is_read() {
    for ((method, path), operation) in documented(&document()) {
        let takes_json = operation["requestBody"]["content"]["application/json"].is_object();
        let documented = operation["responses"]["415"].is_object();
        assert_eq!(takes_json, documented, "{method} {path}");
    }
}
