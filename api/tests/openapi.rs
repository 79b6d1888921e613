//! The OpenAPI document matches the router: every route `app()` registers
//! (read from the router's source, the one place routes are declared) is
//! described with its methods, nothing is described that is not served,
//! and the document is served at `/openapi.json` with a page at `/docs`.

use std::collections::{BTreeMap, BTreeSet};

mod common;

use axum::http::{StatusCode, header};
use common::*;

/// `(path, methods)` of every `.route(…)` in the router's source. A route's
/// methods are the `get(`/`post(`/`put(`/`delete(` calls in its arguments.
fn routes_in_source() -> BTreeMap<String, BTreeSet<String>> {
    let src = include_str!("../src/lib.rs");
    let mut out = BTreeMap::new();
    for chunk in src.split(".route(").skip(1) {
        let path = chunk
            .trim_start()
            .strip_prefix('"')
            .and_then(|c| c.split('"').next())
            .expect("a route path literal");
        // The route's arguments end where the next builder call starts.
        let args = chunk.split("\n        .").next().unwrap_or(chunk);
        let methods = ["get", "post", "put", "delete"]
            .into_iter()
            .filter(|m| {
                args.match_indices(&format!("{m}(")).any(|(i, _)| {
                    // A whole word: not `require_get(` or `jobs::get(`.
                    !args[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                })
            })
            .map(str::to_owned)
            .collect::<BTreeSet<_>>();
        assert!(!methods.is_empty(), "no method found for {path}");
        out.insert(path.to_owned(), methods);
    }
    out
}

#[tokio::test]
async fn every_route_is_documented_and_nothing_else() {
    let h = harness(1 << 20, 1 << 20);
    let (status, headers, doc) = send(&h.state, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    // Multi-person pose results are typed: `persons` of `Person` objects.
    let person = &doc["components"]["schemas"]["Person"];
    assert_eq!(person["type"], "object", "{person}");
    for field in ["score", "box", "keypoints"] {
        assert!(
            person["properties"].get(field).is_some(),
            "Person.{field}: {person}"
        );
    }
    assert!(
        doc["components"]["schemas"]["Prediction"]
            .to_string()
            .contains("\"persons\""),
        "Prediction lists persons"
    );

    let documented: BTreeMap<String, BTreeSet<String>> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(p, item)| {
            (
                p.clone(),
                item.as_object().unwrap().keys().cloned().collect(),
            )
        })
        .collect();
    // The predict verbs share their route with model metadata: axum sees
    // `/v1/models/{name}`, the document the path a client calls.
    let mut expected = routes_in_source();
    assert!(expected.len() >= 25, "{expected:?}");
    for (route, verb_path) in [
        ("/v1/models/{name}", "/v1/models/{name}:predict"),
        (
            "/v1/models/{name}/versions/{version}",
            "/v1/models/{name}/versions/{version}:predict",
        ),
    ] {
        let methods = expected.get_mut(route).unwrap();
        assert!(methods.remove("post"), "{route} has no POST");
        expected.insert(verb_path.to_owned(), BTreeSet::from(["post".to_owned()]));
    }
    for (path, methods) in &expected {
        assert_eq!(
            documented.get(path),
            Some(methods),
            "route {path} {methods:?} is not documented as served"
        );
    }
    for path in documented.keys() {
        assert!(
            expected.contains_key(path),
            "{path} is documented but not routed"
        );
    }

    // Operations that need a key say so; the probes and the document do not.
    assert_eq!(
        doc["paths"]["/v1/jobs"]["post"]["security"][0]["api_key"],
        serde_json::json!([])
    );
    assert!(doc["paths"]["/healthz"]["get"]["security"].is_null());
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    // The job schema is derived from the type the API returns.
    let record = &doc["components"]["schemas"]["JobRecord"];
    for field in [
        "id",
        "status",
        "model",
        "result",
        "timings",
        "error",
        "traceparent",
    ] {
        assert!(
            record["properties"][field].is_object(),
            "JobRecord.{field}: {record}"
        );
    }
    assert!(doc["components"]["schemas"]["Prediction"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());

    let (status, headers, _) = send(&h.state, get("/docs")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[test]
fn the_source_scan_finds_methods() {
    let routes = routes_in_source();
    assert_eq!(
        routes["/v1/models/{name}/versions/{version}"],
        BTreeSet::from(["get", "post", "put"].map(str::to_owned))
    );
    assert_eq!(routes["/v1/jobs"], BTreeSet::from(["post".to_owned()]));
}

/// The document is valid OpenAPI 3 as the reference validator sees it
/// (PyPI `openapi-spec-validator`, pinned in scripts/requirements-test.txt):
/// unique operation ids, resolvable references, schemas of the right shape.
#[tokio::test]
async fn the_document_passes_openapi_spec_validator() {
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/test-venv/bin/python");
    if !python.is_file() {
        assert!(
            std::env::var("INFERQ_TEST_REQUIRE_SERVICES").is_err(),
            "{} missing: run `make test-venv`",
            python.display()
        );
        eprintln!("SKIPPED: no .cache/test-venv (make test-venv) for openapi-spec-validator");
        return;
    }
    let h = harness(1 << 20, 1 << 20);
    let (status, _, doc) = send(&h.state, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    let file = std::env::temp_dir().join(format!("inferq-openapi-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("run openapi_spec_validator");
    let _ = std::fs::remove_file(&file);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("OK"), "{text}");
}

/// Every request and response body has a schema: no untyped `{}` bodies,
/// and no answer without content except 204 and 304. A schema of an
/// object with neither properties nor a `$ref` counts as untyped too
/// (`serde_json::Value` as a body renders like that).
#[tokio::test]
async fn every_body_is_typed() {
    let h = harness(1 << 20, 1 << 20);
    let (status, _, doc) = send(&h.state, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    let untyped = |schema: Option<&serde_json::Value>| match schema {
        None => true,
        Some(s) => {
            let o = s.as_object().unwrap();
            o.is_empty()
                || (o.get("type") == Some(&serde_json::json!("object"))
                    && !o.contains_key("properties")
                    && !o.contains_key("additionalProperties"))
        }
    };
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(content) = op["requestBody"]["content"].as_object() {
                for (ct, c) in content {
                    if untyped(c.get("schema")) {
                        found.push(format!("{method} {path} request {ct}"));
                    }
                }
            }
            for (code, r) in op["responses"].as_object().unwrap() {
                match r["content"].as_object() {
                    None if code != "204" && code != "304" => {
                        found.push(format!("{method} {path} {code}: no content"))
                    }
                    None => {}
                    Some(content) => {
                        for (ct, c) in content {
                            if untyped(c.get("schema")) {
                                found.push(format!("{method} {path} {code} {ct}"));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "untyped bodies:\n{}", found.join("\n"));
}
