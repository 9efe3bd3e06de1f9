//! Listings that span shards: ask every shard for its page, merge, and say which
//! shards did not answer.
//!
//! Each shard lists its own entities in key order (SKU, order id) after `after`, at most
//! `limit`. The first `limit` keys of the merged pages are then exactly the first `limit`
//! keys of the whole role after `after` (no shard can own more of them than it sent), so
//! `next_after` works across shards as it does on one. A shard that does not answer is
//! left out and named: `"partial": true, "missing_shards": [1]`, still 200, because
//! the other shards' entities are worth showing. Only when no shard answers is it 503.
//! A shard's 4xx (a bad `limit`, say) is the caller's mistake and is relayed as it is.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{http::StatusCode, web, HttpResponse};
use serde::Serialize;
use serde_json::Value;

use svc_platform::client::{Call, CallResponse, ServiceClient};
use svc_platform::problem::Problem;

/// The page size when the request names none; sent to every shard explicitly, so the
/// merge and the shards agree on it.
pub const DEFAULT_LIMIT: usize = 100;

/// What to list: the role, its internal path, the array field and its sort key.
pub struct Listing {
    pub role: &'static str,
    pub path: &'static str,
    pub items: &'static str,
    pub key: &'static str,
}

/// One shard's answer, reduced to what the merge needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardPage {
    pub items: Vec<Value>,
    pub next_after: Option<String>,
}

/// The merged page.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub items: Vec<Value>,
    pub next_after: Option<String>,
}

fn key_of<'v>(item: &'v Value, key: &str) -> &'v str {
    item.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The first `limit` items of all pages in key order, and the cursor of the next page
/// if any shard has more.
pub fn merge(pages: Vec<ShardPage>, key: &str, limit: usize) -> Merged {
    let more_on_a_shard = pages.iter().any(|p| p.next_after.is_some());
    let mut items: Vec<Value> = pages.into_iter().flat_map(|p| p.items).collect();
    items.sort_by(|a, b| key_of(a, key).cmp(key_of(b, key)));
    let more = more_on_a_shard || items.len() > limit;
    items.truncate(limit);
    let next_after = if more {
        items.last().map(|i| key_of(i, key).to_string())
    } else {
        None
    };
    Merged { items, next_after }
}

/// The query to send each shard: the caller's, with the effective `limit` made explicit.
/// `None` if `limit` is not a number (the shards' own validation then answers 400).
pub fn shard_query(query: &str) -> (String, Option<usize>) {
    let pairs = web::Query::<HashMap<String, String>>::from_query(query)
        .map(|q| q.into_inner())
        .unwrap_or_default();
    match pairs.get("limit") {
        Some(limit) => (query.to_string(), limit.parse().ok()),
        None if query.is_empty() => (format!("limit={DEFAULT_LIMIT}"), Some(DEFAULT_LIMIT)),
        None => (
            format!("{query}&limit={DEFAULT_LIMIT}"),
            Some(DEFAULT_LIMIT),
        ),
    }
}

/// What became of one shard's call.
enum Answer {
    Page(ShardPage),
    /// The request itself was refused: relay it.
    Refused(CallResponse),
    Missing(String),
}

fn read_answer(listing: &Listing, answer: Result<CallResponse, String>) -> Answer {
    let res = match answer {
        Ok(res) => res,
        Err(e) => return Answer::Missing(e),
    };
    if (400..500).contains(&res.status) {
        return Answer::Refused(res);
    }
    if !res.is_success() {
        return Answer::Missing(format!("answered {}", res.status));
    }
    let Ok(body) = res.json::<Value>() else {
        return Answer::Missing("answered with a body that is not JSON".into());
    };
    let items = body.get(listing.items).and_then(Value::as_array).cloned();
    match items {
        Some(items) => Answer::Page(ShardPage {
            items,
            next_after: body
                .get("next_after")
                .and_then(Value::as_str)
                .map(str::to_string),
        }),
        None => Answer::Missing(format!("answered without `{}`", listing.items)),
    }
}

/// Lists `listing` across its `shards` shards, for the public query string `query`.
pub async fn gather(
    client: &ServiceClient,
    listing: &Listing,
    shards: u32,
    query: &str,
) -> Result<HttpResponse, Problem> {
    let (query, limit) = shard_query(query);
    let path = format!("{}?{query}", listing.path);
    let calls = (0..shards).map(|shard| {
        let call = Call::get(path.as_str()).shard(shard);
        async move {
            let answer = client
                .call(listing.role, call)
                .await
                .map_err(|e| e.to_string());
            (shard, read_answer(listing, answer))
        }
    });
    let mut pages = Vec::new();
    let mut missing = Vec::new();
    let mut reasons = Vec::new();
    for (shard, answer) in futures::future::join_all(calls).await {
        match answer {
            Answer::Page(page) => pages.push(page),
            Answer::Refused(res) => return Ok(relay(res)),
            Answer::Missing(reason) => {
                tracing::warn!(role = listing.role, shard, %reason, "shard left out of a listing");
                missing.push(shard);
                reasons.push(format!("shard {shard}: {reason}"));
            }
        }
    }
    if pages.is_empty() {
        return Err(Problem::unavailable(
            format!(
                "no shard of `{}` answered: {}",
                listing.role,
                reasons.join("; ")
            ),
            Duration::from_secs(1),
        ));
    }
    // Every shard answered 2xx, so the shards accepted `limit`: it is a number.
    let merged = merge(pages, listing.key, limit.unwrap_or(DEFAULT_LIMIT));
    Ok(HttpResponse::Ok().json(body(listing, merged, missing)))
}

fn body(listing: &Listing, merged: Merged, missing: Vec<u32>) -> Value {
    #[derive(Serialize)]
    struct Extra {
        next_after: Option<String>,
        partial: bool,
        missing_shards: Vec<u32>,
    }
    let extra = Extra {
        next_after: merged.next_after,
        partial: !missing.is_empty(),
        missing_shards: missing,
    };
    let mut out = serde_json::to_value(extra).unwrap_or_default();
    if let Some(map) = out.as_object_mut() {
        map.insert(listing.items.to_string(), Value::Array(merged.items));
    }
    out
}

fn relay(res: CallResponse) -> HttpResponse {
    let status = StatusCode::from_u16(res.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = HttpResponse::build(status);
    if let Some(ct) = res.content_type {
        out.insert_header(("content-type", ct));
    }
    out.body(res.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(skus: &[&str], next: bool) -> ShardPage {
        ShardPage {
            items: skus.iter().map(|s| json!({ "sku": s })).collect(),
            next_after: if next {
                skus.last().map(|s| s.to_string())
            } else {
                None
            },
        }
    }

    fn skus(merged: &Merged) -> Vec<&str> {
        merged.items.iter().map(|i| key_of(i, "sku")).collect()
    }

    #[test]
    fn pages_merge_in_key_order_and_stop_at_the_limit() {
        let merged = merge(
            vec![page(&["a", "c", "e"], true), page(&["b", "d"], false)],
            "sku",
            3,
        );
        assert_eq!(skus(&merged), ["a", "b", "c"]);
        assert_eq!(merged.next_after.as_deref(), Some("c"));
    }

    #[test]
    fn the_last_page_has_no_cursor() {
        let merged = merge(vec![page(&["a"], false), page(&["b"], false)], "sku", 3);
        assert_eq!(skus(&merged), ["a", "b"]);
        assert_eq!(merged.next_after, None);
        // Exactly `limit` in all, none left anywhere: still the last page.
        let merged = merge(
            vec![page(&["a", "b"], false), page(&["c"], false)],
            "sku",
            3,
        );
        assert_eq!(merged.next_after, None);
    }

    #[test]
    fn a_shard_with_more_keeps_the_cursor_even_if_its_items_all_fit() {
        let merged = merge(vec![page(&["a"], true), page(&[], false)], "sku", 1);
        assert_eq!(merged.next_after.as_deref(), Some("a"));
    }

    #[test]
    fn walking_pages_visits_every_key_once() {
        // Two shards' full contents; each "shard" serves pages like the real ones.
        let shards: Vec<Vec<String>> = vec![
            (0..7).map(|i| format!("k{:02}", i * 2)).collect(),
            (0..5).map(|i| format!("k{:02}", i * 4 + 1)).collect(),
        ];
        let serve = |all: &Vec<String>, after: Option<&str>, limit: usize| {
            let rest: Vec<&String> = all
                .iter()
                .filter(|k| after.is_none_or(|a| k.as_str() > a))
                .collect();
            let items: Vec<Value> = rest
                .iter()
                .take(limit)
                .map(|k| json!({ "id": k }))
                .collect();
            let next = (rest.len() > limit).then(|| rest[limit - 1].to_string());
            ShardPage {
                items,
                next_after: next,
            }
        };
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let pages = shards
                .iter()
                .map(|s| serve(s, after.as_deref(), 4))
                .collect();
            let merged = merge(pages, "id", 4);
            seen.extend(merged.items.iter().map(|i| key_of(i, "id").to_string()));
            match merged.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut expected: Vec<String> = shards.concat();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn the_limit_is_always_sent_to_the_shards() {
        assert_eq!(shard_query(""), ("limit=100".to_string(), Some(100)));
        assert_eq!(
            shard_query("after=b"),
            ("after=b&limit=100".to_string(), Some(100))
        );
        assert_eq!(shard_query("limit=5"), ("limit=5".to_string(), Some(5)));
        assert_eq!(shard_query("limit=x"), ("limit=x".to_string(), None));
    }

    #[test]
    fn the_body_names_the_missing_shards() {
        let listing = Listing {
            role: "inventory",
            path: "/v1/products",
            items: "products",
            key: "sku",
        };
        let merged = merge(vec![page(&["a"], false)], "sku", 10);
        let b = body(&listing, merged, vec![1]);
        assert_eq!(
            b,
            json!({
                "products": [{ "sku": "a" }],
                "next_after": null,
                "partial": true,
                "missing_shards": [1],
            })
        );
    }
}
