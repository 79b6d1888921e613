//! Video inputs at the API (`oneshot`, in-memory backends): MP4/MOV, WebM
//! and animated GIFs are recognised from their first bytes in every
//! encoding, held to `max_video_bytes` (images keep `max_body_bytes`), and
//! their sampling options travel in the queue message. Still images and
//! still GIFs are unchanged.

mod common;

use axum::http::StatusCode;
use base64::Engine;
use common::*;
use inferq_backends::broker::JobQueue;
use inferq_core::message::JobMessage;
use inferq_core::video::VideoParams;
use serde_json::json;

/// An MP4's first box (`ftyp`, brand isom), padded to `len` bytes: enough
/// for the API, which never decodes a video.
fn mp4(len: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0x20];
    v.extend_from_slice(b"ftypisom\0\0\x02\0isomiso2avc1mp41");
    v.resize(len, 0);
    v
}

/// A GIF with `n` 1x1 frames.
fn gif(n: usize) -> Vec<u8> {
    let mut v = b"GIF89a".to_vec();
    v.extend_from_slice(&[1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
    for _ in 0..n {
        v.extend_from_slice(&[0x21, 0xF9, 4, 0, 10, 0, 0, 0]);
        v.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x4C, 0x01, 0]);
    }
    v.push(0x3B);
    v
}

async fn message(h: &Harness) -> JobMessage {
    let mut d = h.queue.consume(1).await.unwrap();
    JobMessage::decode(d.next().await.unwrap().unwrap().payload).unwrap()
}

#[tokio::test]
async fn videos_are_recognised_in_every_encoding() {
    let h = harness(1 << 20, 1 << 20);
    // Raw, with sampling options in the query string.
    let resp = send(
        &h.state,
        post("/v1/jobs?fps=2.5&max_frames=7", "video/mp4", mp4(4096)),
    )
    .await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    assert_eq!(resp.2["input"]["format"], "mp4");
    assert!(resp.2["input"].get("width").is_none(), "{}", resp.2);
    let msg = message(&h).await;
    assert_eq!(
        msg.video,
        Some(VideoParams {
            fps: Some(2.5),
            max_frames: Some(7)
        })
    );
    // JSON base64, options in the body.
    let b64 = base64::engine::general_purpose::STANDARD.encode(gif(3));
    let body = json!({"input": {"b64": b64}, "max_frames": 2});
    let resp = send(
        &h.state,
        post(
            "/v1/jobs",
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        ),
    )
    .await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    assert_eq!(resp.2["input"]["format"], "gif");
    assert_eq!(message(&h).await.video.unwrap().max_frames, Some(2));
    // Without options the message carries none (the worker's defaults apply).
    let resp = send(
        &h.state,
        post("/v1/jobs", "application/octet-stream", mp4(100)),
    )
    .await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    assert_eq!(message(&h).await.video, None);
    // A still GIF is an image, exactly as before.
    let resp = send(&h.state, post("/v1/jobs", "image/gif", gif(1))).await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    assert_eq!(resp.2["input"]["format"], "gif");
    assert_eq!(resp.2["input"]["width"], 1);
}

#[tokio::test]
async fn videos_have_their_own_size_limit() {
    // Images up to 64 KiB, videos up to 256 KiB.
    let h = harness_with(&[
        "--max-body-bytes",
        "65536",
        "--max-video-bytes",
        "262144",
        "--inline-max-bytes",
        "65536",
    ]);
    let resp = send(&h.state, post("/v1/jobs", "video/mp4", mp4(200_000))).await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    // Above the inline limit: the video waits in the store, not the message.
    let msg = message(&h).await;
    assert!(
        matches!(msg.image, inferq_core::message::ImageSource::Blob(_)),
        "{msg:?}"
    );
    let resp = send(&h.state, post("/v1/jobs", "video/mp4", mp4(300_000))).await;
    assert_problem(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // An image read under the video limit is still held to its own.
    let mut big = png(8, 8);
    big.resize(100_000, 0);
    let resp = send(&h.state, post("/v1/jobs", "image/png", big)).await;
    assert_problem(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn sampling_options_are_checked() {
    let h = harness_with(&["--video-max-frames", "50"]);
    // 51 is over this server's cap: refused here, not failed by a worker.
    for query in [
        "?fps=0",
        "?fps=-1",
        "?fps=1000",
        "?max_frames=0",
        "?max_frames=51",
    ] {
        let resp = send(
            &h.state,
            post(&format!("/v1/jobs{query}"), "video/mp4", mp4(100)),
        )
        .await;
        assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_argument");
    }
    let resp = send(
        &h.state,
        post("/v1/jobs?max_frames=50", "video/mp4", mp4(100)),
    )
    .await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    assert!(h.queue.len() == 1 && h.store.len() == 1);
}
