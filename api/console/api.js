/* InferQ console: talking to the API.
 *
 * Every call goes through request(), which adds the API key (if the user gave
 * one) and, when the server answers 401, asks for a key in a dialog and tries
 * again. The key lives in sessionStorage only: it is gone when the tab
 * closes and is never written anywhere else. Errors come back as ApiError
 * with the server's problem+json `code` and `detail`.
 */
(function () {
  'use strict';
  const InferQ = (window.InferQ = window.InferQ || {});
  const STORAGE = 'inferq.apiKey';
  const TERMINAL = ['succeeded', 'failed', 'canceled', 'expired', 'dead_lettered'];

  class ApiError extends Error {
    constructor(status, problem, message) {
      super(message);
      this.status = status;
      this.code = problem && problem.code;
      this.problem = problem;
    }
  }

  function key() {
    try {
      return sessionStorage.getItem(STORAGE);
    } catch (_) {
      return null;
    }
  }

  function setKey(value) {
    try {
      if (value) sessionStorage.setItem(STORAGE, value);
      else sessionStorage.removeItem(STORAGE);
    } catch (_) {
      /* storage off: the key is simply not remembered */
    }
    document.dispatchEvent(new CustomEvent('inferq:key'));
  }

  let asking = null;

  /* Shows the key dialog; resolves to the key, or null when cancelled.
     Concurrent callers share one dialog. */
  function askKey(reason) {
    if (asking) return asking;
    const dialog = document.getElementById('key-dialog');
    const input = document.getElementById('key-input');
    document.getElementById('key-reason').textContent = reason;
    input.value = '';
    asking = new Promise((resolve) => {
      const done = () => {
        dialog.removeEventListener('close', done);
        asking = null;
        const value = input.value.trim();
        input.value = '';
        if (dialog.returnValue === 'ok' && value) {
          setKey(value);
          resolve(value);
        } else {
          resolve(null);
        }
      };
      dialog.addEventListener('close', done);
      dialog.returnValue = '';
      dialog.showModal();
      input.focus();
    });
    return asking;
  }

  async function readProblem(resp) {
    try {
      const text = await resp.text();
      return JSON.parse(text);
    } catch (_) {
      return null;
    }
  }

  /* fetch() with the key; `prompt: false` turns the 401 dialog off (for
     background polling, which must not nag); `key` sends that key instead
     of the tab's for this one call (an admin key for an upload). */
  async function request(path, options = {}) {
    const { prompt = true, key: override, ...init } = options;
    for (;;) {
      const headers = new Headers(init.headers || {});
      const current = override || key();
      if (current) headers.set('Authorization', 'Bearer ' + current);
      let resp;
      try {
        resp = await fetch(path, { ...init, headers });
      } catch (e) {
        if (e.name === 'AbortError') throw e;
        throw new ApiError(0, null, 'The server cannot be reached (' + e.message + ').');
      }
      if (resp.ok || resp.status === 304) return resp;
      const problem = await readProblem(resp);
      const detail = (problem && problem.detail) || resp.statusText || 'HTTP ' + resp.status;
      if (resp.status === 401) {
        InferQ.authRequired = true;
        document.dispatchEvent(new CustomEvent('inferq:auth'));
        if (prompt) {
          const reason = current
            ? 'The server did not accept that key. Enter another one.'
            : 'This server asks for an API key.';
          if (current && !override) setKey(null);
          if (await askKey(reason)) continue;
        }
        throw new ApiError(401, problem, 'An API key is needed: ' + detail);
      }
      throw new ApiError(resp.status, problem, detail);
    }
  }

  async function json(path, options) {
    const resp = await request(path, options);
    return resp.json();
  }

  /* Long-polls a job until it is final, reporting each state on the way.
     A long-poll answers early only when the job is final, so a caller that
     shows progress on the way (a video job's frames) asks for a short
     `waitSecs`: it then hears the current state that often. */
  async function waitJob(id, onUpdate, signal, waitSecs = 25) {
    const path = '/v1/jobs/' + encodeURIComponent(id) + '?wait=' + waitSecs;
    for (;;) {
      const job = await json(path, { signal, cache: 'no-store' });
      onUpdate(job);
      if (TERMINAL.includes(job.status)) return job;
    }
  }

  /* An object URL for a binary resource that needs the key (output images
     and videos: an <img> or <video> src cannot send the Authorization
     header, and a refusal comes back as an ApiError to show, not as a
     silently broken picture). */
  async function blobUrl(path, signal) {
    const resp = await request(path, { signal });
    return URL.createObjectURL(await resp.blob());
  }

  InferQ.api = { ApiError, TERMINAL, key, setKey, askKey, request, json, waitJob, blobUrl };
})();
