// Helpers for the console's browser tests: the embedded server on a free
// port, the model repository it serves, Chromium, a small PNG reader for
// checking pixels of screenshots (no image library needed), and a Y4M clip
// writer for Chromium's fake camera.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const OUT = path.join(ROOT, 'tests/output');
export const IMAGES = path.join(ROOT, 'tests/images');
export const BIN = process.env.INFERQ_BIN || path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target'), 'debug/inferq');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/**
 * A model repository of symlinks: the real classifier, pose and heatmap nets,
 * and the tiny test models. With `writable`, each model is a real directory
 * whose entries (versions, labels) are the symlinks, so that a server allowed
 * to register models writes new versions here, never into the source tree.
 */
export function modelRepository({ writable = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferq-console-models-'));
  const models = {
    'efficientnet-lite0': path.join(ROOT, 'models/efficientnet-lite0'),
    'tiny-pose': path.join(ROOT, 'tests/models/tiny-pose'),
    'tiny-multipose': path.join(ROOT, 'tests/models/tiny-multipose'),
    'tiny-detect': path.join(ROOT, 'tests/models/tiny-detect'),
    'tiny-invert': path.join(ROOT, 'tests/models/tiny-invert'),
    'heatmap-bright': path.join(ROOT, 'models/heatmap-bright'),
    'movenet-lightning': path.join(ROOT, 'models/movenet-lightning'),
  };
  for (const [name, target] of Object.entries(models)) {
    if (!fs.existsSync(path.join(target, '1/model.onnx'))) {
      throw new Error(`${target}/1/model.onnx is missing: run 'make assets' first`);
    }
    if (!writable) {
      fs.symlinkSync(target, path.join(dir, name));
      continue;
    }
    fs.mkdirSync(path.join(dir, name));
    for (const entry of fs.readdirSync(target)) fs.symlinkSync(path.join(target, entry), path.join(dir, name, entry));
  }
  return dir;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts `inferq` on a free port; resolves once /readyz answers 200. */
export async function startServer(name, modelDir, extra = []) {
  fs.mkdirSync(OUT, { recursive: true });
  const port = await freePort();
  const logPath = path.join(OUT, `inferq-${name}.log`);
  const log = fs.openSync(logPath, 'w');
  const args = [
    '--listen', `127.0.0.1:${port}`,
    '--model-dir', modelDir,
    '--default-model', 'efficientnet-lite0',
    '--model-poll-secs', '0',
    '--metrics-listen=',
    '--threads', '2',
    ...extra,
  ];
  const child = spawn(BIN, args, { stdio: ['ignore', log, log], env: process.env });
  let exited = null;
  child.once('exit', (code, signal) => (exited = { code, signal }));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) {
      throw new Error(`inferq exited (${JSON.stringify(exited)}) before it was ready:\n${fs.readFileSync(logPath, 'utf8').slice(-3000)}`);
    }
    try {
      const r = await fetch(`${url}/readyz`);
      if (r.ok) break;
    } catch (_) {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`inferq not ready after 60 s; log: ${logPath}`);
    }
    await sleep(100);
  }
  return {
    url,
    async stop() {
      if (exited) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
      fs.closeSync(log);
    },
  };
}

export function launchOptions() {
  return {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
  };
}

/** RGBA pixels of an 8-bit, non-interlaced PNG (what Chromium's screenshots are). */
export function decodePng(buf) {
  const sig = '89504e470d0a1a0a';
  if (buf.subarray(0, 8).toString('hex') !== sig) throw new Error('not a PNG');
  let off = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colour, , , interlace] = data.subarray(8, 13);
      channels = { 2: 3, 6: 4 }[colour];
      if (depth !== 8 || !channels || interlace) throw new Error(`unsupported PNG (depth ${depth}, colour ${colour}, interlace ${interlace})`);
    } else if (type === 'IDAT') {
      idat.push(data);
    }
    off += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const px = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? px[y * stride + x - channels] : 0;
      const b = y > 0 ? px[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? px[(y - 1) * stride + x - channels] : 0;
      let pred = 0;
      if (filter === 1) pred = a;
      else if (filter === 2) pred = b;
      else if (filter === 3) pred = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      px[y * stride + x] = (line[x] + pred) & 0xff;
    }
  }
  return {
    width,
    height,
    at(x, y) {
      const i = y * stride + x * channels;
      return [px[i], px[i + 1], px[i + 2]];
    },
  };
}

/**
 * Writes a Y4M clip (4:2:0, full-range BT.601 as in JPEG) for Chromium's
 * `--use-file-for-fake-video-capture`: the PNG at `pngPath`, `frames` times,
 * each shifted `step` pixels further to the right (edges repeated), so that
 * the camera shows a picture that moves. Chromium plays the file in a loop.
 */
export function writeY4m(pngPath, outPath, { frames = 8, fps = 15, step = 4 } = {}) {
  const png = decodePng(fs.readFileSync(pngPath));
  const w = png.width & ~1;
  const h = png.height & ~1;
  const parts = [Buffer.from(`YUV4MPEG2 W${w} H${h} F${fps}:1 Ip A1:1\n`, 'latin1')];
  for (let f = 0; f < frames; f++) {
    const shift = f * step;
    const y = Buffer.alloc(w * h);
    const u = Buffer.alloc((w / 2) * (h / 2));
    const v = Buffer.alloc((w / 2) * (h / 2));
    const clamp = (x) => Math.max(0, Math.min(255, Math.round(x)));
    for (let row = 0; row < h; row++) {
      for (let col = 0; col < w; col++) {
        const [r, g, b] = png.at(Math.max(0, col - shift), row);
        y[row * w + col] = clamp(0.299 * r + 0.587 * g + 0.114 * b);
        if (row % 2 === 0 && col % 2 === 0) {
          const i = (row / 2) * (w / 2) + col / 2;
          u[i] = clamp(128 - 0.168736 * r - 0.331264 * g + 0.5 * b);
          v[i] = clamp(128 + 0.5 * r - 0.418688 * g - 0.081312 * b);
        }
      }
    }
    parts.push(Buffer.from('FRAME\n', 'latin1'), y, u, v);
  }
  fs.mkdirSync(path.dirname(outPath), { recursive: true });
  fs.writeFileSync(outPath, Buffer.concat(parts));
  return { width: w, height: h, frames };
}

/** A new page of `browser` on `url` with `key` entered in the console's key
    dialog. Script errors and console errors go to `page.problems`, except
    failed loads whose status matches `expected` (the refusals a test
    provokes, which Chromium logs as errors). */
export async function openWithKey(browser, url, key, expected = /status of 40[01]/) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !expected.test(m.text())) page.problems.push('console: ' + m.text());
  });
  await page.goto(url);
  await page.waitForSelector('#key-dialog[open]', { timeout: 15_000 });
  await page.fill('#key-input', key);
  await page.click('#key-ok');
  await page.waitForSelector('#model:not([disabled])', { timeout: 30_000 });
  return page;
}

