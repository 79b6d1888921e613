/* InferQ console: the live service panel.
 *
 * Polls GET /v1/stats every 2 s while the tab is visible and shows, per
 * model, the backlog, the age of the oldest waiting job, throughput and
 * latency percentiles, plus a sparkline of the total throughput. The numbers
 * come from the shared store, so they describe the whole service, not just
 * the API process that answers. Polling never opens the key dialog (that is
 * left to the user's own actions), backs off on errors, and can be paused:
 * moving content must be stoppable.
 */
(function () {
  'use strict';
  const InferQ = (window.InferQ = window.InferQ || {});
  const PERIOD_MS = 2000;
  const HISTORY = 60;
  const { el, svg, num } = InferQ.draw;

  const state = { paused: false, timer: null, history: [], failures: 0, started: false };

  function status(text, isError) {
    const node = document.getElementById('live-status');
    node.textContent = text;
    node.classList.toggle('error', !!isError);
  }

  const ms = (p, key) => (p ? num(p[key], p[key] < 10 ? 2 : 1) + ' ms' : '–');
  const secs = (s) => (s > 0 ? num(s, s < 10 ? 2 : 0) + ' s' : '0');

  function row(m) {
    const failed = Object.entries(m.outcomes || {})
      .filter(([k]) => k !== 'succeeded')
      .reduce((n, [, v]) => n + v, 0);
    const finished = String(m.completed) + (failed ? ' (' + failed + ' not succeeded)' : '');
    const cells = [
      el('th', { scope: 'row' }, m.model),
      el('td', { class: 'num' }, String(m.backlog)),
      el('td', { class: 'num' }, secs(m.oldest_waiting_secs)),
      el('td', { class: 'num' }, num(m.throughput_per_sec, 2)),
      el('td', { class: 'num' }, ms(m.latency_ms, 'p50')),
      el('td', { class: 'num' }, ms(m.latency_ms, 'p90')),
      el('td', { class: 'num' }, ms(m.latency_ms, 'p99')),
      el('td', { class: 'num' }, finished),
    ];
    return el('tr', { 'data-model': m.model }, ...cells);
  }

  function sparkline(values) {
    const box = document.getElementById('spark');
    const max = Math.max(1, ...values);
    const w = HISTORY - 1;
    const pts = values.map((v, i) => [w - (values.length - 1 - i), 40 - (36 * v) / max]);
    const now = values.length ? values[values.length - 1] : 0;
    const chart = svg('svg', { viewBox: '0 0 ' + w + ' 40', preserveAspectRatio: 'none', role: 'img', 'aria-label': 'Total throughput over the last two minutes; now ' + num(now, 2) + ' jobs per second, peak ' + num(Math.max(0, ...values), 2) });
    if (pts.length > 1) {
      const line = pts.map(([x, y]) => x + ',' + y.toFixed(2)).join(' ');
      chart.append(svg('polygon', { class: 'area', points: pts[0][0] + ',40 ' + line + ' ' + w + ',40' }));
      chart.append(svg('polyline', { class: 'line', points: line }));
    }
    box.replaceChildren(chart);
  }

  function render(stats) {
    const body = document.querySelector('#live-table tbody');
    body.replaceChildren(...stats.models.map(row));
    const table = document.getElementById('live-table');
    let foot = table.querySelector('tfoot');
    if (!foot) {
      foot = el('tfoot');
      table.append(foot);
    }
    const t = stats.totals;
    foot.replaceChildren(el('tr', {},
      el('td', {}, 'All models'),
      el('td', { class: 'num' }, String(t.backlog)),
      el('td', {}, ''),
      el('td', { class: 'num' }, num(t.throughput_per_sec, 2)),
      el('td', {}, ''), el('td', {}, ''), el('td', {}, ''),
      el('td', { class: 'num' }, String(t.completed))));
    state.history.push(t.throughput_per_sec);
    if (state.history.length > HISTORY) state.history.shift();
    sparkline(state.history);
    document.getElementById('live-note').textContent =
      'Read from GET /v1/stats every 2 s: jobs finished in the last ' + num(stats.window_secs, 0) +
      ' s, as every API replica sees them. Latency is acceptance to result of the succeeded jobs.';
  }

  async function tick() {
    state.timer = null;
    if (state.paused || document.hidden) return;
    try {
      render(await InferQ.api.json('/v1/stats', { prompt: false, cache: 'no-store' }));
      state.failures = 0;
      status('Updated ' + new Date().toLocaleTimeString() + '.');
    } catch (e) {
      state.failures += 1;
      if (e.status === 401) status('The service numbers need an API key: run a job or use the “API key…” button.', true);
      else if (e.status === 403) status('This API key may not read the service numbers (it needs the read scope).', true);
      else status('Could not read the service numbers: ' + e.message, true);
    }
    schedule();
  }

  function schedule() {
    if (state.timer || state.paused) return;
    // Back off up to 30 s while the server keeps failing.
    const delay = Math.min(30000, PERIOD_MS * 2 ** Math.min(state.failures, 4));
    state.timer = setTimeout(tick, delay);
  }

  function refreshSoon() {
    if (state.paused) return;
    clearTimeout(state.timer);
    state.timer = setTimeout(tick, 150);
  }

  function start() {
    if (state.started) return;
    state.started = true;
    const toggle = document.getElementById('live-toggle');
    toggle.addEventListener('click', () => {
      state.paused = !state.paused;
      toggle.setAttribute('aria-pressed', String(state.paused));
      toggle.textContent = state.paused ? 'Resume updates' : 'Pause updates';
      if (state.paused) {
        clearTimeout(state.timer);
        state.timer = null;
        status('Updates paused.');
      } else {
        refreshSoon();
      }
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) refreshSoon();
    });
    document.addEventListener('inferq:key', refreshSoon);
    tick();
  }

  InferQ.stats = { start, refreshSoon };
})();
