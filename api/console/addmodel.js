/* InferQ console: the "Add a model" panel.
 *
 * Takes an .onnx file (dropped or chosen), reads its input and output names
 * and sizes in the browser (onnxinfo.js) to fill in the form, writes the
 * model.toml manifest from the form (editable before sending), and uploads
 * file, manifest and labels through the registration route
 * PUT /v1/models/{name}/versions/{version} (multipart: model, manifest,
 * labels). That route needs the server's --allow-model-upload and, with API
 * keys on, a key with the admin scope: the panel takes one for this upload
 * only. The server's problem+json detail is shown inline next to the form.
 * After a 201 the panel polls GET /v1/models until the new version is
 * listed, then selects it in the "Try a model" form.
 */
(function () {
  'use strict';
  const InferQ = (window.InferQ = window.InferQ || {});
  const { api, onnx } = InferQ;
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 500;
  const POLL_FOR_MS = 60000;

  const state = { file: null, edited: false, busy: false };

  function status(text, kind) {
    const node = $('am-status');
    node.textContent = text;
    node.className = 'status' + (kind ? ' ' + kind : '');
  }

  function showProblem(text) {
    const box = $('am-error');
    box.textContent = text || '';
    box.hidden = !text;
  }

  const lines = () => $('am-labels').value.split('\n').map((s) => s.trim()).filter(Boolean);
  const q = (s) => JSON.stringify(String(s)); // a TOML basic string
  const triple = (id, fallback) => {
    const parts = $(id).value.split(/[\s,]+/).filter(Boolean).map(Number);
    if (parts.length === 1) return [parts[0], parts[0], parts[0]];
    return parts.length === 3 && parts.every(Number.isFinite) ? parts : fallback;
  };
  const float = (v) => (Number.isInteger(v) ? v.toFixed(1) : String(v));

  /* The manifest the form describes. */
  function manifest() {
    const kind = $('am-kind').value;
    const labels = lines();
    const out = ['kind = ' + q(kind)];
    if ($('am-description').value.trim()) out.push('description = ' + q($('am-description').value.trim()));
    const width = Number($('am-width').value) || 224;
    const height = Number($('am-height').value) || 224;
    out.push('', '[input]', 'name = ' + q($('am-input').value || 'input'), 'dtype = ' + q($('am-dtype').value),
      'layout = ' + q($('am-layout').value), 'width = ' + width, 'height = ' + height);
    out.push('', '[preprocess]', 'resize = ' + q($('am-resize').value),
      'mean = [' + triple('am-mean', [0, 0, 0]).map(float).join(', ') + ']',
      'std = [' + triple('am-std', [1, 1, 1]).map(float).join(', ') + ']');
    out.push('', '[output]');
    if (kind !== 'tensor') out.push('name = ' + q($('am-output').value || 'output'));
    else out.push('names = [' + q($('am-output').value || 'output') + ']');
    if (kind === 'classification') {
      if ($('am-softmax').checked) out.push('softmax = true');
      if (labels.length) out.push('labels = "labels.txt"');
    } else if (kind === 'detection') {
      out.push('format = "xyxy_score_class"', 'coords = "normalized"');
      if (labels.length) out.push('labels = "labels.txt"');
    } else if (kind === 'keypoints') {
      out.push('format = "yx_score"', 'coords = "normalized"');
      if (labels.length) out.push('keypoints = [' + labels.map(q).join(', ') + ']');
    } else if (kind === 'image') {
      out.push('layout = ' + q($('am-layout').value), 'range = [0.0, 1.0]');
    }
    return out.join('\n') + '\n';
  }

  function regenerate(force) {
    if (state.edited && !force) return;
    state.edited = false;
    $('am-manifest').value = manifest();
  }

  function describeKind() {
    const kind = $('am-kind').value;
    $('am-softmax-field').hidden = kind !== 'classification';
    const hint = {
      classification: 'Class names, one a line, in the order of the model’s outputs (sent as labels.txt).',
      detection: 'Class names, one a line, in the order of the class ids (sent as labels.txt).',
      keypoints: 'Keypoint names, one a line, in the order of the model’s rows (written into the manifest).',
    }[kind];
    $('am-labels-field').hidden = !hint;
    $('am-labels-hint').textContent = hint || '';
  }

  /* Fills the form from what the ONNX file says about itself. */
  async function useFile(file, how) {
    if (!file) return;
    showProblem('');
    state.file = file;
    $('am-chosen').textContent = how + ': ' + file.name + ' (' + Math.max(1, Math.round(file.size / 1024)) + ' KB)';
    if (!$('am-name').value) {
      const stem = file.name.replace(/\.onnx$/i, '').toLowerCase().replace(/[^a-z0-9_.-]+/g, '-').replace(/^[^a-z0-9]+/, '');
      if (stem && stem !== 'model') $('am-name').value = stem;
    }
    try {
      const info = onnx.read(await file.arrayBuffer());
      const input = info.inputs[0] && onnx.imageInput(info.inputs[0]);
      if (input) {
        $('am-input').value = input.name;
        if (['float32', 'uint8', 'int32'].includes(input.dtype)) $('am-dtype').value = input.dtype;
        if (input.layout) $('am-layout').value = input.layout;
        if (input.width) $('am-width').value = input.width;
        if (input.height) $('am-height').value = input.height;
      }
      if (info.outputs[0]) $('am-output').value = info.outputs[0].name;
      const shape = (x) => x.name + ' [' + x.shape.map((d) => (d === null ? '?' : d)).join(', ') + '] ' + (x.dtype || '');
      $('am-onnx').textContent = 'Read from the file: input ' + info.inputs.map(shape).join(', ') + '; output ' + info.outputs.map(shape).join(', ') +
        (info.opset ? '; opset ' + info.opset : '') + '.';
    } catch (e) {
      // Left to the server to refuse; it says why in its own words.
      $('am-onnx').textContent = 'The file could not be read as ONNX here (' + e.message + '); the server will check it.';
    }
    regenerate();
    await suggestVersion();
  }

  /* The next free version of an existing name, 1 for a new one. */
  async function suggestVersion() {
    const name = $('am-name').value.trim();
    const mine = () => $('am-version').dataset.touched || document.activeElement === $('am-version');
    if (!name || mine()) return;
    try {
      const list = await api.json('/v1/models', { prompt: false, cache: 'no-store' });
      const m = list.models.find((x) => x.name === name);
      // The user may have typed a version or another name meanwhile.
      if (mine() || $('am-name').value.trim() !== name) return;
      $('am-version').value = String(m ? Math.max(...m.versions.map((v) => v.version)) + 1 : 1);
    } catch (_) {
      /* left as it is */
    }
  }

  function upload(name, version, form, key) {
    const path = '/v1/models/' + encodeURIComponent(name) + '/versions/' + version;
    const init = { method: 'PUT', body: form };
    // A key typed here is for this upload only; otherwise the tab's key.
    if (key) return api.request(path, { ...init, prompt: false, key });
    return api.request(path, init);
  }

  /* Polls the model list until `name` lists `version`. */
  async function waitListed(name, version) {
    const until = performance.now() + POLL_FOR_MS;
    while (performance.now() < until) {
      const list = await api.json('/v1/models', { prompt: false, cache: 'no-store' });
      const m = list.models.find((x) => x.name === name);
      if (m && m.versions.some((v) => v.version === version)) return true;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    return false;
  }

  async function submit(e) {
    e.preventDefault();
    if (state.busy) return;
    showProblem('');
    const name = $('am-name').value.trim();
    const version = Number($('am-version').value);
    if (!state.file) return showProblem('Choose or drop an .onnx file first.');
    if (!/^[a-z0-9][a-z0-9_.-]*$/.test(name)) return showProblem('The name uses a–z, 0–9, “-”, “_” and “.”, starting with a letter or digit.');
    if (!Number.isInteger(version) || version < 1) return showProblem('The version is a whole number from 1 up.');
    const form = new FormData();
    form.append('model', state.file, 'model.onnx');
    form.append('manifest', $('am-manifest').value);
    if (['classification', 'detection'].includes($('am-kind').value) && lines().length) form.append('labels', lines().join('\n') + '\n');
    state.busy = true;
    $('am-submit').disabled = true;
    status('Uploading ' + name + ' v' + version + '…');
    try {
      await upload(name, version, form, $('am-key').value.trim());
      status('Registered ' + name + ' v' + version + '; waiting for the server to list it…');
      if (!(await waitListed(name, version))) {
        status('Registered, but the server has not listed ' + name + ' v' + version + ' within a minute; reload later.', 'error');
        return;
      }
      await InferQ.app.loadModels(name);
      const select = $('version');
      if ([...select.options].some((o) => o.value === String(version))) {
        select.value = String(version);
        select.dispatchEvent(new Event('change'));
      }
      status(name + ' v' + version + ' is served: it is selected in “Try a model”.', 'ok');
      $('am-version').dataset.touched = '';
      $('am-version').value = String(version + 1);
    } catch (err) {
      status('');
      const why = err.status === 403 ? ' (uploads need --allow-model-upload on the server and a key with the admin scope)' : '';
      showProblem('The server refused the model: ' + (err.code ? err.code + ': ' : '') + err.message + why);
    } finally {
      state.busy = false;
      $('am-submit').disabled = false;
    }
  }

  function init() {
    $('am-form').addEventListener('submit', submit);
    $('am-file').addEventListener('change', (e) => useFile(e.target.files[0], 'Chosen'));
    const drop = $('am-drop');
    drop.addEventListener('dragover', (e) => {
      e.preventDefault();
      e.stopPropagation();
      drop.classList.add('over');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      e.stopPropagation();
      drop.classList.remove('over');
      const file = [...(e.dataTransfer.files || [])][0];
      if (file) useFile(file, 'Dropped');
    });
    for (const input of $('am-form').querySelectorAll('input, select, textarea')) {
      if (['am-manifest', 'am-key', 'am-file'].includes(input.id)) continue;
      input.addEventListener('input', () => regenerate());
      input.addEventListener('change', () => regenerate());
    }
    $('am-kind').addEventListener('change', describeKind);
    $('am-name').addEventListener('change', suggestVersion);
    $('am-version').addEventListener('input', () => ($('am-version').dataset.touched = '1'));
    $('am-manifest').addEventListener('input', () => (state.edited = true));
    $('am-regenerate').addEventListener('click', () => regenerate(true));
    describeKind();
    regenerate(true);
  }

  init();
})();
