/* InferQ console: the Camera and Video file modes.
 *
 * Plays the camera (getUserMedia) or a local video file in a <video>,
 * captures frames from it (canvas → JPEG blob) and sends each as an ordinary
 * job (POST /v1/jobs, then the long-poll GET /v1/jobs/{id}?wait=), exactly as
 * the Image mode does: there is no second inference path. Back-pressure: at
 * most N frames are in flight; a frame that shows while all N slots are busy
 * is dropped, never queued, and each frame job carries a short start
 * `timeout` so the server drops it too if it would only be answered late.
 * An answer older than one already drawn is discarded as stale. The newest
 * answer is drawn over the live picture with draw.js (keypoints, boxes,
 * labels, the output image of image-to-image models); meter.js turns the
 * latencies into frames per second and percentiles, and the stage timings
 * of the last frame come from its job record.
 */
(function () {
  'use strict';
  const InferQ = (window.InferQ = window.InferQ || {});
  const { api, draw, meter } = InferQ;
  const $ = (id) => document.getElementById(id);
  const FRAME_TIMEOUT_SECS = 5; // a frame not started by then is worthless
  const JPEG_QUALITY = 0.8;

  const state = {
    mode: 'image',
    running: false,
    starting: false, // between the click on Start and the first frame
    stream: null, // the camera's MediaStream
    fileUrl: null, // object URL of the chosen video file
    outputUrl: null,
    run: null, // this start's {abort, inFlight, peak}: frames of a stopped run count no more
    canvas: document.createElement('canvas'),
    seq: 0, // frames sent
    lastDrawn: 0, // sequence number of the newest answer drawn
    counts: { drawn: 0, dropped: 0, stale: 0, failed: 0 },
    meter: new meter.Meter(100),
    painter: null, // timer of the meter panel
    lastJob: null,
  };

  function status(text, kind) {
    const node = $('stream-status');
    node.textContent = text;
    node.className = 'status' + (kind ? ' ' + kind : '');
  }

  function maxInFlight() {
    const n = Number($('max-inflight').value);
    return Number.isInteger(n) && n >= 1 ? Math.min(n, 16) : 2;
  }

  // ------------------------------------------------------------- the panel

  const fmtMs = (v) => (Number.isFinite(v) ? draw.num(v, v < 100 ? 1 : 0) + ' ms' : '–');

  function paint() {
    const s = state.meter.summary();
    $('m-fps').textContent = state.counts.drawn ? draw.num(state.meter.fps(), 1) : '–';
    $('m-p50').textContent = fmtMs(s.p50);
    $('m-p95').textContent = fmtMs(s.p95);
    $('m-p99').textContent = fmtMs(s.p99);
    $('m-sent').textContent = String(state.seq);
    $('m-drawn').textContent = String(state.counts.drawn);
    $('m-dropped').textContent = String(state.counts.dropped + state.counts.stale);
    const run = state.run || { inFlight: 0, peak: 0 };
    $('m-inflight').textContent = run.inFlight + ' / ' + maxInFlight();
    $('m-failed').textContent = String(state.counts.failed);
    $('stream').dataset.drawn = String(state.counts.drawn);
    $('stream').dataset.peakInflight = String(run.peak); // the most in flight at once
  }

  function resetPanel() {
    state.seq = 0;
    state.lastDrawn = 0;
    state.counts = { drawn: 0, dropped: 0, stale: 0, failed: 0 };
    state.meter.reset();
    state.lastJob = null;
    clearDrawing();
    $('stream-prediction').replaceChildren();
    $('stream-timings').replaceChildren();
    $('stream-summary').textContent = '';
    paint();
  }

  function clearDrawing() {
    const title = $('stream-overlay-title');
    $('stream-overlay').replaceChildren(title);
    $('stream-output-figure').hidden = true;
  }

  function outputs() {
    return {
      overlay: $('stream-overlay'),
      prediction: $('stream-prediction'),
      outputImg: $('stream-output-img'),
      outputFigure: $('stream-output-figure'),
      setOutputUrl(url) {
        if (state.outputUrl) URL.revokeObjectURL(state.outputUrl);
        state.outputUrl = url;
        $('stream-output-img').src = url;
      },
    };
  }

  // ---------------------------------------------------------------- frames

  /* The current picture as a JPEG no larger than the chosen size. */
  function capture(video) {
    const limit = Number($('frame-size').value) || 0;
    const w0 = video.videoWidth;
    const h0 = video.videoHeight;
    const k = limit && Math.max(w0, h0) > limit ? limit / Math.max(w0, h0) : 1;
    const canvas = state.canvas;
    canvas.width = Math.max(1, Math.round(w0 * k));
    canvas.height = Math.max(1, Math.round(h0 * k));
    canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
    const size = { w: canvas.width, h: canvas.height };
    return new Promise((resolve, reject) =>
      canvas.toBlob((blob) => (blob ? resolve({ blob, size }) : reject(new Error('the browser could not encode the frame'))), 'image/jpeg', JPEG_QUALITY));
  }

  /* One frame, sent as a job and drawn when its answer comes back. */
  async function sendFrame(video, run) {
    const signal = run.abort.signal;
    const model = InferQ.app.currentModel();
    const version = InferQ.app.currentVersion();
    if (!model || !version) return stop('no model is chosen.');
    const seq = ++state.seq;
    const captured = performance.now();
    run.inFlight += 1;
    run.peak = Math.max(run.peak, run.inFlight);
    try {
      const { blob, size } = await capture(video);
      const q = new URLSearchParams({ model: model.name, version: String(version.version), timeout: String(FRAME_TIMEOUT_SECS) });
      const accepted = await api.json('/v1/jobs?' + q, { method: 'POST', headers: { 'Content-Type': 'image/jpeg' }, body: blob, signal });
      const job = await api.waitJob(accepted.id, () => {}, signal);
      if (job.status !== 'succeeded') {
        if (job.status === 'expired') state.counts.dropped += 1;
        else {
          state.counts.failed += 1;
          const why = job.error ? job.error.code + ': ' + job.error.message : job.status;
          status('Frame ' + seq + ' ended ' + job.status + ' (' + why + ').', 'error');
        }
        return;
      }
      if (run !== state.run || !state.running) return; // stopped meanwhile
      if (seq < state.lastDrawn) {
        state.counts.stale += 1;
        return;
      }
      state.lastDrawn = seq;
      await show(job, size, signal);
      state.counts.drawn += 1;
      state.meter.add(performance.now() - captured);
    } catch (err) {
      if (err.name === 'AbortError') return;
      // The server is busy: the frame is lost, the stream goes on.
      if (err.status === 429 || err.status === 503) {
        state.counts.dropped += 1;
        return;
      }
      state.counts.failed += 1;
      stop((err.code ? err.code + ': ' : '') + err.message);
    } finally {
      run.inFlight -= 1;
    }
  }

  async function show(job, size, signal) {
    const out = outputs();
    // A fresh drawing per frame: the overlay and the text form are replaced.
    const title = $('stream-overlay-title');
    out.overlay.replaceChildren(title);
    out.prediction.replaceChildren();
    if (job.result.kind !== 'image') out.outputFigure.hidden = true;
    const text = await draw.result(job, out, size, signal);
    title.textContent = text;
    $('stream-summary').textContent = text;
    $('stream').dataset.kind = job.result.kind;
    state.lastJob = job;
    draw.timings(job.timings, $('stream-timings'));
  }

  /* Called for every new picture the video shows: send it if a slot is
     free, else drop it. Each run has its own chain of callbacks, so one
     left over from a stopped run ends there. */
  function onFrame(run) {
    if (!state.running || run !== state.run) return;
    const video = $('stream-video');
    if (video.readyState >= 2 && video.videoWidth) {
      if (run.inFlight < maxInFlight()) sendFrame(video, run);
      else state.counts.dropped += 1;
    }
    nextFrame(run);
  }

  function nextFrame(run) {
    const video = $('stream-video');
    if (typeof video.requestVideoFrameCallback === 'function') video.requestVideoFrameCallback(() => onFrame(run));
    else setTimeout(() => onFrame(run), 33);
  }

  // --------------------------------------------------------------- sources

  async function openCamera(video) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error('This browser offers no camera here (a camera needs HTTPS or localhost).');
    }
    state.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    video.srcObject = state.stream;
  }

  function closeCamera() {
    if (state.stream) for (const t of state.stream.getTracks()) t.stop();
    state.stream = null;
  }

  async function start() {
    if (state.running || state.starting) return;
    if (!InferQ.app.currentModel()) return status('Choose a model first.', 'error');
    if (state.mode === 'video' && !state.fileUrl) return status('Choose a video file first.', 'error');
    const video = $('stream-video');
    // The figures of the last run go at once, not when the camera is up.
    state.starting = true;
    $('stream-start').disabled = true;
    state.run = null;
    resetPanel();
    try {
      if (state.mode === 'camera') await openCamera(video);
      await video.play();
    } catch (err) {
      closeCamera();
      $('stream-start').disabled = false;
      const denied = err.name === 'NotAllowedError' ? ' (camera permission refused)' : '';
      return status('Could not start: ' + err.message + denied, 'error');
    } finally {
      state.starting = false;
    }
    state.run = { abort: new AbortController(), inFlight: 0, peak: 0 };
    state.running = true;
    $('stream-start').disabled = true;
    $('stream-stop').disabled = false;
    status((state.mode === 'camera' ? 'Camera' : 'Video') + ' running: up to ' + maxInFlight() + ' frames in flight.', 'ok');
    clearInterval(state.painter);
    state.painter = setInterval(paint, 250);
    nextFrame(state.run);
  }

  /* Stops capturing; answers still in flight are discarded. */
  function stop(reason) {
    const was = state.running;
    state.running = false;
    if (state.run) state.run.abort.abort();
    clearInterval(state.painter);
    closeCamera();
    const video = $('stream-video');
    video.pause();
    if (state.mode === 'camera') video.srcObject = null;
    $('stream-start').disabled = false;
    $('stream-stop').disabled = true;
    paint();
    if (typeof reason === 'string') status('Stopped: ' + reason, 'error');
    else if (was) status('Stopped after ' + state.counts.drawn + ' frames drawn.');
  }

  function useVideoFile(file) {
    if (!file) return;
    stop();
    if (state.fileUrl) URL.revokeObjectURL(state.fileUrl);
    state.fileUrl = URL.createObjectURL(file);
    const video = $('stream-video');
    video.srcObject = null;
    video.src = state.fileUrl;
    status('Chosen: ' + file.name + '. Press Start to play it and send its frames.');
  }

  /* Image, Camera or Video file: shows the matching controls. */
  function setMode(mode) {
    if (mode === state.mode) return;
    stop();
    const live = mode !== 'image';
    if (live && state.mode === 'image') state.resultWasHidden = $('result').hidden;
    state.mode = mode;
    $('image-input').hidden = live;
    $('stream').hidden = !live;
    $('result').hidden = live || state.resultWasHidden !== false;
    $('video-field').hidden = mode !== 'video';
    const video = $('stream-video');
    if (mode === 'video' && state.fileUrl) video.src = state.fileUrl;
    else video.removeAttribute('src');
    $('stream-title').textContent = mode === 'camera' ? 'Camera' : 'Video file';
    $('stream-start').textContent = mode === 'camera' ? 'Start camera' : 'Play and send';
    status(mode === 'camera' ? 'Press “Start camera”; the browser asks for permission.' : live ? 'Choose a video file, then press “Play and send”.' : '');
    clearDrawing();
  }

  function init() {
    for (const radio of document.querySelectorAll('input[name="mode"]')) {
      radio.addEventListener('change', (e) => e.target.checked && setMode(e.target.value));
    }
    $('stream-start').addEventListener('click', start);
    $('stream-stop').addEventListener('click', () => stop());
    $('video-file').addEventListener('change', (e) => useVideoFile(e.target.files[0]));
    $('max-inflight').addEventListener('change', paint);
    // A new model resets the figures: they describe one model at a time.
    $('model').addEventListener('change', () => state.running && resetPanel());
    $('version').addEventListener('change', () => state.running && resetPanel());
    document.addEventListener('visibilitychange', () => document.hidden && state.running && stop('the tab was hidden.'));
    const checked = document.querySelector('input[name="mode"]:checked');
    if (checked && checked.value !== 'image') setMode(checked.value);
  }

  InferQ.stream = { start, stop, setMode };
  init();
})();
