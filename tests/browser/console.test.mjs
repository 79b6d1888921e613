// End-to-end test of the web console in a real headless browser: Debian's
// Chromium driven by playwright-core, against the embedded `inferq` server
// started here on a free port with the real classifier and the tiny test
// models. Run by scripts/browser-test.sh (which installs what is missing);
// screenshots and server logs go to tests/output/.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { IMAGES, OUT, decodePng, launchOptions, modelRepository, startServer } from './harness.mjs';

const CAT = path.join(IMAGES, 'chelsea.png'); // 451 x 300
// EfficientNet-Lite0's top classes for the cat photo (see tests/tests/real_model.rs).
const CAT_LABELS = ['tiger cat', 'Egyptian cat', 'tabby, tabby cat'];
const KEY = 'console-test-key-0123456789';

let browser;
let server;
let modelDir;

let pictures; // a local web server with the cat photo, for address inputs

before(async () => {
  modelDir = modelRepository();
  pictures = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'image/png' });
    res.end(fs.readFileSync(CAT));
  });
  await new Promise((resolve) => pictures.listen(0, '127.0.0.1', resolve));
  // The worker may fetch addresses on this machine only because we say so.
  server = await startServer('console', modelDir, ['--fetch-allow-hosts', '127.0.0.1']);
  browser = await chromium.launch(launchOptions());
});

after(async () => {
  await browser?.close();
  await server?.stop();
  pictures?.close();
  if (modelDir) fs.rmSync(modelDir, { recursive: true, force: true });
});

/** A page that records script errors and failed requests other than 401. */
async function openPage(url, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 401/.test(m.text())) page.problems.push('console: ' + m.text());
  });
  await page.goto(url);
  return page;
}

async function modelsLoaded(page) {
  await page.waitForSelector('#model:not([disabled])', { timeout: 30_000 });
}

/** Runs the chosen model on the chosen image; returns the job record shown. */
async function runJob(page, model, { keyboard = false } = {}) {
  await page.selectOption('#model', model);
  if (keyboard) {
    await page.focus('#run');
    await page.keyboard.press('Enter');
  } else {
    await page.click('#run');
  }
  await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('result').dataset.state), null, { timeout: 60_000 });
  const state = await page.getAttribute('#result', 'data-state');
  const status = await page.textContent('#job-status');
  assert.equal(state, 'done', `the ${model} job did not succeed: ${status}`);
  return JSON.parse(await page.textContent('#raw'));
}

/** Where each keypoint dot sits, as a fraction of the displayed image. */
function dotPositions(page) {
  return page.evaluate(() => {
    const img = document.getElementById('input-img').getBoundingClientRect();
    return [...document.querySelectorAll('#overlay circle.kp')].map((c) => {
      const r = c.getBoundingClientRect();
      const cx = r.x + r.width / 2;
      const cy = r.y + r.height / 2;
      return { name: c.dataset.name, cx, cy, fx: (cx - img.x) / img.width, fy: (cy - img.y) / img.height };
    });
  });
}

// tiny-pose puts its three points at fixed normalised spots; stretched back
// to the photo they are at these fractions of it.
const POSE = { head: [0.5, 0.25], left_hand: [0.25, 0.5], right_hand: [0.75, 0.75] };

function assertPose(dots) {
  assert.equal(dots.length, 3, JSON.stringify(dots));
  for (const d of dots) {
    const [fx, fy] = POSE[d.name];
    assert.ok(Math.abs(d.fx - fx) < 0.01 && Math.abs(d.fy - fy) < 0.01, `${d.name} drawn at ${d.fx},${d.fy}, expected ${fx},${fy}`);
  }
}

test('classifies the cat photo and shows the top label, timings and service numbers', async () => {
  const page = await openPage(server.url);
  await modelsLoaded(page);
  assert.equal(await page.inputValue('#model'), 'efficientnet-lite0', 'the default model is preselected');
  await page.setInputFiles('#file', CAT);
  assert.match(await page.textContent('#chosen'), /chelsea\.png/);
  const job = await runJob(page, 'efficientnet-lite0');

  const top = (await page.textContent('.bars li:first-child .label')).trim();
  assert.equal(top, job.result.top_k[0].label, 'the first bar is the API top-1');
  assert.ok(CAT_LABELS.includes(top), `cat photo shown as "${top}"`);
  assert.equal(await page.locator('.bars li').count(), 5);
  assert.ok((await page.textContent('#summary')).includes(`Top class: ${top},`), 'the summary names it');

  // Per-stage timings: queue, fetch, decode, preprocess, inference, other + total.
  assert.equal(await page.locator('#timings tbody tr').count(), 6);
  assert.match(await page.textContent('#timings tfoot'), /Total.*ms/s);
  const inference = await page.textContent('#timings tbody tr:nth-child(5) td:nth-child(3)');
  assert.equal(inference, job.timings.inference_ms.toFixed(2) + ' ms');

  // The live panel picks the job up from GET /v1/stats.
  await page.waitForFunction(() => {
    const row = document.querySelector('#live-table tr[data-model="efficientnet-lite0"]');
    return row && parseInt(row.cells[7].textContent, 10) >= 1 && row.cells[4].textContent.includes('ms');
  }, null, { timeout: 15_000 });
  assert.match(await page.textContent('#live-status'), /Updated/);

  fs.mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, 'console-cat.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
});

test('draws a pose over the image (keyboard only) and its pixels are there', async () => {
  const page = await openPage(server.url);
  await modelsLoaded(page);
  await page.setInputFiles('#file', CAT);
  const job = await runJob(page, 'tiny-pose', { keyboard: true });
  assert.equal(job.result.kind, 'keypoints');
  const dots = await dotPositions(page);
  assertPose(dots);
  assert.equal(await page.locator('#overlay line.bone').count(), 4, 'two skeleton edges, each outlined');
  assert.match(await page.textContent('#summary'), /3 keypoints found, joined by 2 skeleton lines/);

  // The head dot is filled yellow on screen, where the photo is not.
  const head = dots.find((d) => d.name === 'head');
  const shot = decodePng(await page.screenshot({ clip: { x: Math.round(head.cx) - 1, y: Math.round(head.cy) - 1, width: 3, height: 3 } }));
  const [r, g, b] = shot.at(1, 1);
  assert.ok(r > 220 && g > 170 && g < 240 && b < 60, `head pixel is rgb(${r},${g},${b}), not the dot's yellow`);
  await page.screenshot({ path: path.join(OUT, 'console-pose.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
});

test('draws every person of a multi-person model, each with its box and skeleton', async () => {
  const page = await openPage(server.url);
  await modelsLoaded(page);
  await page.setInputFiles('#file', CAT);
  const job = await runJob(page, 'tiny-multipose');
  assert.equal(job.result.persons.length, 2);
  const people = await page.$$eval('#overlay g.person', (gs) => gs.map((g) => ({
    person: g.dataset.person,
    dots: g.querySelectorAll('circle.kp').length,
    bones: g.querySelectorAll('line.bone').length,
    boxes: g.querySelectorAll('rect').length,
    label: g.querySelector('text') && g.querySelector('text').textContent,
  })));
  assert.deepEqual(people.map((p) => [p.person, p.dots, p.bones, p.boxes]), [['1', 3, 4, 1], ['2', 3, 4, 1]]);
  assert.match(people[0].label, /^person 1 80/);
  assert.match(await page.textContent('#summary'), /^2 people found/);
  assert.equal(await page.locator('#prediction table tbody tr').count(), 2, 'one row per person');
  assert.deepEqual(page.problems, []);
});

test('draws boxes for a detector and shows the output image of an image model', async () => {
  const page = await openPage(server.url);
  await modelsLoaded(page);
  await page.setInputFiles('#file', CAT);
  await runJob(page, 'tiny-detect');
  const labels = await page.$$eval('#overlay g.det', (gs) => gs.map((g) => g.dataset.label));
  assert.deepEqual(labels, ['dog', 'cat']);

  await runJob(page, 'tiny-invert');
  assert.equal(await page.locator('#overlay g.det').count(), 0, 'the previous drawing is cleared');
  await page.waitForFunction(() => {
    const img = document.getElementById('output-img');
    return !document.getElementById('output-figure').hidden && img.complete && img.naturalWidth === 32;
  }, null, { timeout: 10_000 });
  assert.deepEqual(page.problems, []);
});

test('shows a heatmap over the photo and marks its peak', async () => {
  const page = await openPage(server.url);
  await modelsLoaded(page);
  // A dark 240x160 picture with one bright spot at (180, 40), drawn by the browser itself.
  const dataUrl = await page.evaluate(() => {
    const c = document.createElement('canvas');
    c.width = 240;
    c.height = 160;
    const g = c.getContext('2d');
    g.fillStyle = 'rgb(50, 48, 46)';
    g.fillRect(0, 0, 240, 160);
    const spot = g.createRadialGradient(180, 40, 0, 180, 40, 14);
    spot.addColorStop(0, 'rgb(230, 225, 220)');
    spot.addColorStop(1, 'rgba(50, 48, 46, 0)');
    g.fillStyle = spot;
    g.fillRect(0, 0, 240, 160);
    return c.toDataURL('image/png');
  });
  await page.setInputFiles('#file', { name: 'spot.png', mimeType: 'image/png', buffer: Buffer.from(dataUrl.split(',')[1], 'base64') });
  const job = await runJob(page, 'heatmap-bright');
  assert.ok(job.result.peaks.length >= 1, JSON.stringify(job.result));
  await page.waitForFunction(() => {
    const img = document.getElementById('output-img');
    return !document.getElementById('output-figure').hidden && img.complete && img.naturalWidth === 240;
  }, null, { timeout: 10_000 });
  assert.match(await page.getAttribute('#output-img', 'alt'), /^The heatmap over the input/);
  const rings = await page.evaluate(() => {
    const img = document.getElementById('input-img').getBoundingClientRect();
    return [...document.querySelectorAll('#overlay circle.peak')].map((c) => {
      const r = c.getBoundingClientRect();
      return { fx: (r.x + r.width / 2 - img.x) / img.width, fy: (r.y + r.height / 2 - img.y) / img.height };
    });
  });
  assert.equal(rings.length, job.result.peaks.length);
  assert.ok(Math.abs(rings[0].fx - 0.75) < 0.03 && Math.abs(rings[0].fy - 0.25) < 0.03, JSON.stringify(rings));
  assert.deepEqual(page.problems, []);
});

test('takes a pasted image, a dropped one and an address', async () => {
  const page = await openPage(server.url);
  await modelsLoaded(page);
  const b64 = fs.readFileSync(CAT).toString('base64');
  const give = (how, target) =>
    page.evaluate(([how, data, target]) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], how + '.png', { type: 'image/png' }));
      const init = { bubbles: true, cancelable: true };
      const event = how === 'pasted' ? new ClipboardEvent('paste', { ...init, clipboardData: dt }) : new DragEvent('drop', { ...init, dataTransfer: dt });
      document.querySelector(target).dispatchEvent(event);
    }, [how, b64, target]);

  await give('pasted', 'body');
  assert.match(await page.textContent('#chosen'), /^Pasted: pasted\.png/);
  await runJob(page, 'tiny-pose');
  assertPose(await dotPositions(page));

  await give('dropped', '#drop');
  assert.match(await page.textContent('#chosen'), /^Dropped: dropped\.png/);
  const job = await runJob(page, 'tiny-pose');
  assert.equal(job.input.encoding, 'raw');
  assertPose(await dotPositions(page));

  const address = `http://127.0.0.1:${pictures.address().port}/chelsea.png`;
  await page.fill('#url', address);
  assert.equal(await page.textContent('#chosen'), '', 'the address replaces the file');
  const fetched = await runJob(page, 'tiny-pose');
  assert.equal(fetched.input.uri, address);
  assertPose(await dotPositions(page));
  assert.deepEqual(page.problems, []);
});

test('fits a phone screen', async () => {
  const page = await openPage(server.url, { width: 390, height: 844 });
  await modelsLoaded(page);
  await page.setInputFiles('#file', CAT);
  await runJob(page, 'tiny-pose');
  assertPose(await dotPositions(page));
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px`);
  // Every form control has a label.
  const unlabelled = await page.$$eval('input:not([type=hidden]), select', (els) => els.filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id));
  assert.deepEqual(unlabelled, []);
  await page.screenshot({ path: path.join(OUT, 'console-phone.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
});

test('asks for an API key when the server needs one and keeps it for the tab only', async () => {
  const keyed = await startServer('console-auth', modelDir, ['--auth', 'true', '--api-keys', `console:submit+read:${KEY}`]);
  try {
    const page = await openPage(keyed.url);
    // The page itself loads without a key; its first API call gets 401.
    await page.waitForSelector('#key-dialog[open]', { timeout: 15_000 });
    await page.fill('#key-input', 'not-the-right-key-000000');
    await page.click('#key-ok');
    await page.waitForFunction(() => document.getElementById('key-reason').textContent.includes('did not accept'), null, { timeout: 15_000 });
    await page.fill('#key-input', KEY);
    await page.click('#key-ok');
    await modelsLoaded(page);
    await page.setInputFiles('#file', CAT);
    await runJob(page, 'tiny-pose');
    assertPose(await dotPositions(page));
    const stored = await page.evaluate(() => ({ session: sessionStorage.getItem('inferq.apiKey'), local: localStorage.length }));
    assert.deepEqual(stored, { session: KEY, local: 0 });
    await page.waitForSelector('#live-table tr[data-model="tiny-pose"]', { timeout: 15_000 });
    assert.equal(await page.isVisible('#key-button'), true);
    assert.deepEqual(page.problems, []);
  } finally {
    await keyed.stop();
  }
});
