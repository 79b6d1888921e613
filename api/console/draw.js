/* InferQ console: drawing a job's result.
 *
 * One function per output kind turns the `result` of a job record into
 * something to look at: top-k bars for classifiers, keypoints and skeleton
 * over the image for pose models, boxes and labels for detectors, the output
 * image beside the input for image-to-image models. Positions in results are
 * already in the original image's pixels (the server undoes the model's
 * resizing), so the overlay is an SVG whose viewBox is the image's own size,
 * laid exactly over the <img>. Every drawing also has a text form (a list or
 * table) for screen readers and for copying numbers. A video job (one clip,
 * one job) gets its output video in a player and a short per-frame table read
 * from its frames document (JSON Lines). Nothing from the server is ever
 * parsed as HTML: text goes in through textContent only.
 */
(function () {
  'use strict';
  const InferQ = (window.InferQ = window.InferQ || {});
  const SVG = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#ffb000', '#00c2ff', '#ff4f9a', '#7cff5b', '#b28cff', '#ff7a45', '#00e0b8'];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      // Through the CSSOM: the page's CSP refuses inline style attributes.
      if (k === 'style') node.style.cssText = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : String(c));
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  const pct = (p) => (100 * p).toFixed(p >= 0.995 || p < 0.0005 ? 0 : 1) + ' %';
  const num = (v, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : '–');
  const count = (n, one, many = one + 's') => n + ' ' + (n === 1 ? one : many);
  const FRAME_ROWS = 30; // rows of a video job's per-frame table; the rest are counted

  function table(caption, head, rows) {
    const cls = (h) => (h.num ? 'num' : h.cls || null);
    const thead = el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { scope: 'col', class: cls(h) }, h.text))));
    const tbody = el('tbody');
    for (const r of rows) tbody.append(el('tr', {}, ...r.map((c, i) => el('td', { class: cls(head[i]) }, c))));
    const t = el('table', {}, el('caption', { class: 'visually-hidden' }, caption), thead, tbody);
    return el('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption }, t);
  }

  /* Top-k classes as labelled bars, most likely first. */
  function classification(result, out) {
    const list = el('ol', { class: 'bars', 'aria-label': 'Most likely classes' });
    for (const c of result.top_k) {
      const label = c.label || 'class ' + c.index;
      const width = Math.max(0, Math.min(100, 100 * c.probability));
      list.append(
        el('li', { 'data-label': label },
          el('div', { class: 'name' }, el('span', { class: 'label' }, label), el('span', { class: 'pct' }, pct(c.probability))),
          el('div', { class: 'track', 'aria-hidden': 'true' }, el('div', { class: 'fill', style: 'width:' + width.toFixed(2) + '%' })))
      );
    }
    out.prediction.append(list);
    const top = result.top_k[0];
    return top ? 'Top class: ' + (top.label || 'class ' + top.index) + ', ' + pct(top.probability) + '.' : 'No classes returned.';
  }

  function scale(w, h) {
    const s = Math.max(w, h);
    return { r: Math.max(3, s / 90), stroke: Math.max(1.5, s / 260), font: Math.max(11, s / 32) };
  }

  /* One pose: dots joined by the skeleton's edges, in `colour`. Edges name
     keypoints by their index in the manifest; points below the threshold
     are missing from the list, so they are looked up by name order. */
  function pose(g, points, skeleton, names, colour, k) {
    const byName = new Map(points.map((p) => [p.name, p]));
    const at = (i) => (names ? byName.get(names[i]) : points[i]);
    for (const [a, b] of skeleton || []) {
      const p = at(a);
      const q = at(b);
      if (!p || !q) continue;
      // A dark line under a bright one reads on light and dark pictures.
      for (const [stroke, width] of [['#000000', k.stroke * 2.6], [colour, k.stroke * 1.4]]) {
        g.append(svg('line', { class: 'bone', x1: p.x, y1: p.y, x2: q.x, y2: q.y, stroke, 'stroke-width': width, 'stroke-linecap': 'round', 'stroke-opacity': stroke === '#000000' ? 0.6 : 1 }));
      }
    }
    for (const p of points) {
      const strong = p.score >= 0.3;
      const dot = svg('circle', { class: 'kp', 'data-name': p.name, cx: p.x, cy: p.y, r: k.r, fill: strong ? '#ffcc00' : 'none', stroke: strong ? '#000000' : '#ffcc00', 'stroke-width': k.stroke });
      const tip = svg('title', {});
      tip.textContent = p.name + ' (' + pct(p.score) + ')';
      dot.append(tip);
      g.append(dot);
    }
  }

  /* Keypoints as dots joined by the skeleton; with several people (a
     multi-person model) each in its own colour, with its box and score. */
  function keypoints(result, out, w, h) {
    const k = scale(w, h);
    const g = svg('g', { class: 'pose' });
    const edges = (result.skeleton || []).length;
    if (!result.persons) {
      const points = result.keypoints;
      pose(g, points, result.skeleton, null, '#00e5ff', k);
      out.overlay.append(g);
      out.prediction.append(table('Keypoints in image pixels', [{ text: 'Keypoint' }, { text: 'x', num: 1 }, { text: 'y', num: 1 }, { text: 'Score', num: 1 }],
        points.map((p) => [p.name, num(p.x), num(p.y), pct(p.score)])));
      return points.length + ' keypoints found' + (edges ? ', joined by ' + edges + ' skeleton lines' : '') + ', drawn over the image.';
    }
    // The skeleton indexes the manifest's names; the first person's full
    // list is the best guide to them when points were dropped.
    const names = result.persons.reduce((best, p) => (p.keypoints.length > best.length ? p.keypoints.map((q) => q.name) : best), []);
    const rows = [];
    result.persons.forEach((person, i) => {
      const colour = PALETTE[i % PALETTE.length];
      const one = svg('g', { class: 'person', 'data-person': String(i + 1) });
      const b = person.box;
      if (b) {
        one.append(svg('rect', { x: b.x1, y: b.y1, width: Math.max(0, b.x2 - b.x1), height: Math.max(0, b.y2 - b.y1), fill: 'none', stroke: colour, 'stroke-width': k.stroke * 1.4, 'stroke-dasharray': k.stroke * 4 }));
        const label = svg('text', { x: b.x1 + k.stroke, y: b.y1 > k.font * 1.3 ? b.y1 - k.font * 0.35 : b.y1 + k.font * 1.05, 'font-size': k.font, 'font-family': 'system-ui, sans-serif', 'font-weight': 700, fill: colour, stroke: '#000000', 'stroke-width': k.font / 8, 'paint-order': 'stroke' });
        label.textContent = 'person ' + (i + 1) + ' ' + pct(person.score);
        one.append(label);
      }
      pose(one, person.keypoints, result.skeleton, names.length ? names : null, colour, k);
      g.append(one);
      rows.push(['person ' + (i + 1), pct(person.score), person.keypoints.length, b ? num(b.x1) + ', ' + num(b.y1) + ' – ' + num(b.x2) + ', ' + num(b.y2) : '—']);
    });
    out.overlay.append(g);
    out.prediction.append(table('People found, boxes in image pixels', [{ text: 'Person' }, { text: 'Score', num: 1 }, { text: 'Keypoints', num: 1 }, { text: 'Box' }], rows));
    const n = result.persons.length;
    return n + (n === 1 ? ' person' : ' people') + ' found, each with ' + (edges ? 'its skeleton' : 'its keypoints') + ' drawn over the image.';
  }

  /* Boxes with their label and score. */
  function detection(result, out, w, h) {
    const k = scale(w, h);
    const g = svg('g', { class: 'boxes' });
    for (const d of result.detections) {
      const b = d.box;
      const colour = PALETTE[d.class % PALETTE.length];
      const text = (d.label || 'class ' + d.class) + ' ' + pct(d.score);
      const bw = Math.max(0, b.x2 - b.x1);
      const bh = Math.max(0, b.y2 - b.y1);
      const box = svg('g', { class: 'det', 'data-label': d.label || String(d.class) });
      box.append(svg('rect', { x: b.x1, y: b.y1, width: bw, height: bh, fill: 'none', stroke: '#000000', 'stroke-opacity': 0.6, 'stroke-width': k.stroke * 2.6 }));
      box.append(svg('rect', { x: b.x1, y: b.y1, width: bw, height: bh, fill: 'none', stroke: colour, 'stroke-width': k.stroke * 1.4 }));
      const ty = b.y1 > k.font * 1.3 ? b.y1 - k.font * 0.35 : b.y1 + k.font * 1.05;
      const label = svg('text', { x: b.x1 + k.stroke, y: ty, 'font-size': k.font, 'font-family': 'system-ui, sans-serif', 'font-weight': 700, fill: colour, stroke: '#000000', 'stroke-width': k.font / 8, 'paint-order': 'stroke' });
      label.textContent = text;
      box.append(label);
      g.append(box);
    }
    out.overlay.append(g);
    out.prediction.append(table('Detected objects, boxes in image pixels', [{ text: 'Object' }, { text: 'Score', num: 1 }, { text: 'x1', num: 1 }, { text: 'y1', num: 1 }, { text: 'x2', num: 1 }, { text: 'y2', num: 1 }],
      result.detections.map((d) => [d.label || 'class ' + d.class, pct(d.score), num(d.box.x1), num(d.box.y1), num(d.box.x2), num(d.box.y2)])));
    const n = result.detections.length;
    if (!n) return 'No objects detected.';
    return n + (n === 1 ? ' object: ' : ' objects: ') + result.detections.slice(0, 5).map((d) => (d.label || 'class ' + d.class) + ' ' + pct(d.score)).join(', ') + '.';
  }

  /* The output image, fetched with the key, beside the input. */
  /* An output image beside the input. A heatmap (one channel) is shown as
     its overlay on the photo when the server made one, else colour-mapped,
     and its peaks are marked on the input. */
  async function image(result, out, job, signal, w, h) {
    const views = result.views || [];
    const view = ['overlay', 'colormap'].find((v) => views.includes(v));
    const path = '/v1/jobs/' + encodeURIComponent(job.id) + '/output' + (view ? '?view=' + view : '');
    const url = await InferQ.api.blobUrl(path, signal);
    out.setOutputUrl(url);
    const what = view === 'overlay' ? 'The heatmap over the input' : view ? 'The heatmap, colour-mapped' : 'The image the model produced';
    out.outputImg.alt = what + ', ' + result.width + ' × ' + result.height + ' pixels';
    out.outputFigure.hidden = false;
    const peaks = result.peaks || [];
    if (peaks.length) {
      const k = scale(w, h);
      const g = svg('g', { class: 'peaks' });
      peaks.forEach((p, i) => {
        const ring = svg('circle', { class: 'peak', cx: p.x, cy: p.y, r: k.r * (i === 0 ? 3 : 2), fill: 'none', stroke: i === 0 ? '#00e5ff' : '#ffcc00', 'stroke-width': k.stroke * 1.5 });
        const tip = svg('title', {});
        tip.textContent = 'peak ' + (i + 1) + ' (' + pct(p.value) + ')';
        ring.append(tip);
        g.append(ring);
      });
      out.overlay.append(g);
      out.prediction.append(table('Peaks in image pixels', [{ text: 'Peak', num: 1 }, { text: 'x', num: 1 }, { text: 'y', num: 1 }, { text: 'Value', num: 1 }],
        peaks.map((p, i) => [String(i + 1), num(p.x), num(p.y), pct(p.value)])));
      return 'Heatmap of ' + result.width + ' × ' + result.height + ' pixels with ' + peaks.length + ' peak' + (peaks.length > 1 ? 's' : '') + ', marked on the input.';
    }
    return 'Output image of ' + result.width + ' × ' + result.height + ' pixels, shown beside the input.';
  }

  function embedding(result, out) {
    const values = result.values || [];
    const shown = values.slice(0, 256);
    const max = Math.max(1e-9, ...shown.map((v) => Math.abs(v)));
    const box = svg('svg', { viewBox: '0 0 ' + shown.length + ' 2', preserveAspectRatio: 'none', class: 'embedding', role: 'img', 'aria-label': 'The first ' + shown.length + ' values as bars' });
    shown.forEach((v, i) => {
      const hgt = Math.abs(v) / max;
      box.append(svg('rect', { x: i, y: v >= 0 ? 1 - hgt : 1, width: 0.8, height: hgt, fill: 'currentColor' }));
    });
    box.style.width = '100%';
    box.style.height = '4rem';
    out.prediction.append(el('p', {}, result.dimensions + ' dimensions' + (result.normalized ? ', L2-normalised' : '') + '.'), box,
      table('First values', [{ text: 'Index', num: 1 }, { text: 'Value', num: 1 }], values.slice(0, 8).map((v, i) => [String(i), v.toFixed(5)])));
    return 'Embedding of ' + result.dimensions + ' dimensions.';
  }

  function tensor(result, out) {
    out.prediction.append(table('Output tensors', [{ text: 'Output' }, { text: 'Shape' }, { text: 'First values' }],
      result.outputs.map((o) => [o.name, '[' + o.shape.join(', ') + ']', o.data.slice(0, 6).map((v) => v.toPrecision(4)).join(', ')])));
    return result.outputs.length + ' raw output tensor(s).';
  }

  /* One frame's answer in a few words: [top class, score] for a classifier,
     [what was found] otherwise (the frames document has the rest). */
  function frameAnswer(r) {
    switch (r.kind) {
      case 'classification': {
        const top = r.top_k[0];
        return top ? [top.label || 'class ' + top.index, pct(top.probability)] : ['—', '—'];
      }
      case 'keypoints': return [r.persons ? count(r.persons.length, 'person', 'people') : count(r.keypoints.length, 'keypoint')];
      case 'detection': return [count(r.detections.length, 'object')];
      case 'image': return [r.width + ' × ' + r.height + (r.peaks && r.peaks.length ? ', ' + count(r.peaks.length, 'peak') : '')];
      case 'embedding': return [r.dimensions + ' dimensions'];
      case 'tensor': return [count(r.outputs.length, 'tensor')];
      default: return [String(r.kind)];
    }
  }

  /* The frames document: one FrameResult per line. */
  async function readFrames(id, signal) {
    const resp = await InferQ.api.request('/v1/jobs/' + id + '/frames', { signal, cache: 'no-store' });
    const lines = (await resp.text()).split('\n');
    const frames = [];
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      try {
        frames.push(JSON.parse(line));
      } catch (_) {
        throw new Error('line ' + (i + 1) + ' of the frames document is not JSON.');
      }
    });
    return frames;
  }

  /* The first FRAME_ROWS frames as a table, and how many there are. */
  function frameTable(frames, kind, id) {
    const classes = kind === 'classification';
    const head = [{ text: 'Frame', num: 1 }, { text: 'Time', num: 1 }, { text: classes ? 'Top class' : 'Answer' }];
    if (classes) head.push({ text: 'Score', num: 1 });
    const rows = frames.slice(0, FRAME_ROWS).map((f) => [String(f.frame), num(f.time, 2) + ' s', ...frameAnswer(f.result)]);
    const shown = rows.length < frames.length ? 'the first ' + rows.length + ' of ' + frames.length : 'all ' + frames.length;
    return el('div', { id: 'frames', 'data-frames': String(frames.length) },
      el('h3', {}, 'Frames'),
      el('p', { class: 'hint' }, 'The answer for each sampled frame: ' + shown + ' (every one is in GET /v1/jobs/' + id + '/frames, JSON Lines).'),
      table('Answer per frame', head, rows));
  }

  /* A video job: the output video (fetched with the key) in a player beside
     the clip, and the per-frame answers. One part that cannot be read (it
     expired, say) is said in place; the other is still shown. */
  async function video(result, out, job, signal) {
    const id = encodeURIComponent(job.id);
    const problems = [];
    const failed = (what) => (e) => {
      if (e.name === 'AbortError') throw e;
      problems.push('Could not read ' + what + ': ' + (e.code ? e.code + ': ' : '') + e.message);
      return null;
    };
    const [frames, url] = await Promise.all([
      readFrames(id, signal).catch(failed('the per-frame results')),
      result.output ? InferQ.api.blobUrl('/v1/jobs/' + id + '/output', signal).catch(failed('the output video')) : null,
    ]);
    if (url) {
      const o = result.output;
      const what = result.frame_kind === 'image' ? 'The video the model produced' : 'The clip with each frame’s answer drawn on it';
      out.setOutputUrl(url, true);
      out.outputVideo.setAttribute('aria-label', what + ', ' + o.width + ' × ' + o.height + ' pixels');
      out.outputFigure.hidden = false;
    }
    if (frames) out.prediction.append(frameTable(frames, result.frame_kind, id));
    for (const p of problems) out.prediction.append(el('p', { class: 'problem', role: 'alert' }, p));
    const fps = String(Number(result.fps.toFixed(2)));
    const each = { classification: 'each classified', keypoints: 'keypoints found in each', detection: 'objects detected in each', image: 'each transformed by the model', embedding: 'each embedded' }[result.frame_kind] || 'a ' + result.frame_kind + ' result for each';
    let text = count(result.frames, 'frame') + ' of ' + result.width + ' × ' + result.height + ' at ' + fps + ' frames/s (' + num(result.duration, 1) + ' s of video), ' + each;
    if (frames && frames.length && result.frame_kind === 'classification') {
      const tally = new Map();
      for (const f of frames) {
        const top = frameAnswer(f.result)[0];
        tally.set(top, (tally.get(top) || 0) + 1);
      }
      const [label, n] = [...tally].reduce((a, b) => (b[1] > a[1] ? b : a));
      text += '; most often ' + label + ' (' + n + ' of ' + frames.length + ' frames)';
    }
    return text + (url ? '; the output video is shown beside the clip.' : '.');
  }

  /* Draws a finished job; returns the one-line summary for the live region. */
  async function result(job, out, size, signal) {
    out.overlay.setAttribute('viewBox', '0 0 ' + size.w + ' ' + size.h);
    out.overlay.setAttribute('preserveAspectRatio', 'none');
    const r = job.result;
    switch (r.kind) {
      case 'classification': return classification(r, out);
      case 'keypoints': return keypoints(r, out, size.w, size.h);
      case 'detection': return detection(r, out, size.w, size.h);
      case 'image': return image(r, out, job, signal, size.w, size.h);
      case 'embedding': return embedding(r, out);
      case 'tensor': return tensor(r, out);
      case 'video': return video(r, out, job, signal);
      default:
        out.prediction.append(el('p', {}, 'This console does not draw results of kind “' + r.kind + '” yet; see the job record below.'));
        return 'Finished with a result of kind ' + r.kind + '.';
    }
  }

  const STAGES = [
    ['queue', 'Queue', 'waiting for a worker'],
    ['fetch', 'Fetch', 'reading the image from storage'],
    ['decode', 'Decode', 'decoding the image'],
    ['preprocess', 'Preprocess', 'resizing and normalising'],
    ['inference', 'Inference', 'running the model (the whole batch)'],
  ];

  /* The job's stage timings: a stacked bar to scale and a table. */
  function timings(t, into) {
    into.replaceChildren();
    if (!t) {
      into.append(el('p', { class: 'hint' }, 'No timings: the job never reached a worker.'));
      return;
    }
    const total = Math.max(t.total_ms, 1e-6);
    const parts = STAGES.map(([key, name, what]) => ({ key, name, what, ms: t[key + '_ms'] || 0 }));
    const other = Math.max(0, t.total_ms - parts.reduce((s, p) => s + p.ms, 0));
    parts.push({ key: 'other', name: 'Other', what: 'postprocessing, storing, waking the poll', ms: other });
    const bar = el('div', { class: 'stages', 'aria-hidden': 'true' });
    for (const p of parts) {
      bar.append(el('span', { class: 'stage-' + p.key, style: 'width:' + ((100 * p.ms) / total).toFixed(2) + '%', title: p.name + ' ' + num(p.ms, 2) + ' ms' }));
    }
    const rows = parts.map((p) => [el('span', {}, el('span', { class: 'swatch stage-' + p.key, 'aria-hidden': 'true' }), p.name), p.what, num(p.ms, 2) + ' ms', pct(p.ms / total)]);
    const wrap = table('Stage timings of this job', [{ text: 'Stage' }, { text: 'What', cls: 'what' }, { text: 'Time', num: 1 }, { text: 'Share', num: 1 }], rows);
    const batch = t.batch_size > 1 ? ', batch of ' + t.batch_size : '';
    const foot = el('tfoot', {}, el('tr', {}, el('td', {}, 'Total'), el('td', { class: 'what' }, 'acceptance to result' + batch), el('td', { class: 'num' }, num(t.total_ms, 2) + ' ms'), el('td', { class: 'num' }, '100 %')));
    wrap.querySelector('table').append(foot);
    into.append(bar, wrap);
  }

  InferQ.draw = { el, svg, result, timings, pct, num };
})();
