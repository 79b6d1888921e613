//! API keys and tenant isolation on the production path: the API with
//! authentication on, a real worker, RabbitMQ and Redis.

use std::time::Duration;

use inferq_tests::*;

const ALICE: &str = "e2e-alice-5f0c1d2e3a4b5c6d7e8f";
const BOB: &str = "e2e-bob-0a1b2c3d4e5f60718293";
const OPS: &str = "e2e-ops-99aa88bb77cc66dd55ee";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_jobs() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let keys = format!("alice:submit+read:{ALICE},bob:submit+read:{BOB},ops:admin:{OPS}");
    let api = start_api(
        &ns,
        &test_models(),
        "tiny-mean",
        &["--auth", "true", "--api-keys", &keys],
    )
    .await;
    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    let base = api.url();
    let (alice, bob, ops) = (
        client_with_key(ALICE),
        client_with_key(BOB),
        client_with_key(OPS),
    );

    // Without a key nothing gets in; the probes stay open.
    let anonymous = reqwest::Client::new();
    let (status, body) = submit(
        &anonymous,
        &base,
        "",
        "image/png",
        solid_png(8, 8, [1, 2, 3]),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "unauthorized");
    let probe = anonymous
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);

    // Alice's job runs through RabbitMQ and the worker; Redis keeps its owner.
    let job = run_job(&alice, &base, "", solid_png(16, 16, [255, 0, 0])).await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["owner"], "alice", "{job}");
    let bobs = run_job(&bob, &base, "", solid_png(16, 16, [0, 0, 255])).await;
    let bob_id = bobs["id"].as_str().unwrap().to_owned();
    assert_ne!(
        top1(&job),
        top1(&bobs),
        "different inputs, different answers"
    );

    // Each tenant gets 404 for the other's job, on every job route.
    for (client, other) in [(&bob, &id), (&alice, &bob_id)] {
        for path in ["", "?wait=5", "/output"] {
            let resp = client
                .get(format!("{base}/v1/jobs/{other}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 404, "{path}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["code"], "job_not_found", "{path}: {body}");
        }
        let resp = client
            .post(format!("{base}/v1/jobs/{other}/cancel"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }

    // The owner still reads the finished job; the admin reads both.
    let again = wait_terminal(&alice, &base, &id, Duration::from_secs(5)).await;
    assert_eq!(again["status"], "succeeded");
    for (job_id, owner) in [(&id, "alice"), (&bob_id, "bob")] {
        let seen = wait_terminal(&ops, &base, job_id, Duration::from_secs(5)).await;
        assert_eq!(seen["owner"], owner, "{seen}");
    }

    api.stop().await;
    worker.stop().await;
    ns.cleanup().await;
}
