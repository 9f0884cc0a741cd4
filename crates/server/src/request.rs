//! An API request as the handlers see it: the ARM path split into its shape and its names.
//!
//! ARM paths alternate keywords and names (`/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}…`).
//! `parse` lower-cases the keywords and puts `{}` where names stand, so routing is a `match` on a
//! readable string such as `resourcegroups/{}/providers/microsoft.compute/galleries/{}`, case-insensitive
//! as ARM's (az sends `resourcegroups`), while names keep the casing the user typed.

use std::collections::HashMap;

use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

pub struct ApiRequest {
    pub method: Method,
    /// The path after `/subscriptions/{subscription}/`, keywords lower-cased, names as `{}`.
    pub shape: String,
    pub subscription: String,
    /// The names in the path, in order, after the subscription.
    pub names: Vec<String>,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    let dec = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (dec(k).to_ascii_lowercase(), dec(v))
        })
        .collect()
}

impl ApiRequest {
    /// Splits `path`; `None` if it is not an ARM path under a subscription.
    pub fn parse(
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Option<ApiRequest> {
        let segs: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        if segs.is_empty() || !segs[0].eq_ignore_ascii_case("subscriptions") || segs.iter().any(String::is_empty) {
            return None;
        }
        if segs.len() == 1 {
            // `GET /subscriptions`: the list, with no subscription named.
            let (headers, body) = (headers, body);
            let query = parse_query(query);
            return Some(ApiRequest {
                method,
                shape: "<subscriptions>".into(),
                subscription: String::new(),
                names: vec![],
                query,
                headers,
                body,
            });
        }
        let mut shape = vec![];
        let mut names = vec![];
        let mut i = 2;
        // `resourceGroups/{rg}` is a keyword and a name; so is every `{type}/{name}` after `providers/{ns}`.
        if segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case("resourcegroups")) {
            shape.push("resourcegroups".to_string());
            if let Some(rg) = segs.get(i + 1) {
                shape.push("{}".into());
                names.push(rg.clone());
            }
            i += 2;
        }
        if let Some(p) = segs.get(i) {
            shape.push(p.to_ascii_lowercase());
            if p.eq_ignore_ascii_case("providers") {
                if let Some(ns) = segs.get(i + 1) {
                    shape.push(ns.to_ascii_lowercase());
                }
                i += 2;
                for (j, seg) in segs.iter().enumerate().skip(i) {
                    if (j - i) % 2 == 0 {
                        shape.push(seg.to_ascii_lowercase());
                    } else {
                        shape.push("{}".into());
                        names.push(seg.clone());
                    }
                }
            } else {
                // Anything else after the subscription is kept as keywords (`resourcegroups` lists).
                shape.extend(segs.iter().skip(i + 1).map(|s| s.to_ascii_lowercase()));
            }
        }
        let query = parse_query(query);
        Some(ApiRequest { method, shape: shape.join("/"), subscription: segs[1].clone(), names, query, headers, body })
    }

    /// `api-version` is required on every request; any date-shaped value is accepted (CONTRACT §1).
    pub fn check_api_version(&self) -> ApiResult<()> {
        let Some(v) = self.query.get("api-version") else {
            return Err(ApiError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        };
        let date = v.split('-').take(3).collect::<Vec<_>>();
        let ok = date.len() == 3
            && date[0].len() == 4
            && date[1].len() == 2
            && date[2].len() == 2
            && date.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()));
        if ok {
            Ok(())
        } else {
            Err(ApiError::bad_request(
                "InvalidApiVersionParameter",
                format!("The api-version '{v}' is invalid: expected a date such as 2025-04-01."),
            ))
        }
    }

    /// The body as `T`; a malformed body is a 400 naming where it went wrong.
    pub fn json<T: DeserializeOwned>(&self) -> ApiResult<T> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &self.body };
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let at = if path == "." { String::new() } else { format!(" at '{path}'") };
            ApiError::bad_request("InvalidRequestContent", format!("The request content is not valid{at}: {inner}"))
        })
    }

    /// `If-None-Match: *`: the caller wants to create, never replace.
    pub fn create_only(&self) -> bool {
        self.headers.get("if-none-match").is_some_and(|v| v.as_bytes() == b"*")
    }

    pub fn flag(&self, name: &str) -> bool {
        self.query.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(path: &str) -> (String, Vec<String>) {
        let r = ApiRequest::parse(Method::GET, path, None, HeaderMap::new(), Bytes::new()).unwrap();
        (r.shape, r.names)
    }

    #[test]
    fn shapes_lower_case_keywords_and_keep_names() {
        assert_eq!(
            shape(
                "/subscriptions/S/resourcegroups/RG/providers/Microsoft.Compute/galleries/G/Images/Web/versions/1.0.0"
            ),
            (
                "resourcegroups/{}/providers/microsoft.compute/galleries/{}/images/{}/versions/{}".to_string(),
                vec!["RG".into(), "G".into(), "Web".into(), "1.0.0".into()]
            )
        );
        assert_eq!(
            shape(
                "/subscriptions/S/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/web/manualupgrade"
            ),
            (
                "resourcegroups/{}/providers/microsoft.compute/virtualmachinescalesets/{}/manualupgrade".to_string(),
                vec!["rg".into(), "web".into()]
            )
        );
        assert_eq!(shape("/subscriptions/S/resourcegroups").0, "resourcegroups");
        assert_eq!(shape("/subscriptions/S").0, "");
        assert_eq!(shape("/subscriptions/S/resourceGroups/a%28b%29").1, vec!["a(b)".to_string()]);
        assert_eq!(
            shape("/subscriptions/S/providers/Microsoft.Compute/locations/local/operations/x"),
            ("providers/microsoft.compute/locations/{}/operations/{}".to_string(), vec!["local".into(), "x".into()])
        );
    }

    #[test]
    fn api_version_must_be_a_date() {
        let req = |q: &str| {
            ApiRequest::parse(Method::GET, "/subscriptions/S", Some(q), HeaderMap::new(), Bytes::new()).unwrap()
        };
        assert!(req("api-version=2025-04-01").check_api_version().is_ok());
        assert!(req("api-version=2024-03-03-preview").check_api_version().is_ok());
        assert!(req("x=1").check_api_version().is_err());
        assert!(req("api-version=latest").check_api_version().is_err());
    }
}
