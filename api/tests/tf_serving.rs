//! TF Serving's REST shapes through the real router, with `oneshot`: the
//! model status on `GET /v1/models/{m}[/versions/{v}]`, the signature
//! metadata on `…/metadata`, the `error` member on every failed `:predict`
//! answer — including those made by middleware before the handler runs —
//! and the refusals of the columnar `inputs` format. Answers that need a
//! worker are in `tests/tests/predict.rs`.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use serde_json::{Value, json};

fn predict(path: &str, body: Value) -> Request<Body> {
    post(path, "application/json", serde_json::to_vec(&body).unwrap())
}

/// A problem body that also carries TF Serving's `error`: the detail.
fn assert_tf_error(
    resp: &(StatusCode, axum::http::HeaderMap, Value),
    want: StatusCode,
    code: &str,
) {
    assert_problem(resp, want, code);
    assert_eq!(resp.2["error"], resp.2["detail"], "{}", resp.2);
}

#[tokio::test]
async fn model_status_is_tf_servings_shape_next_to_inferqs() {
    let h = harness(1 << 20, 1 << 20);
    let available = json!([{
        "version": "1",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""}
    }]);
    let (status, _, body) = send(&h.state, get("/v1/models/tiny-mean")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model_version_status"], available);
    // InferQ's own members are unchanged.
    assert_eq!(body["name"], "tiny-mean");
    assert_eq!(body["default_version"], 1);
    assert_eq!(body["versions"][0]["version"], 1);
    assert!(body["versions"][0].get("model_version_status").is_none());

    let (status, _, body) = send(&h.state, get("/v1/models/tiny-mean/versions/1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model_version_status"], available);
    assert_eq!(body["version"], 1);
    assert_eq!(body["kind"], "classification");

    assert_problem(
        &send(&h.state, get("/v1/models/nope")).await,
        StatusCode::NOT_FOUND,
        "model_not_found",
    );
}

fn dims(info: &Value) -> Vec<String> {
    info["tensor_shape"]["dim"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["size"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn metadata_is_the_serving_default_signature_from_the_manifest() {
    let h = harness(1 << 20, 1 << 20);
    let (status, _, body) = send(&h.state, get("/v1/models/tiny-mean/metadata")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["model_spec"],
        json!({"name": "tiny-mean", "signature_name": "", "version": "1"})
    );
    let map = &body["metadata"]["signature_def"];
    assert_eq!(
        map["@type"],
        "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    );
    let sig = &map["signature_def"]["serving_default"];
    assert_eq!(sig["method_name"], "tensorflow/serving/predict");
    let input = &sig["inputs"]["input"];
    assert_eq!(input["dtype"], "DT_FLOAT");
    assert_eq!(dims(input), ["-1", "3", "224", "224"]);
    assert_eq!(input["name"], "input:0");
    assert_eq!(input["tensor_shape"]["unknown_rank"], false);
    let image = &sig["inputs"]["image_bytes"];
    assert_eq!(image["dtype"], "DT_STRING");
    assert_eq!(dims(image), ["-1"]);
    let probs = &sig["outputs"]["probabilities"];
    assert_eq!(probs["dtype"], "DT_FLOAT");
    assert_eq!(dims(probs), ["-1", "10"]);

    // An NHWC int32 model, by version; a detector's outputs.
    let (status, _, body) = send(
        &h.state,
        get("/v1/models/tiny-nhwc-int32/versions/1/metadata"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let input =
        &body["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["input"];
    assert_eq!(input["dtype"], "DT_INT32");
    assert_eq!(dims(input), ["-1", "224", "224", "3"]);
    let (_, _, body) = send(&h.state, get("/v1/models/tiny-detect/metadata")).await;
    let outputs = &body["metadata"]["signature_def"]["signature_def"]["serving_default"]["outputs"];
    assert_eq!(outputs["detection_count"]["dtype"], "DT_INT32");
    assert_eq!(dims(&outputs["detections"]), ["-1", "-1", "6"]);

    for path in [
        "/v1/models/nope/metadata",
        "/v1/models/tiny-mean/versions/9/metadata",
        "/v1/models/tiny-mean/versions/x/metadata",
    ] {
        assert_problem(
            &send(&h.state, get(path)).await,
            StatusCode::NOT_FOUND,
            "model_not_found",
        );
    }
}

#[tokio::test]
async fn handler_errors_on_predict_carry_the_error_member() {
    let h = harness(1 << 20, 1 << 20);
    let s = &h.state;
    for (path, body, status, code) in [
        (
            "/v1/models/tiny-mean:predict",
            json!({"instances": [3]}),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "/v1/models/tiny-mean/versions/1:predict",
            json!({"instances": []}),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "/v1/models/nope:predict",
            json!({"instances": [{"b64": "aGk="}]}),
            StatusCode::NOT_FOUND,
            "model_not_found",
        ),
        (
            "/v1/models/tiny-mean:predict",
            json!({"instances": [[1]], "inputs": [[1]]}),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "/v1/models/tiny-mean:predict",
            json!({"inputs": {"pixels": [[1]]}}),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "/v1/models/nope:predict",
            json!({"inputs": {"image_bytes": [{"b64": "aGk="}]}}),
            StatusCode::NOT_FOUND,
            "model_not_found",
        ),
    ] {
        let resp = send(s, predict(path, body.clone())).await;
        assert_tf_error(&resp, status, code);
        if code == "invalid_argument" && body.get("inputs").is_some() {
            let detail = resp.2["detail"].as_str().unwrap();
            assert!(
                detail.contains("not both") || detail.contains("no input named `pixels`"),
                "{detail}"
            );
        }
    }
    // A cross-site request, refused before authentication (403).
    let mut cross = predict(
        "/v1/models/tiny-mean:predict",
        json!({"instances": [{"b64": "aGk="}]}),
    );
    cross
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_tf_error(&send(s, cross).await, StatusCode::FORBIDDEN, "forbidden");
    // A wrong method on a predict path (the 405 fallback).
    let resp = send(
        s,
        Request::delete("/v1/models/tiny-mean:predict")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.2["error"], "method not allowed", "{}", resp.2);
    // Other routes keep their bodies as they were.
    let resp = send(s, post("/v1/jobs?top_k=0", "image/png", png(4, 4))).await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(resp.2.get("error").is_none(), "{}", resp.2);
    // Nothing was queued.
    assert!(h.queue.is_empty());
}

#[tokio::test]
async fn auth_errors_on_predict_carry_the_error_member() {
    const READER: &str = "reader-secret-0123456789abcdef";
    let h = auth_harness(&[&format!("dashboards:read:{READER}")]);
    let body = json!({"instances": [{"b64": "aGk="}]});
    let resp = send(
        &h.state,
        predict("/v1/models/tiny-mean:predict", body.clone()),
    )
    .await;
    assert_tf_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(resp.1[header::WWW_AUTHENTICATE], "Bearer realm=\"inferq\"");
    let resp = send(
        &h.state,
        bearer(predict("/v1/models/tiny-mean:predict", body), READER),
    )
    .await;
    assert_tf_error(&resp, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn admission_errors_on_predict_carry_the_error_member() {
    let h = harness_with(&["--max-inflight-requests", "1"]);
    let resp = send_while_the_slot_is_held(
        &h.state,
        predict(
            "/v1/models/tiny-mean:predict",
            json!({"instances": [{"b64": "aGk="}]}),
        ),
    )
    .await;
    assert_tf_error(&resp, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert_eq!(resp.1[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn body_limits_on_predict_carry_the_error_member() {
    // Over the whole in-flight body budget (middleware), and over the
    // request size limit (the handler's reader).
    let h = harness_with(&["--body-budget-mib", "1", "--max-body-bytes", "4194304"]);
    let big = json!({"instances": [{"b64": "A".repeat(2 << 20)}]});
    let resp = send(&h.state, predict("/v1/models/tiny-mean:predict", big)).await;
    assert_tf_error(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let h = harness(4096, 4096);
    let big = json!({"instances": [{"b64": "A".repeat(128 << 10)}]});
    let resp = send(&h.state, predict("/v1/models/tiny-mean:predict", big)).await;
    assert_tf_error(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[test]
fn the_openapi_document_types_the_tf_serving_bodies() {
    let doc = inferq_api::routes::openapi::spec();
    let schema_of = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
            ["$ref"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(schema_of("/v1/models/{name}", "get", "200"), "ModelAnswer");
    assert_eq!(
        schema_of("/v1/models/{name}/versions/{version}", "get", "200"),
        "VersionAnswer"
    );
    assert_eq!(
        schema_of("/v1/models/{name}/metadata", "get", "200"),
        "TfModelMetadata"
    );
    assert_eq!(
        schema_of(
            "/v1/models/{name}/versions/{version}/metadata",
            "get",
            "200"
        ),
        "TfModelMetadata"
    );
    for path in [
        "/v1/models/{name}:predict",
        "/v1/models/{name}/versions/{version}:predict",
    ] {
        assert_eq!(schema_of(path, "post", "200"), "PredictAnswer");
        let responses = doc["paths"][path]["post"]["responses"].as_object().unwrap();
        for status in ["400", "401", "403", "404", "413", "429", "503"] {
            assert!(responses.contains_key(status), "{path} {status}");
        }
    }
    let schemas = &doc["components"]["schemas"];
    // TF Serving's metadata body, not KServe's model metadata (both types
    // are called ModelMetadata in Rust; one component name would have
    // described both routes with the same schema).
    let tf = &schemas["TfModelMetadata"]["properties"];
    assert!(
        tf["model_spec"].is_object() && tf["metadata"].is_object(),
        "{tf}"
    );
    assert!(schemas["ModelMetadata"]["properties"]["platform"].is_object());
    // An instance is one of its shapes, not an externally tagged enum.
    assert!(
        schemas["TfInstance"]["oneOf"].is_array(),
        "{}",
        schemas["TfInstance"]
    );
    assert!(
        schemas["VersionStatus"]["properties"]["state"].is_object(),
        "{}",
        schemas["VersionStatus"]
    );
}
