//! Who may call what: every internal endpoint's allowed callers, from the role manifest,
//! enforced on each request against the identity the mutual-TLS handshake proved.
//!
//! Guarantees: a request reaches a role's handler only if its `METHOD /path` is declared
//! in the manifest's `endpoints` and the caller's certificate names one of the roles
//! listed there; anything else is answered here — 403 (logged with the caller's
//! identity), 405 with `Allow` for a declared path with another method, or 404 for an
//! undeclared endpoint — before any handler runs. The platform's
//! health, metrics and peer endpoints are open to every verified identity. On an
//! insecure (plain HTTP) instance there are no identities and nothing is enforced.
//!
//! The endpoints are compiled once into [`PathTemplate`]s: deciding costs a few string
//! comparisons and no allocation (the allowed path is checked on every request).

use std::sync::Arc;

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web,
};

use super::manifest::{parse_endpoint, Manifest};
use super::path_template::PathTemplate;
use super::problem::Problem;
use super::tls::PeerIdentity;

/// Platform endpoints any verified cluster identity may read.
const OPEN_TO_CLUSTER: &[(&str, &str)] = &[
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
    ("GET", "/v1/peers"),
];

/// One declared endpoint.
struct Rule {
    method: String,
    path: PathTemplate,
    /// `None`: every verified identity.
    callers: Option<Vec<String>>,
}

/// The endpoints of one role and their callers; cheap to clone.
#[derive(Clone)]
pub(crate) struct AccessPolicy {
    rules: Arc<Vec<Rule>>,
    enforced: bool,
}

/// What the policy says about one request.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Allow,
    /// The caller is not among the endpoint's callers (or has no role).
    Forbidden(String),
    /// The path is declared, but not with this method: these are.
    OtherMethods(Vec<String>),
    /// No declared endpoint matches: it is not served.
    Undeclared,
}

impl AccessPolicy {
    /// The policy of `manifest`'s role; `enforced` is false on an insecure instance.
    pub(crate) fn new(manifest: &Manifest, enforced: bool) -> AccessPolicy {
        let mut rules: Vec<Rule> = OPEN_TO_CLUSTER
            .iter()
            .filter_map(|(method, path)| {
                Some(Rule {
                    method: method.to_string(),
                    path: PathTemplate::parse(path).ok()?,
                    callers: None,
                })
            })
            .collect();
        for (endpoint, callers) in &manifest.endpoints {
            // The manifest checked the shape (and the template) when it was parsed.
            let Some((method, path)) = parse_endpoint(endpoint) else {
                continue;
            };
            match PathTemplate::parse(path) {
                Ok(path) => rules.push(Rule {
                    method: method.to_string(),
                    path,
                    callers: Some(callers.clone()),
                }),
                // Not served then: a 404, never an open door.
                Err(e) => tracing::error!(error = %e, "endpoint left out of the access policy"),
            }
        }
        AccessPolicy {
            rules: Arc::new(rules),
            enforced,
        }
    }

    fn decide(&self, method: &str, path: &str, caller: Option<&PeerIdentity>) -> Decision {
        if !self.enforced {
            return Decision::Allow;
        }
        let Some(rule) = self
            .rules
            .iter()
            .find(|r| r.method == method && r.path.matches(path))
        else {
            let mut methods: Vec<String> = Vec::new();
            for rule in self.rules.iter().filter(|r| r.path.matches(path)) {
                if !methods.contains(&rule.method) {
                    methods.push(rule.method.clone());
                }
            }
            if methods.is_empty() {
                return Decision::Undeclared;
            }
            return Decision::OtherMethods(methods);
        };
        let Some(role) = caller.and_then(|c| c.role.as_deref()) else {
            return Decision::Forbidden(
                "the client certificate names no svc role (URI SAN spiffe://svc/role/<role>)"
                    .to_string(),
            );
        };
        match &rule.callers {
            None => Decision::Allow,
            Some(callers) if callers.iter().any(|c| c == role) => Decision::Allow,
            Some(callers) => Decision::Forbidden(format!(
                "role `{role}` may not call {method} {}; allowed callers: {}",
                rule.path,
                callers.join(", ")
            )),
        }
    }
}

/// The verified caller of `req`, if the connection is mutual TLS.
pub fn caller(req: &actix_web::HttpRequest) -> Option<PeerIdentity> {
    req.conn_data::<PeerIdentity>().cloned()
}

/// Middleware: answers 403 / 404 per [`AccessPolicy`] before the handler runs.
pub(crate) async fn enforce(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(policy) = req.app_data::<web::Data<AccessPolicy>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    // Decided on borrowed parts of the request: nothing is copied for an allowed call.
    let (method, path) = (req.method().as_str(), req.path());
    let peer = req.conn_data::<PeerIdentity>();
    let problem = match policy.decide(method, path, peer) {
        Decision::Allow => return Ok(next.call(req).await?.map_into_left_body()),
        Decision::Forbidden(detail) => {
            tracing::warn!(
                caller = peer.and_then(|p| p.role.as_deref()).unwrap_or("-"),
                %method,
                %path,
                "refused: caller not allowed"
            );
            Problem::new(actix_web::http::StatusCode::FORBIDDEN, detail)
        }
        Decision::OtherMethods(methods) => {
            let methods: Vec<&str> = methods.iter().map(String::as_str).collect();
            Problem::method_not_allowed(method, path, &methods)
        }
        Decision::Undeclared => Problem::not_found(format!("no route for {method} {path}")),
    };
    let res = actix_web::ResponseError::error_response(&problem);
    Ok(req.into_response(res).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AccessPolicy {
        let manifest = Manifest::parse(
            "name: payments\ndescription: d\nport: 0\nstateful: true\nregisters: true\n\
             calls: []\npublishes: []\nconsumes: []\nendpoints:\n  \
             POST /v1/payments/{order_id}/authorize: [orders]\n  \
             GET /v1/payments/{order_id}: [gateway, operator]\n",
            "test",
        )
        .unwrap();
        AccessPolicy::new(&manifest, true)
    }

    fn peer(role: &str) -> PeerIdentity {
        PeerIdentity {
            role: Some(role.to_string()),
            hosts: Vec::new(),
        }
    }

    #[test]
    fn only_listed_callers_reach_an_endpoint() {
        let p = policy();
        let authorize = "/v1/payments/ord-0-1/authorize";
        assert_eq!(
            p.decide("POST", authorize, Some(&peer("orders"))),
            Decision::Allow
        );
        assert!(matches!(
            p.decide("POST", authorize, Some(&peer("notifications"))),
            Decision::Forbidden(d) if d.contains("notifications") && d.contains("orders")
        ));
        assert!(matches!(
            p.decide("POST", authorize, None),
            Decision::Forbidden(_)
        ));
        let unnamed = PeerIdentity {
            role: None,
            hosts: Vec::new(),
        };
        assert!(matches!(
            p.decide("GET", "/metrics", Some(&unnamed)),
            Decision::Forbidden(_)
        ));
    }

    #[test]
    fn platform_endpoints_are_open_to_every_identity_and_others_are_not_served() {
        let p = policy();
        assert_eq!(
            p.decide("GET", "/metrics", Some(&peer("operator"))),
            Decision::Allow
        );
        assert_eq!(
            p.decide("GET", "/health/ready", Some(&peer("gateway"))),
            Decision::Allow
        );
        assert_eq!(
            p.decide("DELETE", "/v1/payments/x", Some(&peer("orders"))),
            Decision::OtherMethods(vec!["GET".to_string()])
        );
        assert_eq!(
            p.decide("POST", "/metrics", Some(&peer("orders"))),
            Decision::OtherMethods(vec!["GET".to_string()])
        );
        assert_eq!(
            p.decide("GET", "/v1/payments/x/capture", Some(&peer("orders"))),
            Decision::Undeclared
        );
        assert_eq!(
            p.decide("GET", "/nope", Some(&peer("orders"))),
            Decision::Undeclared
        );
    }

    #[test]
    fn an_insecure_instance_enforces_nothing() {
        let manifest = policy();
        let open = AccessPolicy {
            enforced: false,
            ..manifest
        };
        assert_eq!(
            open.decide("POST", "/v1/payments/x/authorize", None),
            Decision::Allow
        );
    }
}
