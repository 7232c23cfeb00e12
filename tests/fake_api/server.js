// server.js — a fake provider API for the tests: bearer-authenticated GETs,
// counted per fixed window, with switches for 429 + Retry-After, 5xx bursts
// and slowness.  Node's standard library only.
//
//   node server.js PORT WINDOW_SECONDS      prints {"port": N} when listening
//
// Any GET with "Authorization: Bearer <anything>" answers 200 {"ok": true},
// unless a fault is armed.  Without a bearer token: 401 with WWW-Authenticate.
// Control (JSON):
//   GET  /__control/stats   {"total": n, "windows": {"<epoch s of window start>": n, ...},
//                            "max_in_window": n, "rejected": n,
//                            "first_ms": epoch ms of the first call, "last_ms": of the last}
//   GET  /__control/arrivals {"arrivals": [[epoch ms, status], ...]}
//   POST /__control/fault   {"status": 429|500|503, "count": n, "after": n, "retry_after": s,
//                            "reset": s}: after `after` more good answers, the next n
//                           fail so, with Retry-After and/or X-RateLimit-Reset
//   POST /__control/delay   {"ms": n}
//   POST /__control/quota   {"after": n, "reset": s}: after n more good answers (which say
//                           X-RateLimit-Remaining: 1000), one says 0 left until s seconds on
//   POST /__control/reset
'use strict';

const http = require('node:http');

const port = Number(process.argv[2] || 0);
const windowSeconds = Number(process.argv[3] || 60);

let windows = new Map();
let arrivals = [];      // [ms since the epoch, status], in order
let total = 0;
let rejected = 0;
let fault = null;       // {status, count, retry_after}
let delayMs = 0;
let quota = null;       // {after, reset}: the answer after `after` more says 0 calls left

function windowStart(ms) {
  return Math.floor(ms / 1000 / windowSeconds) * windowSeconds;
}

function json(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => {
      try { resolve(data ? JSON.parse(data) : {}); } catch { resolve({}); }
    });
  });
}

async function control(req, res, what) {
  if (what === 'stats') {
    const obj = {};
    let max = 0;
    for (const [k, v] of windows) { obj[k] = v; max = Math.max(max, v); }
    const first = arrivals.length ? arrivals[0][0] : null;
    const last = arrivals.length ? arrivals[arrivals.length - 1][0] : null;
    return json(res, 200, { total, windows: obj, max_in_window: max, rejected,
                            first_ms: first, last_ms: last });
  }
  if (what === 'arrivals') return json(res, 200, { arrivals });
  const body = await readBody(req);
  if (what === 'fault') {
    fault = { status: body.status, count: body.count || 1, after: body.after || 0,
              retry_after: body.retry_after, reset: body.reset };
  }
  else if (what === 'delay') delayMs = body.ms || 0;
  else if (what === 'quota') quota = { after: body.after || 0, reset: body.reset || 60 };
  else if (what === 'reset') {
    windows = new Map(); arrivals = []; total = 0; rejected = 0; fault = null; delayMs = 0;
    quota = null;
  }
  else return json(res, 404, { error: 'no such control' });
  return json(res, 200, { ok: true });
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname.startsWith('/__control/'))
    return control(req, res, url.pathname.slice('/__control/'.length));
  const arrived = Date.now();
  if (!/^Bearer \S+$/.test(req.headers.authorization || ''))
    return json(res, 401, { error: 'unauthorized' }, { 'WWW-Authenticate': 'Bearer' });
  // Counted as it arrives: what the provider would hold against the quota.
  const w = windowStart(arrived);
  windows.set(w, (windows.get(w) || 0) + 1);
  total++;
  if (fault && fault.after > 0) {
    fault.after--;
  } else if (fault && fault.count > 0) {
    fault.count--;
    rejected++;
    arrivals.push([arrived, fault.status]);
    const headers = {};
    if (fault.retry_after !== undefined) headers['Retry-After'] = String(fault.retry_after);
    if (fault.reset !== undefined) headers['X-RateLimit-Reset'] = String(fault.reset);
    return json(res, fault.status, { error: fault.status === 429 ? 'rate limit exceeded' : 'server error' }, headers);
  }
  arrivals.push([arrived, 200]);
  if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
  let headers = {};
  if (quota) {
    if (quota.after > 0) {
      quota.after--;
      headers = { 'X-RateLimit-Remaining': '1000' };
    } else {
      headers = { 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(quota.reset) };
      arrivals[arrivals.length - 1][1] = 'exhausted';
      quota = null;
    }
  }
  return json(res, 200, { ok: true }, headers);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
