// auth.js — WooCommerce REST API key authentication, transcribed from
// WC_REST_Authentication (plugins/woocommerce/includes/class-wc-rest-authentication.php,
// woocommerce/woocommerce, read at commit 170a893915f9b3318ad7784b78955fd29a955434).
// server.js's header comment lists the rules; the function names here are
// the PHP method names.
'use strict';

const crypto = require('node:crypto');
const php = require('./php');

const NONCE_WINDOW_S = 15 * 60;

function wcError(code, message, status = 401) {
  return { code, message, data: { status } };
}

const ERR = {
  secretInvalid: () => wcError('woocommerce_rest_authentication_error', 'Consumer secret is invalid.'),
  keyInvalid: () => wcError('woocommerce_rest_authentication_error', 'Consumer key is invalid.'),
  badSignature: () => wcError('woocommerce_rest_authentication_error',
    'Invalid signature - provided signature does not match.'),
  badMethod: () => wcError('woocommerce_rest_authentication_error',
    'Invalid signature - signature method is invalid.'),
  badTimestamp: () => wcError('woocommerce_rest_authentication_error', 'Invalid timestamp.'),
  usedNonce: () => wcError('woocommerce_rest_authentication_error',
    'Invalid nonce - nonce has already been used.'),
};

const OAUTH_PARAMS = ['oauth_consumer_key', 'oauth_timestamp', 'oauth_nonce', 'oauth_signature',
  'oauth_signature_method'];

// The shop's one API key (table woocommerce_api_keys), with the nonces it has seen.
class KeyStore {
  constructor(consumerKey, consumerSecret) {
    this.set(consumerKey, consumerSecret);
  }

  set(consumerKey, consumerSecret) {
    this.key = { consumer_key: consumerKey, consumer_secret: consumerSecret, permissions: 'read_write' };
    this.nonces = new Map(); // nonce -> timestamp
  }

  // get_user_data_by_consumer_key(): sanitize_text_field() trims.
  lookup(consumerKey) {
    return String(consumerKey).trim() === this.key.consumer_key ? this.key : null;
  }
}

// PHP_AUTH_USER / PHP_AUTH_PW from "Authorization: Basic ...".
function basicCredentials(header) {
  const m = /^Basic\s+(\S+)\s*$/i.exec(header || '');
  if (!m) return null;
  const text = Buffer.from(m[1], 'base64').toString('latin1');
  const colon = text.indexOf(':');
  if (colon < 0) return null;
  return { user: text.slice(0, colon), pw: text.slice(colon + 1) };
}

// parse_header(): oauth_* pairs of an "Authorization: OAuth ..." header, urldecoded.
function parseOAuthHeader(header) {
  const params = new Map();
  if (!header || !header.trim().startsWith('OAuth ')) return params;
  const re = /(oauth_[a-z_-]*)=(:?"([^"]*)"|([^,]*))/g;
  let m;
  while ((m = re.exec(header)) !== null) {
    params.set(m[1], php.urldecode(m[3] ? m[3] : (m[4] || '')));
  }
  return params;
}

// perform_basic_authentication(): HTTPS only.  Query-string keys first,
// then the Basic header.  An unknown key is no error here (the request just
// goes on unauthenticated); a wrong secret is.
function performBasicAuthentication(store, query, authorization, state) {
  let consumerKey = '';
  let consumerSecret = '';
  if (!php.phpEmpty(query.get('consumer_key')) && !php.phpEmpty(query.get('consumer_secret'))) {
    consumerKey = query.get('consumer_key');
    consumerSecret = query.get('consumer_secret');
  }
  const basic = basicCredentials(authorization);
  if (!consumerKey && basic && !php.phpEmpty(basic.user) && !php.phpEmpty(basic.pw)) {
    consumerKey = basic.user;
    consumerSecret = basic.pw;
  }
  if (!consumerKey || !consumerSecret) return null;
  if (typeof consumerKey !== 'string' || typeof consumerSecret !== 'string') return null;
  const user = store.lookup(consumerKey);
  if (!user) return null;
  if (!timingSafeEqualStrings(user.consumer_secret, consumerSecret)) {
    state.error = ERR.secretInvalid();
    return null;
  }
  return user;
}

// get_oauth_parameters(): $_GET merged with the OAuth header's values.
function getOAuthParameters(query, authorization, state) {
  const params = new Map(query);
  for (const [k, v] of parseOAuthHeader(authorization)) params.set(k, v);
  const missing = OAUTH_PARAMS.filter((name) => php.phpEmpty(params.get(name)));
  if (missing.length === OAUTH_PARAMS.length) return null;
  if (missing.length) {
    const noun = missing.length === 1 ? 'parameter' : 'parameters';
    state.error = wcError('woocommerce_rest_authentication_missing_parameter',
      `Missing OAuth ${noun} ${missing.join(', ')}`);
    return null;
  }
  return params;
}

// get_home_url( null, $request_path, scheme ): the request path with the
// leading '/' (the site's relative home) taken off, appended to the home URL.
function baseRequestUri(req) {
  let path = req.rawPath;
  if (path.startsWith('/')) path = path.slice(1);
  const home = `${req.scheme}://${req.host}`;
  return path ? `${home}/${path.replace(/^\/+/, '')}` : home;
}

// join_with_equals_sign(): "k=v" strings, each run through
// wc_rest_urlencode_rfc3986 once more; nested arrays become k%5Bsub%5D.
function joinWithEqualsSign(params, out = [], prefix = '') {
  for (const [k0, v] of params) {
    const k = prefix ? `${prefix}%5B${k0}%5D` : k0;
    if (v instanceof Map) joinWithEqualsSign(v, out, k);
    else out.push(php.wcUrlencodeRfc3986(`${k}=${v}`));
  }
  return out;
}

// normalize_parameters(): top-level keys and all values through wc_rest_urlencode_rfc3986.
function normalizeParameters(params) {
  const out = new Map();
  for (const [k, v] of params) out.set(php.wcUrlencodeRfc3986(k), php.wcUrlencodeRfc3986(v));
  return out;
}

// The string check_oauth_signature() signs.
function stringToSign(req, params) {
  const sorted = new Map([...params].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const normalized = normalizeParameters(sorted);
  const queryString = joinWithEqualsSign(normalized).join('%26');
  return `${req.method.toUpperCase()}&${php.rawurlencode(baseRequestUri(req))}&${queryString}`;
}

function timingSafeEqualStrings(a, b) {
  const x = Buffer.from(String(a), 'latin1');
  const y = Buffer.from(String(b), 'latin1');
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function checkOAuthSignature(req, user, params0) {
  const params = new Map(params0);
  const provided = php.rawurldecode(String(params.get('oauth_signature')).replace(/ /g, '+'));
  params.delete('oauth_signature');
  const base = stringToSign(req, params);
  const method = params.get('oauth_signature_method');
  if (method !== 'HMAC-SHA1' && method !== 'HMAC-SHA256') return ERR.badMethod();
  const algorithm = method === 'HMAC-SHA1' ? 'sha1' : 'sha256';
  const secret = Buffer.from(user.consumer_secret + '&', 'latin1');
  const signature = crypto.createHmac(algorithm, secret).update(Buffer.from(base, 'latin1')).digest('base64');
  return timingSafeEqualStrings(signature, provided) ? null : ERR.badSignature();
}

function pruneNonces(store, now) {
  for (const [nonce, ts] of store.nonces) {
    if (ts < now - NONCE_WINDOW_S) store.nonces.delete(nonce);
  }
}

// check_oauth_timestamp_and_nonce(): +-15 minutes, nonce never seen.
function checkTimestampAndNonce(store, timestamp, nonce) {
  const now = Math.floor(Date.now() / 1000);
  const ts = /^\s*[0-9]+\s*$/.test(timestamp) ? Number(timestamp) : NaN;
  if (!(ts >= now - NONCE_WINDOW_S && ts <= now + NONCE_WINDOW_S)) return ERR.badTimestamp();
  if (store.nonces.has(nonce)) return ERR.usedNonce();
  store.nonces.set(nonce, ts);
  if (store.nonces.size % 1000 === 0) pruneNonces(store, now);
  return null;
}

// perform_oauth_authentication().
function performOAuthAuthentication(store, req, state) {
  const params = getOAuthParameters(req.query, req.headers.authorization, state);
  if (!params) return null;
  const user = store.lookup(params.get('oauth_consumer_key'));
  if (!user) {
    state.error = ERR.keyInvalid();
    return null;
  }
  const bad = checkOAuthSignature(req, user, params)
    || checkTimestampAndNonce(store, params.get('oauth_timestamp'), params.get('oauth_nonce'));
  if (bad) {
    state.error = bad;
    return null;
  }
  return user;
}

// authenticate() + check_authentication_error(): {user} when a key was
// accepted, {error} for a 401 before routing, {} for an anonymous request.
// req: {scheme, host, method, rawPath, query (php.parseQuery Map), headers}.
function authenticate(store, req) {
  const state = { error: null };
  let user = null;
  if (req.scheme === 'https') {
    user = performBasicAuthentication(store, req.query, req.headers.authorization, state);
  }
  if (!user) user = performOAuthAuthentication(store, req, state);
  if (state.error) return { error: state.error };
  return user ? { user } : {};
}

module.exports = { KeyStore, authenticate, stringToSign, baseRequestUri };
