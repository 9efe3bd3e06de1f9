//! Path templates (`/v1/products/{sku}`) compiled once into segments and matched
//! without a regular expression or an allocation.
//!
//! A template is `/` followed by segments separated by `/`; a segment is either literal
//! text or one whole parameter `{name}`. A parameter matches one non-empty segment (any
//! characters but `/`), a literal only itself, byte for byte. This is what actix's
//! `ResourceDef` does with the same pattern (`{name}` is `[^/]+` there), matched on the
//! same raw request path, so a path a route serves is exactly a path its template
//! matches. It exists because `ResourceDef` runs a regular expression for every pattern
//! with a parameter, and the access policy and the gateway match on every request.
//!
//! Templates that are not of this shape (a parameter inside a segment, a custom
//! parameter regex, a tail match) are refused by [`PathTemplate::parse`].

use std::fmt;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A compiled path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    template: String,
    segments: Vec<Segment>,
}

/// Why a template cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path template `{template}`: {reason}")]
pub struct TemplateError {
    template: String,
    reason: &'static str,
}

impl PathTemplate {
    /// Compiles `template`, e.g. `/v1/orders/{id}/cancel`.
    pub fn parse(template: &str) -> Result<PathTemplate, TemplateError> {
        let fail = |reason| TemplateError {
            template: template.to_string(),
            reason,
        };
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| fail("must start with `/`"))?;
        let mut segments = Vec::new();
        // "/" alone is the root: no segment at all.
        if !rest.is_empty() {
            for part in rest.split('/') {
                let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) => {
                        let plain = !name.is_empty()
                            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                        if !plain {
                            return Err(fail("a parameter is `{name}`, letters, digits and `_`"));
                        }
                        Segment::Param(name.to_string())
                    }
                    None if part.contains(['{', '}']) => {
                        return Err(fail("a parameter must be a whole segment"));
                    }
                    None => Segment::Literal(part.to_string()),
                };
                segments.push(segment);
            }
        }
        Ok(PathTemplate {
            template: template.to_string(),
            segments,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// Whether `path` (the raw request path, no query) matches.
    pub fn matches(&self, path: &str) -> bool {
        self.walk(path, |_, _| ())
    }

    /// The values of the parameters, in template order, if `path` matches; `N` is the
    /// number of parameters the caller expects (a template with another count never
    /// captures).
    pub fn captures<'p, const N: usize>(&self, path: &'p str) -> Option<[&'p str; N]> {
        let mut values = [""; N];
        let mut count = 0;
        let matched = self.walk(path, |_, value| {
            if let Some(slot) = values.get_mut(count) {
                *slot = value;
            }
            count += 1;
        });
        (matched && count == N).then_some(values)
    }

    /// Whether `path` matches, handing each parameter's value to `each` in template
    /// order as the match goes (so a path that fails further on may already have handed
    /// some: use them only when this returns true).
    pub fn match_each<'p>(&self, path: &'p str, mut each: impl FnMut(&'p str)) -> bool {
        self.walk(path, |_, value| each(value))
    }

    /// The number of parameters.
    pub fn param_count(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Param(_)))
            .count()
    }

    /// The parameter names, in order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Matches `path` segment by segment, handing each parameter's name and value to
    /// `param`; false at the first difference.
    fn walk<'p>(&self, path: &'p str, mut param: impl FnMut(&str, &'p str)) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        if self.segments.is_empty() {
            return rest.is_empty();
        }
        let mut parts = rest.split('/');
        for segment in &self.segments {
            let Some(part) = parts.next() else {
                return false;
            };
            match segment {
                Segment::Literal(text) if text == part => {}
                Segment::Param(name) if !part.is_empty() => param(name, part),
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_each_hands_the_values_in_order_and_says_whether_it_matched() {
        let template = PathTemplate::parse("/v1/orders/{id}/lines/{line}").unwrap();
        let mut seen = Vec::new();
        assert!(template.match_each("/v1/orders/ord-1/lines/2", |v| seen.push(v)));
        assert_eq!(seen, ["ord-1", "2"]);
        seen.clear();
        assert!(!template.match_each("/v1/orders/ord-1/items/2", |v| seen.push(v)));
        assert!(!template.match_each("/v1/orders/ord-1/lines/2/x", |_| {}));
        assert!(!template.match_each("/v1/orders//lines/2", |_| {}));
    }

    fn t(template: &str) -> PathTemplate {
        PathTemplate::parse(template).unwrap()
    }

    #[test]
    fn literals_match_exactly() {
        let products = t("/v1/products");
        assert!(products.matches("/v1/products"));
        for other in [
            "/v1/products/",
            "/v1/product",
            "/v1/productsx",
            "/v1/Products",
            "v1/products",
            "//v1/products",
            "/v1/products/tea",
            "",
            "/",
        ] {
            assert!(!products.matches(other), "{other}");
        }
        let root = t("/");
        assert!(root.matches("/"));
        assert!(!root.matches("/x") && !root.matches("") && !root.matches("//"));
    }

    #[test]
    fn a_parameter_is_one_non_empty_segment() {
        let product = t("/v1/products/{sku}");
        assert!(product.matches("/v1/products/tea"));
        assert!(product.matches("/v1/products/t%2Fe.a-1"));
        for other in [
            "/v1/products/",
            "/v1/products",
            "/v1/products/tea/",
            "/v1/products/tea/stock",
            "/v1/products//",
            "/v2/products/tea",
        ] {
            assert!(!product.matches(other), "{other}");
        }
        assert_eq!(product.captures::<1>("/v1/products/tea"), Some(["tea"]));
        assert_eq!(product.captures::<1>("/v1/products/"), None);
    }

    #[test]
    fn parameters_are_captured_in_order_with_literals_between() {
        let lease = t("/v1/instances/{role}/{id}/lease");
        assert_eq!(lease.param_count(), 2);
        assert_eq!(lease.param_names().collect::<Vec<_>>(), ["role", "id"]);
        assert_eq!(
            lease.captures::<2>("/v1/instances/orders/orders-0/lease"),
            Some(["orders", "orders-0"])
        );
        assert_eq!(
            lease.captures::<2>("/v1/instances/orders/orders-0/renew"),
            None
        );
        assert_eq!(lease.captures::<2>("/v1/instances/orders//lease"), None);
        // Asking for another number of values than the template has never captures.
        assert_eq!(
            lease.captures::<1>("/v1/instances/orders/orders-0/lease"),
            None
        );
        assert_eq!(
            lease.captures::<3>("/v1/instances/orders/orders-0/lease"),
            None
        );
    }

    #[test]
    fn only_whole_segment_parameters_compile() {
        for bad in [
            "v1/x",
            "/v1/x{id}",
            "/v1/{id}.json",
            "/v1/{}",
            "/v1/{id:\\d+}",
            "/v1/{tail}*",
            "/v1/{a-b}",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(t("/v1/orders/{id}").to_string(), "/v1/orders/{id}");
    }

    /// The promise of the module: the same answer as actix's `ResourceDef` on every
    /// template the manifests and the gateway use, over paths near each of them.
    #[test]
    fn agrees_with_actix_resource_def() {
        use actix_web::dev::ResourceDef;
        let templates = [
            "/v1/products",
            "/v1/products/{sku}",
            "/v1/products/{sku}/stock",
            "/v1/instances/{role}/{id}/lease",
            "/api/v1/orders/{id}/notifications",
            "/health/ready",
        ];
        let paths = [
            "/v1/products",
            "/v1/products/",
            "/v1/products/tea",
            "/v1/products/tea/",
            "/v1/products/tea/stock",
            "/v1/products//stock",
            "/v1/products/tea/stock/x",
            "/v1/instances/a/b/lease",
            "/v1/instances/a//lease",
            "/v1/instances//b/lease",
            "/api/v1/orders/ord-0-1/notifications",
            "/api/v1/orders/%2F/notifications",
            "/health/ready",
            "/health/ready/",
            "/health",
            "/",
            "",
        ];
        for template in templates {
            let ours = t(template);
            let theirs = ResourceDef::new(template);
            for path in paths {
                assert_eq!(
                    ours.matches(path),
                    theirs.is_match(path),
                    "{template} against {path:?}"
                );
            }
        }
    }
}
