// The console's Camera and Video file modes in headless Chromium, against
// the embedded `inferq` server with the real MoveNet pose model. The camera
// is Chromium's fake one, fed a Y4M clip written here from the committed
// astronaut photo (tests/images); the video file is recorded in the page
// itself (MediaRecorder) from the same photo. Nothing is downloaded.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { IMAGES, OUT, launchOptions, modelRepository, startServer, writeY4m } from './harness.mjs';

const PERSON = path.join(IMAGES, 'astronaut.png'); // 512 x 512, one person
const CLIP = path.join(OUT, 'fake-camera.y4m');

let browser;
let server;
let modelDir;

before(async () => {
  modelDir = modelRepository();
  writeY4m(PERSON, CLIP, { frames: 8, fps: 15, step: 4 });
  server = await startServer('console-stream', modelDir);
  const options = launchOptions();
  options.args.push('--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', `--use-file-for-fake-video-capture=${CLIP}`,
    '--autoplay-policy=no-user-gesture-required');
  browser = await chromium.launch(options);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (modelDir) fs.rmSync(modelDir, { recursive: true, force: true });
});

async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push('page error: ' + e.message));
  page.on('console', (m) => m.type() === 'error' && page.problems.push('console: ' + m.text()));
  await page.goto(server.url);
  await page.waitForSelector('#model:not([disabled])', { timeout: 30_000 });
  return page;
}

/** Waits until `n` answers are drawn; returns the panel's figures. */
async function streamUntil(page, n) {
  await page.waitForFunction((n) => Number(document.getElementById('stream').dataset.drawn) >= n, n, { timeout: 120_000 });
  return page.evaluate(() => {
    const t = (id) => document.getElementById(id).textContent;
    return {
      fps: t('m-fps'), p50: t('m-p50'), p95: t('m-p95'), p99: t('m-p99'),
      sent: Number(t('m-sent')), drawn: Number(t('m-drawn')), failed: Number(t('m-failed')),
      peak: Number(document.getElementById('stream').dataset.peakInflight),
      kind: document.getElementById('stream').dataset.kind,
      dots: document.querySelectorAll('#stream-overlay circle.kp').length,
      bones: document.querySelectorAll('#stream-overlay line.bone').length,
      stages: document.querySelectorAll('#stream-timings tbody tr').length,
      total: document.querySelector('#stream-timings tfoot') && document.querySelector('#stream-timings tfoot').textContent,
    };
  });
}

function assertFigures(f, maxInFlight) {
  assert.equal(f.kind, 'keypoints');
  assert.ok(f.dots >= 10, `${f.dots} keypoints drawn over the picture; MoveNet finds most of 17 on this photo`);
  assert.ok(f.bones > 0, 'the skeleton is drawn');
  for (const p of [f.p50, f.p95, f.p99]) assert.match(p, /^\d+(\.\d)? ms$/, JSON.stringify(f));
  assert.ok(Number(f.fps) > 0, JSON.stringify(f));
  assert.equal(f.stages, 6, 'stage timings of the last frame');
  assert.match(f.total, /Total.*ms/s);
  assert.equal(f.failed, 0, JSON.stringify(f));
  assert.ok(f.peak >= 1 && f.peak <= maxInFlight, `at most ${maxInFlight} frames in flight, saw ${f.peak}`);
}

test('the camera mode sends frames as jobs and draws the pose over the live picture', async (t) => {
  const page = await openPage();
  await page.selectOption('#model', 'movenet-lightning');
  await page.check('input[name="mode"][value="camera"]');
  assert.equal(await page.isVisible('#stream'), true);
  assert.equal(await page.isVisible('#drop'), false, 'the image controls give way');
  assert.equal(await page.inputValue('#max-inflight'), '2', 'two frames in flight by default');
  await page.click('#stream-start');
  const f = await streamUntil(page, 20);
  t.diagnostic(`2 in flight: ${f.drawn} drawn of ${f.sent} sent, ${f.fps} frames/s, p50 ${f.p50}, p95 ${f.p95}, p99 ${f.p99}`);
  assertFigures(f, 2);
  // The video shows the fake camera's picture.
  const video = await page.evaluate(() => {
    const v = document.getElementById('stream-video');
    return { w: v.videoWidth, h: v.videoHeight, playing: !v.paused };
  });
  assert.ok(video.w > 0 && video.w === video.h && video.playing, JSON.stringify(video));
  await page.screenshot({ path: path.join(OUT, 'console-camera.png'), fullPage: true });

  // One frame in flight: the limit holds, and the stream goes on.
  await page.click('#stream-stop');
  assert.match(await page.textContent('#stream-status'), /Stopped after \d+ frames drawn/);
  await page.fill('#max-inflight', '1');
  await page.click('#stream-start');
  const single = await streamUntil(page, 10);
  t.diagnostic(`1 in flight: ${single.drawn} drawn of ${single.sent} sent, ${single.fps} frames/s, p50 ${single.p50}, p95 ${single.p95}, p99 ${single.p99}`);
  assertFigures(single, 1);
  await page.click('#stream-stop');

  // An image-to-image model: its output image for the newest frame is shown.
  await page.selectOption('#model', 'tiny-invert');
  await page.click('#stream-start');
  const inverted = await streamUntil(page, 5);
  assert.equal(inverted.kind, 'image');
  assert.equal(inverted.dots, 0, 'the pose of the previous model is gone');
  await page.waitForFunction(() => {
    const img = document.getElementById('stream-output-img');
    return !document.getElementById('stream-output-figure').hidden && img.complete && img.naturalWidth === 32;
  }, null, { timeout: 10_000 });
  await page.click('#stream-stop');

  // Back to the Image mode: the camera is released.
  await page.check('input[name="mode"][value="image"]');
  assert.equal(await page.isVisible('#drop'), true);
  assert.equal(await page.isVisible('#stream'), false);
  assert.equal(await page.evaluate(() => document.getElementById('stream-video').srcObject), null);
  assert.deepEqual(page.problems, []);
});

test('the video file mode plays a local clip and draws the pose frame by frame', async () => {
  const page = await openPage();
  await page.selectOption('#model', 'movenet-lightning');
  await page.check('input[name="mode"][value="video"]');
  assert.equal(await page.isVisible('#video-file'), true);
  // A 3 s WebM recorded in the page from the photo, drifting sideways.
  const b64 = fs.readFileSync(PERSON).toString('base64');
  const size = await page.evaluate(async (b64) => {
    const img = new Image();
    img.src = 'data:image/png;base64,' + b64;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = 320;
    c.height = 320;
    const g = c.getContext('2d');
    const rec = new MediaRecorder(c.captureStream(15), { mimeType: 'video/webm' });
    const chunks = [];
    rec.ondataavailable = (e) => chunks.push(e.data);
    const done = new Promise((r) => (rec.onstop = r));
    rec.start(250);
    const t0 = performance.now();
    await new Promise((resolve) => {
      const paint = () => {
        const dt = performance.now() - t0;
        g.fillStyle = '#808080';
        g.fillRect(0, 0, 320, 320);
        g.drawImage(img, (dt / 3000) * 20, 0, 320, 320);
        if (dt < 3000) setTimeout(paint, 40);
        else resolve();
      };
      paint();
    });
    rec.stop();
    await done;
    const file = new File(chunks, 'clip.webm', { type: 'video/webm' });
    const dt = new DataTransfer();
    dt.items.add(file);
    const input = document.getElementById('video-file');
    input.files = dt.files;
    input.dispatchEvent(new Event('change', { bubbles: true }));
    return file.size;
  }, b64);
  assert.ok(size > 1000, `recorded ${size} bytes`);
  assert.match(await page.textContent('#stream-status'), /Chosen: clip\.webm/);
  await page.click('#stream-start');
  const f = await streamUntil(page, 12);
  assertFigures(f, 2);
  await page.click('#stream-stop');
  assert.deepEqual(page.problems, []);
});
