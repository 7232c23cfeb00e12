// php.js — the few PHP and WordPress behaviours the fake shop must copy
// byte for byte: how PHP reads a query string into $_GET, rawurlencode(),
// WooCommerce's wc_rest_urlencode_rfc3986(), http_build_query() as used by
// add_query_arg(), wp_sprintf_l()'s "a, b, and c", and wp_json_encode()'s
// escaping ("\/" and "\u00fc").
//
// Strings that come from the wire are kept as *byte strings*: one JS char per
// byte (latin1), exactly like PHP strings, so that percent-encoding and
// HMAC input match PHP's whatever the client sent.  toUtf8() turns such a
// string into ordinary text for matching against the catalogue.
'use strict';

function hexValue(c) {
  return parseInt(c, 16);
}

// PHP urldecode() ('+' is a space) or rawurldecode() (it is not), to a byte string.
function percentDecode(s, plusIsSpace) {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '+' && plusIsSpace) out += ' ';
    else if (c === '%' && /^[0-9a-fA-F]{2}$/.test(s.substr(i + 1, 2))) {
      out += String.fromCharCode(hexValue(s.substr(i + 1, 2)));
      i += 2;
    } else out += c;
  }
  return out;
}

const urldecode = (s) => percentDecode(s, true);
const rawurldecode = (s) => percentDecode(s, false);

// PHP rawurlencode(): everything but A-Z a-z 0-9 - _ . ~ becomes %XX (upper case).
function rawurlencode(bytes) {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes.charCodeAt(i) & 0xff;
    const ch = String.fromCharCode(c);
    if (/[A-Za-z0-9\-_.~]/.test(ch)) out += ch;
    else out += '%' + c.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

// PHP urlencode(): like rawurlencode but a space is '+' and '~' is encoded.
function urlencode(bytes) {
  return rawurlencode(bytes).replace(/%20/g, '+').replace(/~/g, '%7E');
}

// wc_rest_urlencode_rfc3986(): rawurlencode, then '+' -> ' ' and '%7E' -> '~'
// (both no-ops after rawurlencode, kept for fidelity); maps over arrays,
// keeping their keys.
function wcUrlencodeRfc3986(value) {
  if (value instanceof Map) {
    const out = new Map();
    for (const [k, v] of value) out.set(k, wcUrlencodeRfc3986(v));
    return out;
  }
  return rawurlencode(value).replace(/\+/g, ' ').replace(/%7E/g, '~');
}

// Splits a parse_str() key such as "a[b][]" into ["a", "b", ""]; a key with
// no well-formed brackets is one name.  PHP turns ' ' and '.' in the base
// name into '_'.
function splitKey(key) {
  const key1 = key.replace(/^ +/, '');
  const open = key1.indexOf('[');
  const fix = (name) => name.replace(/[ .]/g, '_');
  if (open <= 0) return [fix(key1).replace(/\[/g, '_')];
  const parts = [fix(key1.slice(0, open))];
  const rest = key1.slice(open);
  const re = /\[([^\]]*)\]/y;
  let m;
  let at = 0;
  while ((m = re.exec(rest)) !== null) {
    parts.push(m[1]);
    at = re.lastIndex;
  }
  if (at === 0) return [fix(key1).replace(/\[/g, '_')];
  return parts;
}

// Where to put "a[]": the next integer key, like PHP.
function nextIndex(map) {
  let next = 0;
  for (const k of map.keys()) {
    if (/^(0|[1-9][0-9]*)$/.test(k)) next = Math.max(next, Number(k) + 1);
  }
  return String(next);
}

function setPath(target, parts, value) {
  let node = target;
  for (let i = 0; i < parts.length; i++) {
    const key = parts[i] === '' && i > 0 ? nextIndex(node) : parts[i];
    if (i === parts.length - 1) {
      node.set(key, value);
    } else {
      if (!(node.get(key) instanceof Map)) node.set(key, new Map());
      node = node.get(key);
    }
  }
}

// PHP parse_str() / $_GET: an ordered Map of byte-string names to byte
// strings or nested Maps.  A plain name given twice keeps the last value.
function parseQuery(qs) {
  const params = new Map();
  if (!qs) return params;
  for (const pair of qs.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const rawKey = eq < 0 ? pair : pair.slice(0, eq);
    const rawValue = eq < 0 ? '' : pair.slice(eq + 1);
    const key = urldecode(rawKey);
    if (key.replace(/^ +/, '') === '') continue;
    setPath(params, splitKey(key), urldecode(rawValue));
  }
  return params;
}

function toUtf8(bytes) {
  return Buffer.from(bytes, 'latin1').toString('utf8');
}

function fromUtf8(text) {
  return Buffer.from(String(text), 'utf8').toString('latin1');
}

// A parsed query as plain text: {name: "text" | {...}} for logs and filters.
function queryToObject(params) {
  const out = {};
  for (const [k, v] of params) out[toUtf8(k)] = v instanceof Map ? queryToObject(v) : toUtf8(v);
  return out;
}

// http_build_query() with urlencode(), as add_query_arg() rebuilds a URL:
// nested values become "a%5Bb%5D=c".
function buildQuery(params, prefix = '') {
  const parts = [];
  for (const [k, v] of params) {
    const name = prefix ? `${prefix}%5B${urlencode(k)}%5D` : urlencode(k);
    if (v instanceof Map) {
      const inner = buildQuery(v, name);
      if (inner) parts.push(inner);
    } else parts.push(`${name}=${urlencode(v)}`);
  }
  return parts.join('&');
}

// wp_sprintf_l(): "a", "a and b", "a, b, and c".
function sprintfList(items) {
  if (items.length <= 1) return items.join('');
  if (items.length === 2) return `${items[0]} and ${items[1]}`;
  return `${items.slice(0, -1).join(', ')}, and ${items[items.length - 1]}`;
}

// wp_json_encode() without JSON_UNESCAPED_SLASHES / _UNICODE: '/' is
// written "\/" and every non-ASCII UTF-16 unit "\uXXXX".
function wpJsonEncode(value) {
  return JSON.stringify(value)
    .replace(/\//g, '\\/')
    .replace(/[\u0080-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

// PHP empty() on a request value: missing, "", "0" or an empty array.
function phpEmpty(v) {
  if (v === undefined || v === null) return true;
  if (v instanceof Map) return v.size === 0;
  return v === '' || v === '0';
}

module.exports = {
  urldecode, rawurldecode, rawurlencode, urlencode, wcUrlencodeRfc3986,
  parseQuery, queryToObject, buildQuery, toUtf8, fromUtf8, sprintfList,
  wpJsonEncode, phpEmpty,
};
