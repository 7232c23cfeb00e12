// server.js — a fake provider API for the tests: bearer-authenticated GETs,
// counted per fixed window, with switches for 429 + Retry-After, 5xx bursts
// and slowness.  Node's standard library only.
//
//   node server.js PORT WINDOW_SECONDS      prints {"port": N} when listening
//
// Any GET with "Authorization: Bearer <anything>" answers 200 {"ok": true},
// unless a fault is armed.  Without a bearer token: 401 with WWW-Authenticate.
//
// GET /reports/<type>?start=YYYY-MM-DD&end=YYYY-MM-DD&page=N&per_page=N[&fields=a,b]
// is a paged report (the generic report adapter's wire format): a JSON array
// of rows, rows_per_day rows for each day of the range (campaign_id c1, c2,
// ...; impressions, clicks, conversions, spend derived from the type, day
// and campaign, so the same question always gets the same answer), "date"
// and "campaign_id" always, the other columns only those named in fields
// when given.  Headers X-Total-Count, X-Total-Pages, and Link rel="next"
// while there are more pages.  Bad parameters: 400 {"error": ...}.
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
//   POST /__control/hang    {"count": n}: the next n calls are never answered (timeouts)
//   POST /__control/report  {"rows_per_day": n (default 3), "malformed": n}: the next
//                           n report pages are cut in half (not JSON)
//   Every arrival is [epoch ms, status, path and query].
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
let hang = 0;           // calls left to leave unanswered
let rowsPerDay = 3;
let malformed = 0;      // report pages left to cut in half

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
  else if (what === 'hang') hang = body.count || 0;
  else if (what === 'report') {
    if (body.rows_per_day !== undefined) rowsPerDay = body.rows_per_day;
    if (body.malformed !== undefined) malformed = body.malformed;
  }
  else if (what === 'reset') {
    windows = new Map(); arrivals = []; total = 0; rejected = 0; fault = null; delayMs = 0;
    quota = null; hang = 0; rowsPerDay = 3; malformed = 0;
  }
  else return json(res, 404, { error: 'no such control' });
  return json(res, 200, { ok: true });
}

const DAY_MS = 86400000;
const DAY_RE = /^\d{4}-\d{2}-\d{2}$/;

// A small deterministic number from a string (FNV-1a).
function hash(text) {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 16777619); }
  return h >>> 0;
}

function reportRow(type, day, k, fields) {
  const h = hash(`${type}/${day}/${k}`);
  const all = {
    date: day, campaign_id: `c${k}`,
    impressions: 1000 + (h % 9000), clicks: 10 + (h % 500), conversions: h % 40,
    spend: ((h % 100000) / 100).toFixed(2),
  };
  if (!fields) return all;
  const row = { date: day, campaign_id: all.campaign_id };
  for (const f of fields) if (f in all) row[f] = all[f];
  return row;
}

// GET /reports/<type>: the page asked for, with the paging headers.
function report(req, res, url, type) {
  const q = url.searchParams;
  const start = q.get('start'), end = q.get('end');
  const page = Number(q.get('page') || 1), perPage = Number(q.get('per_page') || 100);
  if (!DAY_RE.test(start || '') || !DAY_RE.test(end || '') || end < start)
    return json(res, 400, { error: 'start and end must be days (YYYY-MM-DD), end >= start' });
  if (!Number.isInteger(page) || page < 1 || !Number.isInteger(perPage) || perPage < 1 || perPage > 1000)
    return json(res, 400, { error: 'page must be >= 1 and per_page 1..1000' });
  const fields = q.get('fields') ? q.get('fields').split(',') : null;
  const days = (Date.parse(end) - Date.parse(start)) / DAY_MS + 1;
  const count = days * rowsPerDay;
  const pages = Math.max(1, Math.ceil(count / perPage));
  const rows = [];
  for (let i = (page - 1) * perPage; i < Math.min(count, page * perPage); i++) {
    const day = new Date(Date.parse(start) + Math.floor(i / rowsPerDay) * DAY_MS).toISOString().slice(0, 10);
    rows.push(reportRow(type, day, (i % rowsPerDay) + 1, fields));
  }
  const headers = { 'X-Total-Count': String(count), 'X-Total-Pages': String(pages) };
  if (page < pages) {
    const next = new URL(url);
    next.searchParams.set('page', String(page + 1));
    headers.Link = `<http://127.0.0.1:${server.address().port}${next.pathname}${next.search}>; rel="next"`;
  }
  let text = JSON.stringify(rows);
  if (malformed > 0) { malformed--; text = text.slice(0, Math.floor(text.length / 2)); }
  res.writeHead(200, { 'Content-Type': 'application/json', ...headers });
  return res.end(text);
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
    arrivals.push([arrived, fault.status, req.url]);
    const headers = {};
    if (fault.retry_after !== undefined) headers['Retry-After'] = String(fault.retry_after);
    if (fault.reset !== undefined) headers['X-RateLimit-Reset'] = String(fault.reset);
    return json(res, fault.status, { error: fault.status === 429 ? 'rate limit exceeded' : 'server error' }, headers);
  }
  if (hang > 0) {
    hang--;
    arrivals.push([arrived, 'hang', req.url]);
    return;   // never answered: the client times out
  }
  arrivals.push([arrived, 200, req.url]);
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
  if (url.pathname.startsWith('/reports/'))
    return report(req, res, url, decodeURIComponent(url.pathname.slice('/reports/'.length)));
  return json(res, 200, { ok: true }, headers);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.on('SIGTERM', () => {
  server.closeAllConnections();   // hung calls too
  server.close(() => process.exit(0));
});
