/* InferQ console: the page itself (the "Image or clip" mode).
 *
 * Loads the model list (GET /v1/models), takes an image or a video clip by
 * drop, file picker, paste or address, submits it (POST /v1/jobs: the raw
 * bytes with their content type, or JSON with `input.uri` for an address;
 * a clip with its `fps` and `max_frames`), follows the job and hands the
 * finished record to draw.js. A clip is one video job: it is polled every
 * second rather than long-polled, so that its `progress` (frames done of
 * frames total) fills a progress bar while it runs. Starts the live panel
 * (stats.js) once the models are known, so that a 401 asks for the key
 * only once.
 */
(function () {
  'use strict';
  const InferQ = window.InferQ;
  const { api, draw } = InferQ;
  const $ = (id) => document.getElementById(id);

  // Clips the API runs as one video job, by name when the browser gives no
  // type (it often has none for .mkv, sometimes for .mov): the content type
  // to send each with.
  const CLIP_TYPES = { mp4: 'video/mp4', m4v: 'video/mp4', mov: 'video/quicktime', webm: 'video/webm', mkv: 'video/x-matroska', gif: 'image/gif' };
  const CLIP_POLL_SECS = 1; // how often a running clip's progress is read

  const state = {
    models: [],
    source: null, // {kind: 'file', file, url, clip} | {kind: 'url', url, clip}; clip: its content type, or null
    job: null, // the job being watched
    abort: null,
    outputUrl: null,
  };

  function setStatus(text, kind) {
    const node = $('job-status');
    node.textContent = text;
    node.className = 'status' + (kind ? ' ' + kind : '');
  }

  // ---------------------------------------------------------------- models

  function currentModel() {
    return state.models.find((m) => m.name === $('model').value);
  }

  function currentVersion() {
    const m = currentModel();
    if (!m) return null;
    const v = Number($('version').value);
    return m.versions.find((x) => x.version === v) || m.versions.find((x) => x.version === m.default_version);
  }

  function describe() {
    const v = currentVersion();
    const info = $('model-info');
    if (!v) {
      info.textContent = '';
      return;
    }
    const parts = [v.kind.replace('_', ' ') + ' model', 'input ' + v.input.width + ' × ' + v.input.height];
    if (v.label_count) parts.push(v.label_count + ' labels');
    info.textContent = parts.join(' · ') + (v.description ? ' — ' + v.description : '');
    const classifier = v.kind === 'classification';
    $('topk-field').hidden = !classifier;
    $('top-k').placeholder = classifier && v.output && v.output.top_k ? String(v.output.top_k) : '';
  }

  function fillVersions() {
    const m = currentModel();
    const select = $('version');
    select.replaceChildren();
    if (!m) return;
    for (const v of [...m.versions].reverse()) {
      const label = 'v' + v.version + (v.version === m.default_version ? ' (default)' : '');
      select.append(new Option(label, String(v.version)));
    }
    // The default is not always the newest (a version may say `default = false`).
    select.value = String(m.default_version);
    select.disabled = m.versions.length < 2;
    describe();
  }

  /* (Re)reads the model list; keeps the chosen model when it is still
     there, else picks `prefer`, else the server's default. Resolves to the
     list. */
  async function loadModels(prefer) {
    try {
      const list = await api.json('/v1/models', { cache: 'no-store' });
      state.models = list.models;
      const select = $('model');
      const before = prefer || select.value;
      select.replaceChildren(...list.models.map((m) => new Option(m.name, m.name)));
      if (list.models.some((m) => m.name === before)) select.value = before;
      else if (list.models.some((m) => m.name === list.default_model)) select.value = list.default_model;
      select.disabled = list.models.length === 0;
      $('run').disabled = list.models.length === 0;
      fillVersions();
      if (!list.models.length) setStatus('The server serves no models yet.', 'error');
      document.dispatchEvent(new CustomEvent('inferq:models'));
      return list;
    } catch (e) {
      $('model').replaceChildren(new Option('(not loaded)', ''));
      setStatus('Could not load the models: ' + e.message + ' Reload the page to try again.', 'error');
      return null;
    }
  }

  // ----------------------------------------------------------------- input

  const extension = (name) => ((name || '').match(/\.([a-z0-9]+)$/i) || ['', ''])[1].toLowerCase();

  /* The content type to send a file with when it is a clip, else null. A
     GIF counts: the server runs an animated one as a video job and a still
     one as an image, so the clip options may apply. */
  function clipType(file) {
    if (file.type.startsWith('video/') || file.type === 'image/gif') return file.type;
    if (file.type && file.type !== 'application/octet-stream') return null;
    return CLIP_TYPES[extension(file.name)] || null;
  }

  /* The same for an address, from the end of its path. */
  function clipAddress(text) {
    try {
      return CLIP_TYPES[extension(new URL(text).pathname)] || null;
    } catch (_) {
      return null; // not an address (yet): the server says so on submit
    }
  }

  /* The frame options show only while the source is a clip. */
  function showClipOptions() {
    $('video-options').hidden = !(state.source && state.source.clip);
  }

  function forgetSource() {
    if (state.source && state.source.kind === 'file') URL.revokeObjectURL(state.source.url);
    state.source = null;
    $('chosen').textContent = '';
    showClipOptions();
  }

  function useFile(file, how) {
    if (!file) return;
    const clip = clipType(file);
    if (!clip && file.type && !file.type.startsWith('image/')) {
      setStatus('“' + file.name + '” is neither an image nor a video clip (' + file.type + ').', 'error');
      return;
    }
    forgetSource();
    $('url').value = '';
    state.source = { kind: 'file', file, url: URL.createObjectURL(file), clip };
    showClipOptions();
    const size = file.size >= 1024 * 1024 ? (file.size / 1024 / 1024).toFixed(1) + ' MB' : Math.max(1, Math.round(file.size / 1024)) + ' KB';
    $('chosen').textContent = how + ': ' + (file.name || 'image') + ' (' + size + ')';
    setStatus('');
  }

  function useUrl(text) {
    const url = text.trim();
    if (!url) {
      if (state.source && state.source.kind === 'url') forgetSource();
      return;
    }
    forgetSource();
    state.source = { kind: 'url', url, clip: clipAddress(url) };
    showClipOptions();
  }

  function wireInput() {
    $('file').addEventListener('change', (e) => useFile(e.target.files[0], 'Chosen'));
    $('url').addEventListener('input', (e) => useUrl(e.target.value));
    const drop = $('drop');
    drop.addEventListener('dragover', (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      const file = [...(e.dataTransfer.files || [])].find((f) => !f.type || f.type.startsWith('image/') || clipType(f));
      if (file) useFile(file, 'Dropped');
      else {
        const text = e.dataTransfer.getData('text/uri-list') || e.dataTransfer.getData('text/plain');
        if (/^(https?|gs|s3):\/\//i.test(text.trim())) {
          $('url').value = text.trim().split('\n')[0];
          useUrl($('url').value);
        }
      }
    });
    // A drop that misses the zone must not navigate away from the page.
    window.addEventListener('dragover', (e) => e.preventDefault());
    window.addEventListener('drop', (e) => e.preventDefault());
    document.addEventListener('paste', (e) => {
      const items = [...((e.clipboardData && e.clipboardData.items) || [])];
      const item = items.find((i) => i.kind === 'file' && i.type.startsWith('image/'));
      if (item) {
        e.preventDefault();
        const file = item.getAsFile();
        useFile(new File([file], file.name || 'pasted.' + (item.type.split('/')[1] || 'png'), { type: item.type }), 'Pasted');
        return;
      }
      const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
      const text = e.clipboardData ? e.clipboardData.getData('text/plain').trim() : '';
      if (!typing && /^(https?|gs|s3):\/\/\S+$/i.test(text)) {
        $('url').value = text;
        useUrl(text);
        $('url').focus();
      }
    });
  }

  // ------------------------------------------------------------------ jobs

  function outputs() {
    return {
      overlay: $('overlay'),
      prediction: $('prediction'),
      outputImg: $('output-img'),
      outputFigure: $('output-figure'),
      outputVideo: $('output-video'),
      /* Shows an output (an object URL) as an image, or with `video` as a
         video with its controls. */
      setOutputUrl(url, video = false) {
        if (state.outputUrl) URL.revokeObjectURL(state.outputUrl);
        state.outputUrl = url;
        $('output-img').hidden = video;
        $('output-video').hidden = !video;
        if (video) $('output-video').src = url;
        else $('output-img').src = url;
      },
    };
  }

  /* Empties a <video> so that it lets go of its source. */
  function unload(video) {
    video.hidden = true;
    if (!video.hasAttribute('src')) return;
    video.removeAttribute('src');
    video.load();
  }

  function resetResult(source) {
    const out = outputs();
    const title = $('overlay-title');
    title.textContent = 'Nothing drawn yet';
    out.overlay.replaceChildren(title);
    out.prediction.replaceChildren();
    out.outputFigure.hidden = true;
    unload(out.outputVideo);
    $('timings').replaceChildren();
    $('raw').textContent = '';
    $('summary').textContent = '';
    $('video-progress').hidden = true;
    $('frames-count').textContent = '';
    const bar = $('frames-bar');
    bar.value = 0;
    delete bar.dataset.done;
    delete bar.dataset.total;
    // A clip other than a GIF plays in a <video>; one named by its address
    // is not shown at all (the page may load media from itself only).
    const moving = Boolean(source.clip) && source.clip !== 'image/gif';
    $('input-figure').hidden = moving && source.kind === 'url';
    $('input-img').hidden = moving;
    $('overlay').hidden = moving;
    if (moving) $('input-img').removeAttribute('src');
    else $('input-img').src = source.url;
    if (moving && source.kind === 'file') {
      $('input-video').hidden = false;
      $('input-video').src = source.url;
    } else {
      unload($('input-video'));
    }
    $('result').hidden = false;
    $('result').dataset.state = 'running';
  }

  function topK() {
    const raw = $('top-k').value.trim();
    if (!raw || $('topk-field').hidden) return null;
    const k = Number(raw);
    if (!Number.isInteger(k) || k < 1 || k > 1000) throw new Error('Top-k must be a whole number from 1 to 1000.');
    return k;
  }

  /* A number typed into `input`: undefined when empty; throws `message`
     when it is not a number or `ok(value)` fails. */
  function typed(input, ok, message) {
    if (input.validity.badInput) throw new Error(message);
    const raw = input.value.trim();
    if (!raw) return undefined;
    const v = Number(raw);
    if (!Number.isFinite(v) || !ok(v)) throw new Error(message);
    return v;
  }

  /* A clip's `fps` and `max_frames` ({} for the server's defaults), null
     when the source is not a clip. The upper limits are the server's to
     say (they are its settings): its 400 is shown like any refusal. */
  function clipOptions() {
    if (!state.source.clip) return null;
    const opts = {};
    const fps = typed($('fps'), (v) => v > 0, 'Frames per second must be a number above 0 (or empty for the clip’s own rate).');
    if (fps !== undefined) opts.fps = fps;
    const most = typed($('max-frames'), (v) => Number.isInteger(v) && v >= 1, 'Most frames must be a whole number, at least 1 (or empty for the server’s default).');
    if (most !== undefined) opts.max_frames = most;
    return opts;
  }

  function submission(model, version, k, clip) {
    const src = state.source;
    if (src.kind === 'file') {
      const q = new URLSearchParams({ model: model.name, version: String(version.version) });
      if (k) q.set('top_k', String(k));
      for (const [name, v] of Object.entries(clip || {})) q.set(name, String(v));
      const image = src.file.type && src.file.type.startsWith('image/') ? src.file.type : 'application/octet-stream';
      return ['/v1/jobs?' + q, { method: 'POST', headers: { 'Content-Type': src.clip || image }, body: src.file }];
    }
    const body = { model: model.name, version: version.version, input: { uri: src.url }, ...clip };
    if (k) body.top_k = k;
    return ['/v1/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) }];
  }

  /* The displayed image's size in pixels, once it has loaded (or failed). */
  function imageSize(job) {
    const img = $('input-img');
    const known = () => ({ w: img.naturalWidth || job.input.width || 1, h: img.naturalHeight || job.input.height || 1 });
    if (img.complete) return Promise.resolve(known());
    return new Promise((resolve) => {
      img.addEventListener('load', () => resolve(known()), { once: true });
      img.addEventListener('error', () => resolve(known()), { once: true });
    });
  }

  /* A video job's frames done of frames total, from its record. */
  function showFrames(p) {
    const bar = $('frames-bar');
    bar.max = Math.max(1, p.frames_total);
    bar.value = Math.min(p.frames_done, bar.max);
    bar.dataset.done = String(p.frames_done);
    bar.dataset.total = String(p.frames_total);
    $('frames-count').textContent = p.frames_done + ' / ' + p.frames_total;
    $('video-progress').hidden = false;
  }

  function progress(job, started) {
    state.job = job;
    if (job.progress) showFrames(job.progress);
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    const frames = job.progress ? ', ' + job.progress.frames_done + ' of ' + job.progress.frames_total + ' frames' : '';
    const what = { queued: 'waiting for a worker', running: 'running' + (job.attempts > 1 ? ' (attempt ' + job.attempts + ')' : '') + frames }[job.status];
    if (what) setStatus('Job ' + job.id.slice(0, 8) + '… ' + what + ' (' + secs + ' s).');
  }

  async function finish(job, started, signal) {
    $('cancel').hidden = true;
    $('raw').textContent = JSON.stringify(job, null, 2);
    draw.timings(job.timings, $('timings'));
    const secs = ((performance.now() - started) / 1000).toFixed(2);
    if (job.status !== 'succeeded') {
      const why = job.error ? job.error.code + ': ' + job.error.message : job.status;
      $('summary').textContent = 'The job ended ' + job.status.replace('_', ' ') + '. ' + why;
      $('summary').classList.add('error');
      $('result').dataset.state = 'error';
      setStatus('Job ' + job.id.slice(0, 8) + '… ' + job.status + ' after ' + secs + ' s.', 'error');
      return;
    }
    $('summary').classList.remove('error');
    const size = await imageSize(job);
    const text = await draw.result(job, outputs(), size, signal);
    $('summary').textContent = text;
    $('overlay-title').textContent = text;
    $('result').dataset.state = 'done';
    $('result').dataset.kind = job.result.kind;
    setStatus('Job ' + job.id.slice(0, 8) + '… succeeded in ' + secs + ' s.', 'ok');
  }

  async function run(e) {
    e.preventDefault();
    const model = currentModel();
    const version = currentVersion();
    if (!model || !version) return setStatus('Choose a model first.', 'error');
    if (!state.source) return setStatus('Choose, drop or paste an image, or give its address, first.', 'error');
    let k;
    let clip;
    try {
      k = topK();
      clip = clipOptions();
    } catch (err) {
      return setStatus(err.message, 'error');
    }
    if (state.abort) state.abort.abort();
    const abort = new AbortController();
    state.abort = abort;
    const started = performance.now();
    const [path, init] = submission(model, version, k, clip);
    const pollSecs = state.source.clip ? CLIP_POLL_SECS : undefined;
    resetResult(state.source);
    setStatus('Sending…');
    $('run').disabled = true;
    try {
      const accepted = await api.json(path, { ...init, signal: abort.signal });
      $('run').disabled = false;
      $('cancel').hidden = false;
      progress(accepted, started);
      InferQ.stats.refreshSoon();
      const job = await api.waitJob(accepted.id, (j) => progress(j, started), abort.signal, pollSecs);
      await finish(job, started, abort.signal);
      InferQ.stats.refreshSoon();
    } catch (err) {
      if (err.name === 'AbortError') return;
      $('result').dataset.state = 'error';
      $('summary').textContent = '';
      setStatus((err.code ? err.code + ': ' : '') + err.message, 'error');
    } finally {
      $('run').disabled = false;
      if (state.abort === abort) $('cancel').hidden = true;
    }
  }

  async function cancel() {
    const job = state.job;
    if (!job) return;
    try {
      await api.json('/v1/jobs/' + encodeURIComponent(job.id) + '/cancel', { method: 'POST' });
    } catch (err) {
      setStatus('Could not cancel: ' + err.message, 'error');
    }
  }

  // ------------------------------------------------------------------ key

  function showKeyButton() {
    $('key-button').hidden = !(InferQ.authRequired || api.key());
  }

  async function changeKey() {
    const entered = await api.askKey('Enter the API key to use in this tab. Cancel keeps the current one.');
    if (entered) {
      setStatus('API key set for this tab.', 'ok');
      if (!state.models.length) loadModels();
    }
  }

  InferQ.app = { currentModel, currentVersion, loadModels, setStatus };

  function main() {
    $('model').addEventListener('change', fillVersions);
    $('version').addEventListener('change', describe);
    $('job-form').addEventListener('submit', run);
    $('cancel').addEventListener('click', cancel);
    $('key-button').addEventListener('click', changeKey);
    document.addEventListener('inferq:auth', showKeyButton);
    document.addEventListener('inferq:key', showKeyButton);
    showKeyButton();
    wireInput();
    loadModels().finally(() => InferQ.stats.start());
  }

  main();
})();
