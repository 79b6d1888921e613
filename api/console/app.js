/* InferQ console: the page itself (the "Image" mode).
 *
 * Loads the model list (GET /v1/models), takes an image by drop, file
 * picker, paste or address, submits it (POST /v1/jobs: the raw bytes, or
 * JSON with `input.uri` for an address), long-polls the job and hands the
 * finished record to draw.js. Starts the live panel (stats.js) once the
 * models are known, so that a 401 asks for the key only once.
 */
(function () {
  'use strict';
  const InferQ = window.InferQ;
  const { api, draw } = InferQ;
  const $ = (id) => document.getElementById(id);

  const state = {
    models: [],
    source: null, // {kind: 'file', file, url} | {kind: 'url', url}
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

  function forgetSource() {
    if (state.source && state.source.kind === 'file') URL.revokeObjectURL(state.source.url);
    state.source = null;
    $('chosen').textContent = '';
  }

  function useFile(file, how) {
    if (!file) return;
    if (file.type && !file.type.startsWith('image/')) {
      setStatus('“' + file.name + '” is not an image (' + file.type + ').', 'error');
      return;
    }
    forgetSource();
    $('url').value = '';
    state.source = { kind: 'file', file, url: URL.createObjectURL(file) };
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
    state.source = { kind: 'url', url };
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
      const file = [...(e.dataTransfer.files || [])].find((f) => !f.type || f.type.startsWith('image/'));
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
      setOutputUrl(url) {
        if (state.outputUrl) URL.revokeObjectURL(state.outputUrl);
        state.outputUrl = url;
        $('output-img').src = url;
      },
    };
  }

  function resetResult(imageUrl) {
    const out = outputs();
    const title = $('overlay-title');
    title.textContent = 'Nothing drawn yet';
    out.overlay.replaceChildren(title);
    out.prediction.replaceChildren();
    out.outputFigure.hidden = true;
    $('timings').replaceChildren();
    $('raw').textContent = '';
    $('summary').textContent = '';
    $('input-img').src = imageUrl;
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

  function submission(model, version, k) {
    const src = state.source;
    if (src.kind === 'file') {
      const q = new URLSearchParams({ model: model.name, version: String(version.version) });
      if (k) q.set('top_k', String(k));
      const type = src.file.type && src.file.type.startsWith('image/') ? src.file.type : 'application/octet-stream';
      return ['/v1/jobs?' + q, { method: 'POST', headers: { 'Content-Type': type }, body: src.file }];
    }
    const body = { model: model.name, version: version.version, input: { uri: src.url } };
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

  function progress(job, started) {
    state.job = job;
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    const what = { queued: 'waiting for a worker', running: 'running' + (job.attempts > 1 ? ' (attempt ' + job.attempts + ')' : '') }[job.status];
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
    try {
      k = topK();
    } catch (err) {
      return setStatus(err.message, 'error');
    }
    if (state.abort) state.abort.abort();
    const abort = new AbortController();
    state.abort = abort;
    const started = performance.now();
    const [path, init] = submission(model, version, k);
    resetResult(state.source.url);
    setStatus('Sending…');
    $('run').disabled = true;
    try {
      const accepted = await api.json(path, { ...init, signal: abort.signal });
      $('run').disabled = false;
      $('cancel').hidden = false;
      progress(accepted, started);
      InferQ.stats.refreshSoon();
      const job = await api.waitJob(accepted.id, (j) => progress(j, started), abort.signal);
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
