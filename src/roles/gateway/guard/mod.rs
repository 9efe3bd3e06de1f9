//! The guard of the public API: every `/api/v1` route but `openapi.json` passes it.
//!
//! In this order, a request is refused as soon as one check fails:
//!
//! 1. headers larger than `gateway.max_header_bytes` → 431;
//! 2. no API key, or an unknown one ([`api_keys`]) → 401, the same answer for both;
//! 3. a key without the scope the route needs → 403 naming the scope;
//! 4. the key's token bucket is empty ([`rate_limit`]) → 429 with `Retry-After`;
//! 5. the whole request, body included, takes longer than `gateway.request_timeout`
//!    ([`timeout`]) → 408 and the connection closed (504 if only the answer was late).
//!
//! Guarantees: a handler only ever runs for a known key holding the route's scope and
//! within its rate; refusals are problem+json ([`deny`]); no key or hash is ever logged
//! or answered, only the key's name. The scope of each route is given where the route
//! is mounted (`roles/gateway/mod.rs`), with [`Guard::protect`], so a route cannot be
//! added without saying which scope it needs.
//!
//! The keys can be replaced while the gateway runs ([`Guard::replace_keys`], driven by
//! [`reload`] when `gateway.api_keys_file` changes): a request is checked against the
//! table of the moment, and a table that does not check out is never taken.

pub mod api_keys;
mod deny;
pub mod rate_limit;
pub mod reload;
mod timeout;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{
    body::BoxBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::HeaderMap,
    middleware::{from_fn, Next},
    Error, ResponseError, Route,
};
use parking_lot::RwLock;
use prometheus::Registry;

use crate::roles::gateway::settings::{ApiKeySettings, GatewaySettings, Scope};
pub use api_keys::{generate_key, hash_key, AuthFailure, Identity, KeyTable, KEY_PREFIX};
use deny::{Denial, DeniedCounter};
pub use rate_limit::{Rate, RateLimiter, RetryAfter};
use timeout::BodyProgress;

/// The guard, shared by every worker and route.
#[derive(Clone)]
pub struct Guard(Arc<Inner>);

struct Inner {
    /// Swapped whole on reload; a request holds the table it was checked against.
    keys: RwLock<Arc<KeyTable>>,
    limiter: RateLimiter,
    max_header_bytes: usize,
    request_timeout: Duration,
    denied: DeniedCounter,
}

impl Guard {
    /// The guard for `settings`, with `keys` (every key, the file's included: see
    /// [`GatewaySettings::all_keys`]); its counter goes on `registry`.
    pub fn new(
        settings: &GatewaySettings,
        keys: &[ApiKeySettings],
        registry: &Registry,
    ) -> anyhow::Result<Guard> {
        let table = KeyTable::new(keys).map_err(anyhow::Error::msg)?;
        let default = Rate {
            per_second: settings.rate_limit.per_second,
            burst: settings.rate_limit.burst,
        };
        let mut limiter = RateLimiter::new(default);
        for (name, rate) in own_rates(keys, default) {
            limiter = limiter.with_rate(&name, rate);
        }
        Ok(Guard(Arc::new(Inner {
            keys: RwLock::new(Arc::new(table)),
            limiter,
            max_header_bytes: settings.max_header_bytes,
            request_timeout: settings.request_timeout.get(),
            denied: DeniedCounter::register(registry),
        })))
    }

    /// How many keys it knows.
    pub fn key_count(&self) -> usize {
        self.0.keys.read().len()
    }

    /// From now on, the keys are `keys` (every key, as [`Guard::new`] takes them) with
    /// their own rates; keys that stay keep their rate-limit buckets. On error (an
    /// entry that does not check out) the keys in use stay.
    pub fn replace_keys(&self, keys: &[ApiKeySettings]) -> Result<(), String> {
        let table = KeyTable::new(keys)?;
        let limiter = &self.0.limiter;
        let known: HashSet<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        let rates = own_rates(keys, limiter.default_rate()).collect();
        // Table first: a key just removed is refused at once.
        *self.0.keys.write() = Arc::new(table);
        limiter.set_rates(rates, &known);
        Ok(())
    }

    /// `route`, mounted at `pattern`, served only to requests that pass the guard with
    /// `scope`. The pattern names the route in the log line of a refusal (given here,
    /// so a request that passes costs no lookup of it).
    pub fn protect(&self, scope: Scope, pattern: &'static str, route: Route) -> Route {
        let guard = self.clone();
        route.wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| {
            let guard = guard.clone();
            async move { guard.check(req, next, scope, pattern).await }
        }))
    }

    /// Steps 1 to 4: the name of the key the request may go ahead with, or why not
    /// (with the key's name, if it got that far).
    pub fn admit(
        &self,
        headers: &HeaderMap,
        scope: Scope,
        now: Instant,
    ) -> Result<String, (Option<String>, Denial)> {
        let inner = &self.0;
        let bytes = header_bytes(headers);
        if bytes > inner.max_header_bytes {
            let limit = inner.max_header_bytes;
            return Err((None, Denial::HeadersTooLarge { bytes, limit }));
        }
        let keys = inner.keys.read().clone();
        let who = keys
            .authenticate(headers)
            .map_err(|failure| (None, Denial::Unauthenticated(failure)))?;
        if !who.allows(scope) {
            return Err((Some(who.name.clone()), Denial::Forbidden { scope }));
        }
        if let Err(retry_after) = inner.limiter.try_take(&who.name, now) {
            let rate = inner.limiter.rate(&who.name);
            let name = Some(who.name.clone());
            return Err((name, Denial::RateLimited { retry_after, rate }));
        }
        Ok(who.name.clone())
    }

    /// The middleware: [`Guard::admit`], then the rest of the chain within the limit.
    async fn check(
        &self,
        mut req: ServiceRequest,
        next: Next<BoxBody>,
        scope: Scope,
        route: &'static str,
    ) -> Result<ServiceResponse<BoxBody>, Error> {
        let method = req.method().clone();
        let name = match self.admit(req.headers(), scope, Instant::now()) {
            Ok(name) => name,
            Err((name, denial)) => {
                self.refused(&denial, name.as_deref(), &method, route);
                return Ok(req.into_response(denial.error_response()));
            }
        };
        let body = BodyProgress::track(&mut req);
        let limit = self.0.request_timeout;
        match timeout::bounded(limit, next.call(req)).await {
            Some(result) => result,
            None => {
                let denial = Denial::TimedOut {
                    body_received: body.received(),
                    limit,
                };
                self.refused(&denial, Some(&name), &method, route);
                // The request went into the chain, so the answer has to be an error.
                Err(denial.into())
            }
        }
    }

    fn refused(
        &self,
        denial: &Denial,
        key: Option<&str>,
        method: &actix_web::http::Method,
        route: &str,
    ) {
        denial.log(key, method, route);
        self.0.denied.count(denial);
    }
}

/// The rates of the keys that have one of their own (the others get `default`).
fn own_rates(keys: &[ApiKeySettings], default: Rate) -> impl Iterator<Item = (String, Rate)> + '_ {
    keys.iter()
        .filter(|k| k.rate_per_second.is_some() || k.burst.is_some())
        .map(move |k| {
            let rate = Rate {
                per_second: k.rate_per_second.unwrap_or(default.per_second),
                burst: k.burst.unwrap_or(default.burst),
            };
            (k.name.clone(), rate)
        })
}

/// What the 431 limit counts: every header's name and value, in bytes.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}
