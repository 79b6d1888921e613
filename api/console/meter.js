/* InferQ console: the frame meter of the Camera and Video file modes.
 *
 * Keeps the end-to-end latency of the last WINDOW frames (from capturing a
 * frame to drawing its answer) and the times the answers were drawn, and
 * turns them into frames per second and latency percentiles. A sliding
 * window, not a running total, so the figures follow a change of model or
 * of the number of frames in flight within a few seconds. Pure arithmetic:
 * no DOM, nothing to wait for.
 */
(function () {
  'use strict';
  const InferQ = (window.InferQ = window.InferQ || {});

  /* The nearest-rank percentile of sorted values (q in 0..100). */
  function percentile(sorted, q) {
    if (!sorted.length) return NaN;
    const rank = Math.ceil((q / 100) * sorted.length);
    return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
  }

  class Meter {
    constructor(window = 100, rateSpanMs = 3000) {
      this.window = window;
      this.rateSpanMs = rateSpanMs;
      this.reset();
    }

    reset() {
      this.latencies = []; // ms, oldest first, at most `window`
      this.drawnAt = []; // performance.now() of recent answers drawn
    }

    /* One answer drawn `latencyMs` after its frame was captured. */
    add(latencyMs, now = performance.now()) {
      this.latencies.push(latencyMs);
      if (this.latencies.length > this.window) this.latencies.shift();
      this.drawnAt.push(now);
      while (this.drawnAt.length > 1 && now - this.drawnAt[0] > this.rateSpanMs) this.drawnAt.shift();
    }

    /* Answers drawn per second over the last few seconds. */
    fps(now = performance.now()) {
      const recent = this.drawnAt.filter((t) => now - t <= this.rateSpanMs);
      if (recent.length < 2) return recent.length ? recent.length / (this.rateSpanMs / 1000) : 0;
      const span = Math.max(now - recent[0], 1);
      return (recent.length - 1) / (span / 1000);
    }

    /* {p50, p95, p99, count} over the window, in ms (NaN when empty). */
    summary() {
      const sorted = [...this.latencies].sort((a, b) => a - b);
      return { p50: percentile(sorted, 50), p95: percentile(sorted, 95), p99: percentile(sorted, 99), count: sorted.length };
    }
  }

  InferQ.meter = { Meter, percentile };
})();
