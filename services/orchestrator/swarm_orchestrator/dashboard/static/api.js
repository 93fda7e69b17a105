// The REST client: the bearer token kept in localStorage, errors as ApiError (the API's
// {code, message, details}), a 429 waited out (Retry-After), and a pace well under the
// API's per-token rate limit (20 requests/s by default) however busy the page gets.

import { sleep } from './dom.js';

const TOKEN_KEY = 'swarm.token';
const RATE = 8; // requests per second, sustained: the API allows 20 per token by default
const BURST = 40;
const MAX_429_RETRIES = 5;

export const auth = {
  token: readToken(),
  /** Called with the ApiError of any 401; the app shows the login form again. */
  onUnauthorized: null,
};

function readToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(token) {
  auth.token = token || '';
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage refused (private mode): the token lives for this page only
  }
}

export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export const stats = { requests: 0, throttled: 0, rateLimited: 0 };
window.swarmApi = stats; // read by the benchmark

// A token bucket: bursts of up to BURST requests (a page load, a refetch after a
// reconnect), RATE per second sustained; and a pause set by a 429.
let budget = BURST;
let refilled = performance.now();
let pausedUntil = 0;

async function pace() {
  for (;;) {
    const now = performance.now();
    if (now < pausedUntil) {
      await sleep(pausedUntil - now);
      continue;
    }
    budget = Math.min(BURST, budget + ((now - refilled) * RATE) / 1000);
    refilled = now;
    if (budget >= 1) {
      budget -= 1;
      stats.requests += 1;
      return;
    }
    stats.throttled += 1;
    await sleep(((1 - budget) * 1000) / RATE + 1);
  }
}

/** Note a 429's Retry-After (seconds) so every request waits it out. */
export function backOff(response) {
  const seconds = Number(response.headers.get('Retry-After')) || 1;
  stats.rateLimited += 1;
  pausedUntil = Math.max(pausedUntil, performance.now() + seconds * 1000);
  return seconds;
}

export function headers(extra = {}) {
  const out = { Accept: 'application/json', ...extra };
  if (auth.token) out.Authorization = `Bearer ${auth.token}`;
  return out;
}

/** `query`: an object or a list of [name, value] pairs (names may repeat). */
export function url(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  const pairs = Array.isArray(query) ? query : Object.entries(query);
  for (const [k, v] of pairs) {
    if (v !== null && v !== undefined) params.append(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

export async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const code = (body && body.code) || 'http_error';
  const message = (body && body.message) || `${response.status} ${response.statusText}`;
  return new ApiError(response.status, code, message, body ? body.details : null);
}

/** Call the API; resolves to the parsed JSON body, rejects with an ApiError. */
export async function api(path, { method = 'GET', body, query, signal } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    await pace();
    const init = { method, headers: headers(), signal, cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url(path, query), init);
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError(0, 'network_error', 'the server cannot be reached');
    }
    if (response.status === 429 && attempt < MAX_429_RETRIES) {
      backOff(response);
      continue;
    }
    if (!response.ok) {
      const error = await errorOf(response);
      if (response.status === 401 && auth.onUnauthorized) auth.onUnauthorized(error);
      throw error;
    }
    if (response.status === 204) return null;
    return response.json();
  }
}

export function post(path, body) {
  return api(path, { method: 'POST', body });
}
