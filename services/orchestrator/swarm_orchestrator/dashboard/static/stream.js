// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, so the
// stream is read from response.body and parsed here (id:, data:, event:, retry:, comments).
// It reconnects with backoff and resumes with Last-Event-ID = the last id seen. A server
// that answers with JSON instead of a stream is polled with ?after= (older servers).

import { auth, backOff, errorOf, headers, url } from './api.js';
import { sleep } from './dom.js';

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
const IDLE_TIMEOUT_MS = 45000; // the server pings every ~15 s; silence longer is a dead link
const POLL_INTERVAL_MS = 1000;

export class EventStream {
  /**
   * @param {string} path  e.g. /v1/sessions/<id>/events
   * @param {object} opts  onEvent(data, id), onState(state), lastId (resume after it)
   */
  constructor(path, { onEvent, onState = () => {}, lastId = null } = {}) {
    this.path = path;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastId = lastId;
    this.closed = false;
    this.controller = null;
    this.delay = MIN_DELAY_MS;
    this.serverDelay = null;
    this.state = 'closed';
    this.received = 0;
  }

  start() {
    this.closed = false;
    this.loop();
    return this;
  }

  close() {
    this.closed = true;
    if (this.controller) this.controller.abort();
    this.setState('closed');
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.onState(state);
  }

  async loop() {
    while (!this.closed) {
      this.setState('connecting');
      let wait = null;
      try {
        wait = await this.connect();
      } catch (err) {
        if (this.closed) return;
        if (err && err.status === 401) {
          this.closed = true;
          this.setState('closed');
          if (auth.onUnauthorized) auth.onUnauthorized(err);
          return;
        }
        if (err && err.status === 404) {
          this.closed = true;
          this.setState('closed');
          return;
        }
      }
      if (this.closed) return;
      this.setState('retrying');
      const base = wait ?? Math.max(this.serverDelay ?? 0, this.delay);
      await sleep(base + Math.random() * 250);
      this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    }
  }

  /** One connection; returns a delay (ms) to wait before the next, or null for backoff. */
  async connect() {
    const controller = new AbortController();
    this.controller = controller;
    const extra = { Accept: 'text/event-stream' };
    if (this.lastId !== null && this.lastId !== '') extra['Last-Event-ID'] = String(this.lastId);
    const response = await fetch(this.path, {
      headers: headers(extra),
      signal: controller.signal,
      cache: 'no-store',
    });
    if (response.status === 429) return backOff(response) * 1000;
    if (!response.ok) throw await errorOf(response);
    const type = response.headers.get('Content-Type') || '';
    if (!type.startsWith('text/event-stream')) {
      await this.poll(response, controller);
      return null;
    }
    this.setState('open');
    this.delay = MIN_DELAY_MS;
    await this.read(response, controller);
    return null;
  }

  async read(response, controller) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser({
      onEvent: (data, id) => {
        if (id !== null) this.lastId = id;
        if (data !== null) this.dispatch(data, this.lastId);
      },
      onRetry: (ms) => { this.serverDelay = ms; },
    });
    let idle = setTimeout(() => controller.abort(), IDLE_TIMEOUT_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        clearTimeout(idle);
        idle = setTimeout(() => controller.abort(), IDLE_TIMEOUT_MS);
        parser.feed(decoder.decode(value, { stream: true }));
      }
      parser.feed(decoder.decode(), true);
    } finally {
      clearTimeout(idle);
      reader.cancel().catch(() => {});
    }
  }

  dispatch(text, id) {
    let payload;
    try {
      payload = JSON.parse(text);
    } catch {
      return; // not JSON: not ours
    }
    this.received += 1;
    this.onEvent(payload, id);
  }

  /** The server sent a JSON page: keep polling pages after the last id. */
  async poll(first, controller) {
    this.setState('open');
    let page = await first.json();
    for (;;) {
      if (Array.isArray(page)) {
        for (const ev of page) {
          this.lastId = ev.id;
          this.received += 1;
          this.onEvent(ev, ev.id);
        }
      }
      if (this.closed) return;
      if (!Array.isArray(page) || page.length < 1000) await sleep(POLL_INTERVAL_MS);
      if (this.closed) return;
      const response = await fetch(url(this.path, { after: this.lastId ?? 0, limit: 1000 }), {
        headers: headers(),
        signal: controller.signal,
        cache: 'no-store',
      });
      if (response.status === 429) {
        await sleep(backOff(response) * 1000);
        page = [];
        continue;
      }
      if (!response.ok) throw await errorOf(response);
      page = await response.json();
    }
  }
}

/**
 * The text/event-stream format, fed in pieces split anywhere (inside a "\r\n", inside a
 * line). onEvent(data | null, id | null) at each blank line; comments (": ping") skipped.
 */
export class SseParser {
  constructor({ onEvent, onRetry = () => {} }) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.buffer = '';
    this.data = [];
    this.id = null;
  }

  feed(text, final = false) {
    let t = this.buffer + text;
    // A trailing "\r" may be the first half of "\r\n": keep it for the next piece.
    const hold = !final && t.endsWith('\r') ? '\r' : '';
    if (hold) t = t.slice(0, -1);
    const lines = t.split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + hold;
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === '') {
      const data = this.data.length ? this.data.join('\n') : null;
      const id = this.id;
      this.data = [];
      this.id = null;
      if (data !== null || id !== null) this.onEvent(data, id);
      return;
    }
    if (line[0] === ':') return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.onRetry(Number(value));
  }
}
