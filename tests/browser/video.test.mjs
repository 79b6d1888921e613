// A video clip as one job in the console's "Image or clip" mode, in headless
// Chromium against the embedded `inferq` server with API keys on (so the
// frames document and the output video must be fetched with the key). The
// clips are made here with FFmpeg from its test pattern and the committed
// astronaut photo; a "video" of random bytes behind a real `ftyp` box is the
// broken one. Every number checked comes from the server: the job record and
// the frames document, read again here with the key.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { IMAGES, OUT, launchOptions, modelRepository, openWithKey, startServer } from './harness.mjs';

const PERSON = path.join(IMAGES, 'astronaut.png'); // 512 x 512
const KEY = 'console-video-key-0123456789';

let browser;
let server;
let modelDir;
let clips; // directory of the generated clips

function ffmpeg(...args) {
  execFileSync('ffmpeg', ['-v', 'error', '-y', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
}

before(async () => {
  modelDir = modelRepository();
  clips = fs.mkdtempSync(path.join(os.tmpdir(), 'inferq-console-clips-'));
  // 3 s of FFmpeg's moving test pattern at 10 frames/s: 30 frames.
  ffmpeg('-f', 'lavfi', '-i', 'testsrc=size=128x96:rate=10', '-t', '3', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', path.join(clips, 'pattern.mp4'));
  // The photo held for 3 s at 2 frames/s (6 frames), and for 100 s at 10 (1000 frames).
  ffmpeg('-loop', '1', '-framerate', '2', '-i', PERSON, '-t', '3', '-vf', 'scale=224:224', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', path.join(clips, 'astronaut.mp4'));
  ffmpeg('-loop', '1', '-framerate', '10', '-i', PERSON, '-t', '100', '-vf', 'scale=160:160', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-preset', 'veryfast', path.join(clips, 'long.mp4'));
  server = await startServer('console-video', modelDir, ['--auth', 'true', '--api-keys', `console:submit+read:${KEY}`]);
  browser = await chromium.launch(launchOptions());
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (modelDir) fs.rmSync(modelDir, { recursive: true, force: true });
  if (clips) fs.rmSync(clips, { recursive: true, force: true });
});

/** A page with the key entered; records script errors (the 401 before the
    key and the 400s this test provokes are expected failed loads) and the
    job submissions it sends. */
async function openPage() {
  const page = await openWithKey(browser, server.url, KEY);
  page.submissions = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/jobs') page.submissions.push({ url: new URL(r.url()), type: r.headers()['content-type'] });
  });
  return page;
}

/** GET with the key, from the test itself. */
async function get(pathname) {
  const r = await fetch(server.url + pathname, { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(r.status, 200, `${pathname}: ${r.status}`);
  return r;
}

async function framesDocument(id) {
  const text = await (await get(`/v1/jobs/${id}/frames`)).text();
  return text.trim().split('\n').map((l) => JSON.parse(l));
}

/** Waits for the job shown to be final; returns its record and the page's state. */
async function finished(page) {
  await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('result').dataset.state), null, { timeout: 120_000 });
  return { job: JSON.parse(await page.textContent('#raw')), state: await page.getAttribute('#result', 'data-state') };
}

/** The progress bar as shown. */
function bar(page) {
  return page.evaluate(() => {
    const b = document.getElementById('frames-bar');
    return {
      visible: !document.getElementById('video-progress').hidden,
      value: b.value,
      max: b.max,
      done: Number(b.dataset.done),
      total: Number(b.dataset.total),
      text: document.getElementById('frames-count').textContent,
    };
  });
}

/** The per-frame table as shown: one array of cell texts per row. */
function frameRows(page) {
  return page.$$eval('#frames tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
}

test('runs a clip as one video job on an image model: progress, per-frame table and a playable output video', async () => {
  const page = await openPage();
  await page.selectOption('#model', 'tiny-invert');
  assert.equal(await page.isVisible('#video-options'), false, 'no frame options for an image');
  await page.setInputFiles('#file', path.join(clips, 'pattern.mp4'));
  assert.match(await page.textContent('#chosen'), /^Chosen: pattern\.mp4/);
  assert.equal(await page.isVisible('#video-options'), true, 'a clip shows its frame options');
  await page.fill('#fps', '5');
  await page.fill('#max-frames', '12');
  await page.click('#run');
  const { job, state } = await finished(page);
  assert.equal(state, 'done', await page.textContent('#job-status'));

  // One raw submission with the clip's type and both options.
  assert.equal(page.submissions.length, 1);
  const sent = page.submissions[0];
  assert.equal(sent.type, 'video/mp4');
  assert.equal(sent.url.searchParams.get('fps'), '5');
  assert.equal(sent.url.searchParams.get('max_frames'), '12');

  // 3 s sampled at 5 frames/s is 15 frames; the first 12 ran.
  assert.equal(job.input.format, 'mp4');
  assert.equal(job.result.kind, 'video');
  assert.equal(job.result.frames, 12);
  assert.equal(job.result.fps, 5);
  assert.deepEqual(job.progress, { frames_done: 12, frames_total: 12 });
  assert.deepEqual(await bar(page), { visible: true, value: 12, max: 12, done: 12, total: 12, text: '12 / 12' });

  // The table has one row per frame run, as the frames document says.
  const doc = await framesDocument(job.id);
  assert.equal(doc.length, job.result.frames);
  const rows = await frameRows(page);
  assert.equal(rows.length, doc.length);
  assert.equal(await page.getAttribute('#frames', 'data-frames'), String(doc.length));
  rows.forEach((cells, i) => {
    const f = doc[i];
    assert.deepEqual(cells, [String(f.frame), f.time.toFixed(2) + ' s', `${f.result.width} × ${f.result.height}`]);
  });

  // The output video, fetched with the key, plays in the page.
  assert.equal(job.result.output.content_type, 'video/mp4');
  await page.waitForFunction(() => {
    const v = document.getElementById('output-video');
    return !document.getElementById('output-figure').hidden && !v.hidden && v.readyState >= 1 && v.duration > 0;
  }, null, { timeout: 20_000 });
  const played = await page.evaluate(() => {
    const v = document.getElementById('output-video');
    return { src: v.currentSrc, w: v.videoWidth, h: v.videoHeight, duration: v.duration, img: document.getElementById('output-img').hidden };
  });
  assert.match(played.src, /^blob:/, 'a bare src could not send the key');
  assert.equal(played.w, job.result.output.width);
  assert.equal(played.h, job.result.output.height);
  assert.ok(Math.abs(played.duration - job.result.frames / job.result.fps) < 0.5, `plays ${played.duration} s`);
  assert.equal(played.img, true, 'no output image beside the video');
  // The clip itself plays on the left.
  assert.equal(await page.isVisible('#input-video'), true);
  assert.equal(await page.isVisible('#input-img'), false);

  // Summary and timings from the record.
  const summary = await page.textContent('#summary');
  assert.ok(summary.startsWith(`12 frames of ${job.result.width} × ${job.result.height} at 5 frames/s`), summary);
  assert.match(summary, /output video is shown/);
  assert.equal(await page.locator('#timings tbody tr').count(), 6);
  assert.equal(await page.textContent('#timings tbody tr:nth-child(5) td:nth-child(3)'), job.timings.inference_ms.toFixed(2) + ' ms');
  await page.screenshot({ path: path.join(OUT, 'console-video.png'), fullPage: true });

  // An image afterwards is an image again: no frame options, no video.
  await page.setInputFiles('#file', PERSON);
  assert.equal(await page.isVisible('#video-options'), false);
  await page.click('#run');
  const still = await finished(page);
  assert.equal(still.state, 'done');
  assert.equal(still.job.result.kind, 'image');
  assert.equal(await page.isVisible('#video-progress'), false);
  assert.equal(await page.isVisible('#input-video'), false);
  assert.equal(await page.isVisible('#output-video'), false);
  assert.equal(await page.locator('#frames').count(), 0);
  assert.deepEqual(page.problems, []);
});

test('a classifier clip lists each frame’s top class; a long one shows its progress and can be cancelled', async () => {
  const page = await openPage();
  await page.selectOption('#model', 'efficientnet-lite0');
  await page.setInputFiles('#file', path.join(clips, 'astronaut.mp4'));
  await page.click('#run');
  const { job, state } = await finished(page);
  assert.equal(state, 'done', await page.textContent('#job-status'));
  assert.equal(job.result.frame_kind, 'classification');
  assert.equal(job.result.frames, 6, 'every frame of the clip at its own rate');
  assert.equal(job.result.output, undefined, 'a classifier makes no output video');
  const doc = await framesDocument(job.id);
  const rows = await frameRows(page);
  assert.equal(rows.length, 6);
  rows.forEach((cells, i) => {
    const top = doc[i].result.top_k[0];
    assert.equal(cells[0], String(doc[i].frame));
    assert.equal(cells[2], top.label);
    assert.match(cells[3], / %$/);
  });
  assert.equal(await page.isVisible('#output-figure'), false);
  assert.match(await page.textContent('#summary'), new RegExp(`most often ${doc[0].result.top_k[0].label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(\\d of 6 frames\\)`));

  // 1000 frames: the bar moves while the job runs, and Cancel stops it.
  await page.setInputFiles('#file', path.join(clips, 'long.mp4'));
  await page.fill('#max-frames', '1000');
  await page.click('#run');
  await page.waitForFunction(() => {
    const b = document.getElementById('frames-bar');
    return document.getElementById('result').dataset.state === 'running' && !document.getElementById('video-progress').hidden
      && Number(b.dataset.done) > 0 && Number(b.dataset.done) < Number(b.dataset.total);
  }, null, { timeout: 60_000 });
  const midway = await bar(page);
  assert.equal(midway.total, 1000);
  assert.equal(midway.value, midway.done);
  assert.match(await page.textContent('#job-status'), new RegExp(`running, ${midway.done} of 1000 frames`));
  await page.click('#cancel');
  const canceled = await finished(page);
  assert.equal(canceled.state, 'error');
  assert.equal(canceled.job.status, 'canceled');
  assert.match(await page.textContent('#summary'), /^The job ended canceled/);
  const record = await (await get(`/v1/jobs/${canceled.job.id}`)).json();
  assert.equal(record.status, 'canceled');
  assert.ok(!record.progress || record.progress.frames_done < 1000, JSON.stringify(record.progress));
  assert.deepEqual(page.problems, []);
});

test('refuses bad frame options in the page and shows the server’s refusals and a broken clip inline', async () => {
  const page = await openPage();
  await page.selectOption('#model', 'tiny-invert');
  const good = path.join(clips, 'pattern.mp4');
  await page.setInputFiles('#file', good);

  // Refused before anything is sent.
  for (const [field, value, message] of [
    ['#max-frames', '0', /^Most frames must be a whole number, at least 1/],
    ['#max-frames', '2.5', /^Most frames must be a whole number, at least 1/],
    ['#fps', '0', /^Frames per second must be a number above 0/],
    ['#fps', '-3', /^Frames per second must be a number above 0/],
  ]) {
    await page.fill('#fps', '');
    await page.fill('#max-frames', '');
    await page.fill(field, value);
    await page.click('#run');
    assert.match(await page.textContent('#job-status'), message, `${field} = ${value}`);
    assert.equal(await page.getAttribute('#job-status', 'class'), 'status error');
  }
  assert.equal(page.submissions.length, 0, 'nothing was sent');

  // Above the server's limit (the page leaves upper limits to it): its 400, inline.
  await page.fill('#fps', '1000');
  await page.fill('#max-frames', '');
  await page.click('#run');
  await page.waitForFunction(() => document.getElementById('result').dataset.state === 'error');
  assert.match(await page.textContent('#job-status'), /^invalid_argument: `fps` must be above 0 and at most 240/);
  assert.equal(await page.getAttribute('#job-status', 'class'), 'status error');
  assert.equal(page.submissions.length, 1);

  // Random bytes behind the clip's real `ftyp` box: accepted as an MP4, the decoder fails.
  const bytes = fs.readFileSync(good);
  const ftyp = bytes.readUInt32BE(0);
  assert.equal(bytes.toString('latin1', 4, 8), 'ftyp');
  const broken = Buffer.concat([bytes.subarray(0, ftyp), crypto.randomBytes(50_000)]);
  await page.setInputFiles('#file', { name: 'broken.mp4', mimeType: 'video/mp4', buffer: broken });
  await page.fill('#fps', '');
  await page.click('#run');
  const { job, state } = await finished(page);
  assert.equal(state, 'error');
  assert.equal(job.status, 'failed');
  assert.equal(job.error.code, 'video_decode_failed');
  const summary = await page.textContent('#summary');
  assert.ok(summary.startsWith('The job ended failed. video_decode_failed: ' + job.error.message.slice(0, 40)), summary);
  assert.equal(await page.getAttribute('#summary', 'class'), 'summary error');
  assert.equal(await page.isVisible('#output-video'), false);
  assert.equal(page.submissions.at(-1).type, 'video/mp4');
  assert.deepEqual(page.problems, []);
});
