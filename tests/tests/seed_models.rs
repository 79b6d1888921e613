//! The image-output seed models on real and generated images: ESRGAN x2
//! super-resolution (tiled) against bicubic, and the bright-spot heatmap
//! (its PNG, views and peaks, tiles stitched without seams), through the
//! job API and TF Serving's `:predict`.

use std::io::Cursor;
use std::time::Duration;

use base64::Engine;
use image::{ImageFormat, RgbImage, imageops};
use inferq_tests::*;
use serde_json::{Value, json};

fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .unwrap();
    out
}

async fn output(
    client: &reqwest::Client,
    base: &str,
    job: &Value,
    view: &str,
) -> image::DynamicImage {
    let id = job["id"].as_str().unwrap();
    let url = format!("{base}/v1/jobs/{id}/output{view}");
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert_eq!(resp.headers()["content-type"], "image/png");
    image::load_from_memory(&resp.bytes().await.unwrap()).unwrap()
}

/// Peak signal-to-noise ratio of `a` against the reference `b`, in dB.
fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let se: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let mse = se / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esrgan_upscales_better_than_bicubic() {
    if !real_model_ready("esrgan-psnr-small", "models-seed") {
        return;
    }
    let server = start_embedded(&real_models(), "esrgan-psnr-small", &[]).await;
    let client = reqwest::Client::new();
    let base = server.url();
    // A 320x240 crop of the cat photo is the truth; its half-size bicubic
    // downscale (160x120: two 128-px tiles across) is what we submit.
    let photo = image::load_from_memory(&image("chelsea.png"))
        .unwrap()
        .to_rgb8();
    let truth = imageops::crop_imm(&photo, 60, 30, 320, 240).to_image();
    let small = imageops::resize(&truth, 160, 120, imageops::FilterType::CatmullRom);
    let job = run_job(&client, &base, "?model=esrgan-psnr-small", png(&small)).await;
    let r = &job["result"];
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(320), Some(240)),
        "{r}"
    );
    assert!(r.get("peaks").is_none() && r.get("views").is_none(), "{r}");
    let up = output(&client, &base, &job, "").await.to_rgb8();
    assert_eq!(up.dimensions(), (320, 240));
    let bicubic = imageops::resize(&small, 320, 240, imageops::FilterType::CatmullRom);
    let (model_db, bicubic_db) = (psnr(&up, &truth), psnr(&bicubic, &truth));
    println!(
        "esrgan x2 on a 160x120 crop: PSNR {model_db:.2} dB vs bicubic {bicubic_db:.2} dB; \
         inference {} ms",
        job["timings"]["inference_ms"]
    );
    assert!(
        model_db > bicubic_db + 0.3,
        "model {model_db:.2} dB, bicubic {bicubic_db:.2} dB"
    );
    // A view the result does not list is a clear 404; a bad query a 400.
    let id = job["id"].as_str().unwrap();
    let resp = client
        .get(format!("{base}/v1/jobs/{id}/output?view=overlay"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("no output view"));
    let resp = client
        .get(format!("{base}/v1/jobs/{id}/output?views=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    server.stop().await;
}

/// A deterministic 700x300 scene of the heatmap model's training kind: a
/// graded background, three blobs of rising brightness, noise, and hot
/// pixels brighter than anything (which the net must ignore). Returns the
/// image and the blob centres, brightest last.
fn bright_scene() -> (RgbImage, [(f32, f32); 3]) {
    let blobs = [
        (150.0, 80.0, 0.30),
        (330.0, 200.0, 0.42),
        (520.0, 150.0, 0.58),
    ];
    let mut seed = 0x2545_f491_u32;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed as f32 / u32::MAX as f32 - 0.5) * 0.08
    };
    let img = RgbImage::from_fn(700, 300, |x, y| {
        let mut v = 0.18 + 0.05 * x as f32 / 700.0;
        for (cx, cy, peak) in blobs {
            let d2 = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2);
            v += peak * (-d2 / (2.0 * 6.0f32.powi(2))).exp();
        }
        v += noise();
        let hot = (x * 7 + y * 13) % 4001 == 0;
        let v = if hot { 1.0 } else { v.clamp(0.0, 1.0) };
        let px = |tint: f32| (v * tint * 255.0).round() as u8;
        image::Rgb([px(1.0), px(0.95), px(0.9)])
    });
    (img, blobs.map(|(x, y, _)| (x, y)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heatmap_peaks_on_the_brightest_blob_and_tiles_do_not_show() {
    if !real_model_ready("heatmap-bright", "models-seed") {
        return;
    }
    let server = start_embedded(&real_models(), "heatmap-bright", &[]).await;
    let client = reqwest::Client::new();
    let base = server.url();
    let (scene, centres) = bright_scene();
    let job = run_job(&client, &base, "?model=heatmap-bright", png(&scene)).await;
    let r = &job["result"];
    assert_eq!(r["views"], json!(["colormap", "overlay"]), "{r}");
    let peaks = r["peaks"].as_array().expect("peaks");
    let (bx, by) = centres[2];
    let (px, py) = (
        peaks[0]["x"].as_f64().unwrap(),
        peaks[0]["y"].as_f64().unwrap(),
    );
    println!(
        "heatmap: {} peak(s), strongest at ({px}, {py}), blob at ({bx}, {by}); {r}",
        peaks.len()
    );
    assert!(
        (px - bx as f64).abs() <= 4.0 && (py - by as f64).abs() <= 4.0,
        "strongest peak at ({px}, {py}), brightest blob at ({bx}, {by})"
    );
    assert!(peaks.iter().all(|p| p["value"].as_f64().unwrap() >= 0.5));

    // The grey PNG is the values at the input's size; brightest blob hottest.
    let heat = output(&client, &base, &job, "").await;
    assert_eq!(heat.color(), image::ColorType::L8);
    let heat = heat.to_luma8();
    assert_eq!(heat.dimensions(), scene.dimensions());
    let at = |(x, y): (f32, f32)| heat.get_pixel(x as u32, y as u32).0[0];
    assert!(
        at(centres[2]) > at(centres[1]) && at(centres[1]) > at(centres[0]),
        "{:?}",
        centres.map(at)
    );
    for view in ["colormap", "overlay"] {
        let img = output(&client, &base, &job, &format!("?view={view}")).await;
        assert_eq!(img.color(), image::ColorType::Rgb8, "{view}");
        assert_eq!((img.width(), img.height()), scene.dimensions(), "{view}");
    }

    // 700 px wide runs as two 512-px tiles (seam at x = 512, right by the
    // brightest blob). A 500-px crop runs whole; where the crop gives the
    // model its full 9-px context, the two must agree.
    let crop = imageops::crop_imm(&scene, 200, 0, 500, 300).to_image();
    let whole = run_job(&client, &base, "?model=heatmap-bright", png(&crop)).await;
    let whole = output(&client, &base, &whole, "").await.to_luma8();
    let mut worst = 0u8;
    for y in 0..300 {
        for x in 220..700 {
            let d = heat.get_pixel(x, y).0[0].abs_diff(whole.get_pixel(x - 200, y).0[0]);
            worst = worst.max(d);
        }
    }
    println!("tiled vs whole: max difference {worst} grey levels");
    assert!(
        worst <= 1,
        "tiles differ from the whole image by {worst} levels"
    );

    // TF Serving's :predict answers with the same result, peaks included.
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(&scene));
    let resp = client
        .post(format!("{base}/v1/models/heatmap-bright:predict"))
        .json(&json!({"instances": [{"b64": b64}]}))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let p = &body["predictions"][0];
    assert_eq!(p["kind"], "image", "{body}");
    let got = &p["peaks"][0];
    assert_eq!(
        (&got["x"], &got["y"]),
        (&peaks[0]["x"], &peaks[0]["y"]),
        "{body}"
    );
    let value = |v: &Value| v["value"].as_f64().unwrap();
    assert!((value(got) - value(&peaks[0])).abs() < 1e-6, "{body}");

    // KServe v2 lists the peaks as a tensor beside the PNG bytes.
    let meta: Value = client
        .get(format!("{base}/v2/models/heatmap-bright"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = meta["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["image", "peaks", "peak_count"], "{meta}");
    let v2 = json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64]}],
        "outputs": [{"name": "peaks"}, {"name": "peak_count"}]});
    let resp = client
        .post(format!("{base}/v2/models/heatmap-bright/infer"))
        .json(&v2)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let out = &body["outputs"];
    assert_eq!(out[0]["name"], "peaks", "{body}");
    let count = peaks.len();
    assert_eq!(out[0]["shape"], json!([1, count, 3]), "{body}");
    assert_eq!(out[1]["data"], json!([count]), "{body}");
    let data = out[0]["data"].as_array().unwrap();
    assert_eq!(data[0].as_f64(), peaks[0]["x"].as_f64(), "{body}");
    assert_eq!(data[1].as_f64(), peaks[0]["y"].as_f64(), "{body}");
    server.stop().await;
}
