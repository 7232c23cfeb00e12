// server.js — a real OAuth 2.0 authorization server for Sluice's tests: oauth2-mock-server, made strict.
//
//   node server.js [PORT [CLIENT_ID [CLIENT_SECRET]]]
//
// Listens on 127.0.0.1:PORT (0 or nothing: any free port) and prints one line,
// {"port":N}, on stdout once it listens.  The one registered client comes from
// the arguments, else from OAUTH_CLIENT_ID / OAUTH_CLIENT_SECRET.
//
// DESIGN
// 1. oauth2-mock-server does the protocol: /authorize redirects with a code,
//    /token signs JWT access tokens and id_tokens, /userinfo, /jwks, PKCE.
//    On its own it is lenient: any client, any code, any refresh token.
// 2. A small handler in front of its request handler makes it behave like a
//    strict production server.  For POST /token it reads the form, counts
//    it, applies the fault and delay switches, authenticates the client
//    (client_secret_basic with RFC 6749 2.3.1 form-decoding, or
//    client_secret_post; never both), checks the grant against what this
//    server issued, and only then hands the request on with the parsed body.
//    Refusals are RFC 6749 5.2 JSON bodies.
// 3. Codes come from /authorize (beforeAuthorizeRedirect records them with
//    their client, redirect_uri and code_challenge), live 10 minutes and are
//    used once; a reused code also revokes every token issued from it
//    (RFC 6749 4.1.2).  A code issued with a code_challenge needs its
//    code_verifier (RFC 7636 4.6: invalid_grant otherwise).
// 4. Refresh tokens rotate: beforeResponse replaces the library's refresh
//    token with one this server tracks, and every use marks the old one used.
//    Unknown, used and revoked refresh tokens get invalid_grant.
// 5. Access tokens are remembered with their expiry (token_ttl); /resource
//    and /userinfo take only a current one as Bearer (RFC 6750 3), else 401
//    with WWW-Authenticate.
// 6. /__control/* (JSON) steers and inspects it.  Nothing is logged:
//    tokens and secrets stay in memory.
//
// Control endpoints
//   GET  /__control/stats      {"token":N,"authorization_code":N,"refresh_token":N,
//                              "client_credentials":N,"other_grant":N,"authorize":N,
//                              "resource":N,"resource_ok":N,"resource_denied":N}
//                              (token requests count when they arrive, refused or not;
//                              resource counts GET /resource and GET /userinfo)
//   POST /__control/revoke     {} every refresh token; {"refresh_token":T} that one;
//                              "access_tokens":true also every access token
//   POST /__control/fault      {"status":429|500|503|4xx,"count":N,"retry_after":S or
//                              "HTTP-date","error":E,"description":D,"target":"token"|
//                              "resource"}: the next N answers of the target fail so
//   POST /__control/token_ttl  {"seconds":N}: lifetime of access tokens issued from now
//   POST /__control/delay      {"ms":N}: every token request waits N ms first
//   POST /__control/reset      back to the start: no codes, tokens, faults or counts
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const { OAuth2Server } = require('oauth2-mock-server');

const PORT = Number(process.argv[2] ?? 0);
const CLIENT_ID = process.argv[3] ?? process.env.OAUTH_CLIENT_ID ?? 'sluice-test';
const CLIENT_SECRET = process.argv[4] ?? process.env.OAUTH_CLIENT_SECRET ?? 'sluice-test-secret';
const REALM = 'sluice-test';
const CODE_LIFETIME_MS = 10 * 60 * 1000;
const MAX_BODY = 64 * 1024;
const GRANTS = ['authorization_code', 'refresh_token', 'client_credentials'];

let state = fresh();

function fresh() {
	return {
		codes: new Map(),     // code -> { clientId, redirectUri, challenge, method, scope, issuedAt, used }
		refresh: new Map(),   // refresh token -> { clientId, family, sub, scope, status: active|used|revoked }
		access: new Map(),    // access token -> { expiresAt, sub, family }
		stats: {
			token: 0, authorization_code: 0, refresh_token: 0, client_credentials: 0,
			other_grant: 0, authorize: 0, resource: 0, resource_ok: 0, resource_denied: 0,
		},
		faults: { token: null, resource: null },  // { status, count, retryAfter, error, description }
		ttl: 3600,
		delayMs: 0,
	};
}

// ---- small helpers -----------------------------------------------------

function send(res, status, body, headers = {}) {
	const text = JSON.stringify(body);
	res.writeHead(status, {
		'Content-Type': 'application/json',
		'Content-Length': Buffer.byteLength(text),
		'Cache-Control': 'no-store',
		...headers,
	});
	res.end(text);
}

function oauthError(res, status, error, description, headers) {
	send(res, status, { error, error_description: description }, headers);
}

function readBody(req) {
	return new Promise((resolve, reject) => {
		const parts = [];
		let n = 0;
		req.on('data', (chunk) => {
			n += chunk.length;
			if (n > MAX_BODY) {
				reject(Object.assign(new Error('request body too large'), { status: 413 }));
				req.destroy();
				return;
			}
			parts.push(chunk);
		});
		req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
		req.on('error', reject);
	});
}

// application/x-www-form-urlencoded; a parameter given twice is an error (RFC 6749 3.2).
function parseForm(text) {
	const form = {};
	for (const [k, v] of new URLSearchParams(text)) {
		if (Object.prototype.hasOwnProperty.call(form, k))
			return { error: `parameter ${k} given more than once` };
		form[k] = v;
	}
	return { form };
}

// The decoding RFC 6749 2.3.1 asks of client_secret_basic credentials; throws on a bad escape.
function formDecode(s) {
	return decodeURIComponent(s.replace(/\+/g, ' '));
}

function sameSecret(a, b) {
	const x = crypto.createHash('sha256').update(String(a)).digest();
	const y = crypto.createHash('sha256').update(String(b)).digest();
	return crypto.timingSafeEqual(x, y);
}

function s256(verifier) {
	return crypto.createHash('sha256').update(verifier).digest('base64url');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function revokeFamily(family) {
	for (const rec of state.refresh.values())
		if (rec.family === family)
			rec.status = 'revoked';
	for (const [token, rec] of state.access)
		if (rec.family === family)
			state.access.delete(token);
}

// Answers with the injected fault of `target` when one is armed; true if it did.
function fault(res, target) {
	const f = state.faults[target];
	if (!f || f.count <= 0)
		return false;
	f.count--;
	const headers = f.retryAfter === undefined ? {} : { 'Retry-After': String(f.retryAfter) };
	const error = f.error ?? (f.status === 429 ? 'slow_down' :
		f.status === 503 ? 'temporarily_unavailable' : 'server_error');
	oauthError(res, f.status, error, f.description ?? 'fault injected by the test', headers);
	return true;
}

// ---- the token endpoint's checks (DESIGN 2-4) --------------------------

// Which registered client made the request: { id } or { status, error, description }.
function authenticate(req, form) {
	const header = req.headers.authorization;
	const refuse = (description) => ({ status: 401, error: 'invalid_client', description });
	let id, secret, methods = 0;

	if (header !== undefined) {
		const m = /^Basic ([A-Za-z0-9+/]+=*)$/i.exec(header);
		if (!m)
			return refuse('unsupported or malformed Authorization header');
		const raw = Buffer.from(m[1], 'base64').toString('utf8');
		const colon = raw.indexOf(':');
		if (colon < 0)
			return refuse('malformed basic credentials');
		try {
			id = formDecode(raw.slice(0, colon));
			secret = formDecode(raw.slice(colon + 1));
		} catch {
			return refuse('basic credentials are not form-urlencoded (RFC 6749 2.3.1)');
		}
		methods++;
	}
	if ('client_secret' in form) {
		id = form.client_id;
		secret = form.client_secret;
		methods++;
	}
	if (methods > 1)
		return { status: 400, error: 'invalid_request',
		         description: 'more than one client authentication method' };
	if (methods === 0)
		return refuse('client authentication required');
	if ('client_id' in form && form.client_id !== id)
		return refuse('client_id does not match the authenticated client');
	if (id !== CLIENT_ID || !sameSecret(secret, CLIENT_SECRET))
		return refuse('client authentication failed');
	return { id };
}

// Checks the grant; returns what beforeResponse needs, or { error, description }.
function checkGrant(form, clientId) {
	const grant = form.grant_type;
	const refuse = (description) => ({ error: 'invalid_grant', description });

	if (grant === 'authorization_code') {
		const rec = state.codes.get(form.code);
		if (typeof form.code !== 'string' || !rec)
			return refuse('unknown authorization code');
		if (rec.used) {
			revokeFamily(form.code);
			return refuse('authorization code already used');
		}
		rec.used = true;
		if (rec.clientId !== clientId)
			return refuse('authorization code issued to another client');
		if (Date.now() - rec.issuedAt > CODE_LIFETIME_MS)
			return refuse('authorization code expired');
		if (form.redirect_uri !== rec.redirectUri)
			return refuse('redirect_uri does not match the authorization request');
		if (rec.challenge !== undefined) {
			const v = form.code_verifier;
			if (v === undefined)
				return refuse('code_verifier required: the code was issued with a code_challenge');
			if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(v) ||
			    (rec.method === 'S256' ? s256(v) : v) !== rec.challenge)
				return refuse('code_verifier does not match the code_challenge');
		}
		return { grant, clientId, family: form.code, sub: 'johndoe', scope: rec.scope };
	}
	if (grant === 'refresh_token') {
		const rec = state.refresh.get(form.refresh_token);
		if (typeof form.refresh_token !== 'string' || !rec || rec.clientId !== clientId)
			return refuse('unknown refresh token');
		if (rec.status === 'revoked')
			return refuse('refresh token revoked');
		if (rec.status === 'used')
			return refuse('refresh token already used: it was rotated');
		rec.status = 'used';
		return { grant, clientId, family: rec.family, sub: rec.sub, scope: rec.scope };
	}
	if (grant === 'client_credentials')
		return { grant, clientId, family: null, sub: clientId, scope: form.scope };
	if (grant === undefined)
		return { error: 'invalid_request', description: 'grant_type missing' };
	return { error: 'unsupported_grant_type', description: `grant_type ${grant} not supported` };
}

// POST /token: true when the library should answer (req.body is then set).
async function tokenGate(req, res) {
	const text = await readBody(req);
	const parsed = parseForm(text);
	const grant = parsed.form?.grant_type;

	state.stats.token++;
	state.stats[GRANTS.includes(grant) ? grant : 'other_grant']++;
	if (state.delayMs > 0)
		await sleep(state.delayMs);
	if (fault(res, 'token'))
		return false;
	if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) {
		oauthError(res, 400, 'invalid_request', 'the body must be application/x-www-form-urlencoded');
		return false;
	}
	if (parsed.error) {
		oauthError(res, 400, 'invalid_request', parsed.error);
		return false;
	}
	const client = authenticate(req, parsed.form);
	if (!client.id) {
		oauthError(res, client.status, client.error, client.description,
		           client.status === 401 ? { 'WWW-Authenticate': `Basic realm="${REALM}"` } : {});
		return false;
	}
	const ok = checkGrant(parsed.form, client.id);
	if (ok.error) {
		oauthError(res, 400, ok.error, ok.description);
		return false;
	}
	req.sluice = ok;
	req.body = parsed.form;
	req._body = true;   // body-parser then leaves req.body as it is
	return true;
}

// ---- GET /authorize (DESIGN 3) ----------------------------------------

function authorizeGate(req, res, url) {
	const q = url.searchParams;
	state.stats.authorize++;
	// RFC 6749 4.1.2.1: a bad client or redirect_uri is told to the user, not redirected.
	if (q.get('client_id') !== CLIENT_ID) {
		oauthError(res, 400, 'invalid_client', 'unknown client_id');
		return false;
	}
	let redirect;
	try {
		redirect = new URL(q.get('redirect_uri') ?? '');
	} catch {
		redirect = null;
	}
	if (!redirect || !/^https?:$/.test(redirect.protocol) || redirect.hash) {
		oauthError(res, 400, 'invalid_request', 'redirect_uri missing or not an absolute http(s) URI');
		return false;
	}
	for (const [k] of q)
		if (q.getAll(k).length > 1) {
			oauthError(res, 400, 'invalid_request', `parameter ${k} given more than once`);
			return false;
		}
	return true;
}

// ---- Bearer tokens (DESIGN 5) -----------------------------------------

// { ok, sub } or { ok: false, error, description }; sets WWW-Authenticate on a refusal.
function bearer(req, res) {
	const m = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/.exec(req.headers.authorization ?? '');
	const rec = m ? state.access.get(m[1]) : undefined;
	let verdict;

	state.stats.resource++;
	if (!m)
		verdict = { ok: false, error: 'invalid_request', description: 'no Bearer token' };
	else if (!rec)
		verdict = { ok: false, error: 'invalid_token', description: 'unknown or revoked access token' };
	else if (Date.now() >= rec.expiresAt)
		verdict = { ok: false, error: 'invalid_token', description: 'access token expired' };
	else
		verdict = { ok: true, sub: rec.sub };
	state.stats[verdict.ok ? 'resource_ok' : 'resource_denied']++;
	if (!verdict.ok)
		res.setHeader('WWW-Authenticate', m ?
			`Bearer realm="${REALM}", error="invalid_token", error_description="${verdict.description}"` :
			`Bearer realm="${REALM}"`);
	return verdict;
}

// ---- /__control/* (DESIGN 6) ------------------------------------------

async function control(req, res, what) {
	if (what === 'stats' && req.method === 'GET')
		return send(res, 200, state.stats);
	if (req.method !== 'POST')
		return send(res, 405, { error: 'method not allowed' }, { Allow: 'POST' });
	const text = await readBody(req);
	let body;
	try {
		body = text.trim() === '' ? {} : JSON.parse(text);
	} catch {
		return send(res, 400, { error: 'malformed JSON' });
	}
	if (typeof body !== 'object' || body === null || Array.isArray(body))
		return send(res, 400, { error: 'the body must be a JSON object' });

	switch (what) {
	case 'reset':
		state = fresh();
		return send(res, 200, { ok: true });
	case 'revoke': {
		// {} revokes every refresh token; {"refresh_token": T} one of them;
		// "access_tokens": true also revokes the access tokens (a user who
		// disconnected the app).
		let n = 0;
		for (const [token, rec] of state.refresh)
			if (body.refresh_token === undefined || body.refresh_token === token) {
				n += rec.status !== 'revoked';
				rec.status = 'revoked';
			}
		if (body.access_tokens === true)
			state.access.clear();
		return send(res, 200, { ok: true, revoked: n });
	}
	case 'fault': {
		const target = body.target ?? 'token';
		if (!Number.isInteger(body.status) || body.status < 400 || body.status > 599 ||
		    !(target in state.faults))
			return send(res, 400, { error: 'status must be 400-599, target token or resource' });
		// retry_after: seconds (a number) or any text sent as it is (an HTTP-date);
		// error and description replace the OAuth error code and error_description.
		state.faults[target] = { status: body.status, count: body.count ?? 1,
		                         retryAfter: body.retry_after, error: body.error,
		                         description: body.description };
		return send(res, 200, { ok: true });
	}
	case 'token_ttl':
		if (!Number.isInteger(body.seconds) || body.seconds < 0)
			return send(res, 400, { error: 'seconds must be an integer >= 0' });
		state.ttl = body.seconds;
		return send(res, 200, { ok: true });
	case 'delay':
		if (!Number.isInteger(body.ms) || body.ms < 0 || body.ms > 60000)
			return send(res, 400, { error: 'ms must be an integer 0-60000' });
		state.delayMs = body.ms;
		return send(res, 200, { ok: true });
	default:
		return send(res, 404, { error: 'unknown control endpoint' });
	}
}

// ---- the library and its hooks ----------------------------------------

const oauth = new OAuth2Server();
const service = oauth.service;

service.on('beforeAuthorizeRedirect', (redirect, req) => {
	const code = redirect.url.searchParams.get('code');
	if (code === null)
		return;
	state.codes.set(code, {
		clientId: req.query.client_id,
		redirectUri: req.query.redirect_uri,
		challenge: req.query.code_challenge,
		method: req.query.code_challenge_method ?? 'plain',
		scope: req.query.scope,
		issuedAt: Date.now(),
		used: false,
	});
});

service.on('beforeTokenSigning', (token, req) => {
	const s = req.sluice;
	token.payload.exp = token.payload.iat + state.ttl;
	token.payload.jti = crypto.randomUUID();   // two tokens of one second still differ
	if (s?.grant === 'client_credentials')
		token.payload.sub = s.clientId;
});

service.on('beforeResponse', (response, req) => {
	const s = req.sluice;
	const body = response.body;
	if (response.statusCode !== 200 || !s)
		return;
	body.expires_in = state.ttl;
	if (s.scope !== undefined)
		body.scope = s.scope;
	state.access.set(body.access_token, {
		expiresAt: Date.now() + state.ttl * 1000, sub: s.sub, family: s.family,
	});
	if (s.grant === 'client_credentials') {
		delete body.refresh_token;
		return;
	}
	const refresh = crypto.randomBytes(32).toString('base64url');
	state.refresh.set(refresh, {
		clientId: s.clientId, family: s.family, sub: s.sub, scope: s.scope, status: 'active',
	});
	body.refresh_token = refresh;
});

service.on('beforeUserinfo', (response, req) => {
	const v = req.sluiceAuth;
	if (v?.ok) {
		response.body = { sub: v.sub };
	} else {
		response.statusCode = 401;
		response.body = { error: v?.error ?? 'invalid_token', error_description: v?.description };
	}
});

async function front(req, res) {
	const url = new URL(req.url, 'http://127.0.0.1');
	const path = url.pathname;

	try {
		if (path.startsWith('/__control/'))
			return await control(req, res, path.slice('/__control/'.length));
		if (path === '/resource' && req.method === 'GET') {
			if (fault(res, 'resource'))
				return;
			const v = bearer(req, res);
			return v.ok ? send(res, 200, { ok: true, sub: v.sub }) :
				send(res, 401, { error: v.error, error_description: v.description });
		}
		if (path === '/userinfo' && req.method === 'GET')
			req.sluiceAuth = bearer(req, res);
		if (path === '/authorize' && req.method === 'GET' && !authorizeGate(req, res, url))
			return;
		if (path === '/token' && req.method === 'POST' && !(await tokenGate(req, res)))
			return;
	} catch (e) {
		if (!res.headersSent)
			send(res, e.status ?? 500, { error: 'server_error', error_description: e.message });
		return;
	}
	service.requestHandler(req, res);
}

async function main() {
	await oauth.issuer.keys.generate('RS256');
	const server = http.createServer((req, res) => {
		front(req, res);
	});
	server.listen(PORT, '127.0.0.1', () => {
		const port = server.address().port;
		oauth.issuer.url = `http://127.0.0.1:${port}`;
		process.stdout.write(JSON.stringify({ port }) + '\n');
	});
	server.on('error', (e) => {
		process.stderr.write(`oauth server: ${e.message}\n`);
		process.exit(1);
	});
}

main().catch((e) => {
	process.stderr.write(`oauth server: ${e.stack}\n`);
	process.exit(1);
});
