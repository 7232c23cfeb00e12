// server.js — a fake WooCommerce shop for the tests: a WordPress host
// answering the WooCommerce REST API v3 (read-only) over HTTP and HTTPS,
// with WooCommerce's own authentication rules, a deterministic catalogue of
// any size and switches for faults.  Node's standard library only.
//
//   node server.js --http-port N --https-port M --tls-dir DIR
//                  [--products N] [--orders N] [--seed S] [--untrusted]
//                  [--tz-offset-minutes N] [--host ADDR]
//
// Ports 0 pick free ones.  Once both listeners are up it prints one line on
// stdout:  {"http_port":N,"https_port":M}
// DIR must hold what make_certs.sh DIR makes: the HTTPS listener uses
// server.pem/server.key (signed by DIR/ca.pem), or with --untrusted the
// self-signed untrusted.pem/untrusted.key.  Defaults: 50 products, 200
// orders, seed "sluice", shop timezone UTC+120 min, host 127.0.0.1.
// SIGTERM / SIGINT stop it.
//
// ROUTES (GET and HEAD; any other method is 404 rest_no_route)
//   /wp-json/                          WordPress's site index (lists the wc/v3 namespace)
//   /wp-json/wc/v3                     namespace index {"namespace":"wc/v3","routes":{...}}, no auth needed
//   /wp-json/wc/v3/products            list          /wp-json/wc/v3/products/{id}
//   /wp-json/wc/v3/products/{id}/variations          .../variations/{variation id}
//   /wp-json/wc/v3/orders              list          /wp-json/wc/v3/orders/{id}
//   /?rest_route=/wc/v3/...            the same (WordPress's plain-permalink form)
//   other /wp-json/... paths           404 {"code":"rest_no_route","message":"No route was found
//                                      matching the URL and request method.","data":{"status":404}}
//   /                                  200 HTML home page; any other path: 404 HTML "Page not found"
// Unknown ids: 404 {"code":"woocommerce_rest_product_invalid_id","message":"Invalid ID.",...}
// (orders: woocommerce_rest_shop_order_invalid_id; variations:
// woocommerce_rest_product_variation_invalid_id).  GET /products/{variation id}
// answers the variation, type "variation", as WooCommerce does.  A variation
// asked for under the wrong parent: 403 (401 anonymous) woocommerce_rest_cannot_view.
//
// JSON is written as wp_json_encode() writes it: "\/" for '/', "\u00fc" for
// non-ASCII.  Content-Type: application/json; charset=UTF-8.
//
// AUTHENTICATION — WC_REST_Authentication (woocommerce/woocommerce,
// plugins/woocommerce/includes/class-wc-rest-authentication.php, commit
// 170a8939...; lib/auth.js), for any route under wc/ (the namespace index too):
//  * HTTPS only: consumer_key & consumer_secret in the query string (both
//    non-empty) are used first, else HTTP Basic (user = key, password =
//    secret).  Unknown key: NO error, the request continues anonymous (so a
//    list answers 401 woocommerce_rest_cannot_view).  Known key, wrong secret:
//    401 woocommerce_rest_authentication_error "Consumer secret is invalid."
//  * Then, on HTTP and HTTPS alike, OAuth 1.0a one-legged, parameters from
//    the query string (merged with an "Authorization: OAuth ..." header):
//    - none of oauth_consumer_key, oauth_timestamp, oauth_nonce,
//      oauth_signature, oauth_signature_method present: not an OAuth request;
//      some missing: 401 woocommerce_rest_authentication_missing_parameter
//      "Missing OAuth parameter(s) a, b"
//    - unknown key: 401 woocommerce_rest_authentication_error "Consumer key is invalid."
//    - signature: base string = METHOD & rawurlencode(base URL) & params, where
//        base URL = scheme://<Host header><request path>, no query (the home
//          URL is taken from the Host header);
//        params = every query parameter (PHP-decoded: '+' is a space) plus
//          header oauth_* values, less oauth_signature; sorted by key with
//          strcmp (keys are unique, as in PHP's $_GET; a repeated plain key
//          keeps its last value); each key and value rawurlencode()d (RFC
//          3986: all but A-Z a-z 0-9 - _ . ~); joined "k=v", each pair
//          rawurlencode()d again, pairs joined with "%26" — i.e. the usual
//          OAuth base string.  Nested a[b]=c keys become a%5Bb%5D (then
//          encoded again), as join_with_equals_sign() does.  As in real
//          WooCommerce this differs from generic OAuth libraries in two
//          places: PHP turns '.' and ' ' in parameter names into '_', and
//          "status[]=a" reaches WooCommerce as status[0] and is signed as
//          "status%5B0%5D=a" — so sign such parameters as PHP sees them
//          (or use comma lists: status=a,b).
//        key = consumer_secret + '&' (for HMAC-SHA256 too); HMAC-SHA1 or
//          HMAC-SHA256 (anything else: "Invalid signature - signature
//          method is invalid."); result base64.  The provided signature is
//          rawurldecode()d (after ' ' -> '+') before a constant-time compare.
//        mismatch: 401 woocommerce_rest_authentication_error
//          "Invalid signature - provided signature does not match."
//    - then the timestamp must be within 15 minutes of now ("Invalid
//      timestamp.") and the nonce unseen ("Invalid nonce - nonce has already
//      been used."); a nonce is remembered once its signature checked out.
//      (WooCommerce keeps only one nonce per timestamp second — a quirk; here
//      every nonce of the last 15 minutes is kept, which is stricter.)
//  * Plain HTTP with Basic auth or consumer_key/consumer_secret in the query:
//    not looked at, so anonymous: 401 {"code":"woocommerce_rest_cannot_view",
//    "message":"Sorry, you cannot list resources.","data":{"status":401}} for a
//    list, "Sorry, you cannot view this resource." for one existing record
//    (a missing record is still 404 Invalid ID., as WooCommerce checks
//    permission only on records that exist).
//  * Errors from authentication answer 401 before routing, even for the
//    namespace index.  No WWW-Authenticate header (WooCommerce adds one only
//    when its auth_method is still basic_auth, which the OAuth fallback
//    always overwrites).
//  Default key: ck_test_0123456789abcdef0123456789abcdef01234567
//      secret: cs_test_0123456789abcdef0123456789abcdef01234567  (read_write)
//
// LISTS (products, variations, orders)
//   page (default 1, >= 1), per_page (default 10, 1..100), offset,
//   order asc|desc (default desc), orderby: date (default) | id | modified |
//   include | title | slug (products also price | popularity | rating |
//   menu_order); ties broken by id in the same direction, as WooCommerce's
//   "date ID" / "modified ID"; orderby=include keeps the include list's order
//   whatever `order` says (WP_Query's post__in).
//   after / before (date_created), modified_after / modified_before
//   (date_modified): RFC 3339 "2024-05-01T10:00:00[.123][Z|+02:00]";
//   exclusive; compared as WP_Date_Query does — the value is turned into the
//   shop's local wall-clock time (a value without offset is taken as local
//   wall-clock already) and compared with the local column, or with the
//   *_gmt column when dates_are_gmt=true.  (So with dates_are_gmt=true, pass
//   the UTC time without an offset: "...T08:00:00".)
//   include, exclude (id lists), search (all words in the name), _fields
//   (a,b.c).  products: status (any|draft|pending|private|publish|future|trash;
//   default any), type (simple|variable|grouped|external), sku (exact,
//   comma-separated list), category (id).  orders: status (list; any |
//   pending | processing | on-hold | completed | cancelled | refunded |
//   failed | trash | checkout-draft), customer (user id), search (id,
//   email, name, city).
//   Invalid values: 400 rest_invalid_param as WordPress words it, e.g.
//   {"code":"rest_invalid_param","message":"Invalid parameter(s): per_page",
//    "data":{"status":400,"params":{"per_page":"per_page must be between 1
//    (inclusive) and 100 (inclusive)"},"details":{"per_page":{"code":
//    "rest_out_of_bounds","message":"...","data":null}}}}
//   Headers: X-WP-Total, X-WP-TotalPages, and one Link header
//   '<URL?...&page=N-1>; rel="prev", <URL?...&page=N+1>; rel="next"' with
//   absolute URLs on the request's scheme and Host, the request's query
//   (re-encoded as add_query_arg() does) less consumer_key, consumer_secret,
//   oauth_* (real WooCommerce copies those too).  A page past the end is [].
//
// CATALOGUE (lib/catalogue.js): deterministic from --seed; precious-metal
// coins and bars, simple and variable products (variations by weight), ids
// shared between products, variations, images and orders like WordPress
// posts.  Generated dates end 2025-06-01T00:00:00Z; orders span the year
// before, products the year before that.  Prices and totals are strings
// ("19.99"); line_items[].price is a number.  Currencies mostly "EUR"/"USD",
// ~10% lower case ("eur"/"usd").  Billing emails are customer-<n>@example.com,
// n in 1..50 (user id n+1 when registered, customer_id 0 for guests).
// Documents are rendered on demand; only per-record skeletons and changes
// are kept, so --products 10000 --orders 50000 is cheap.
//
// CONTROL (HTTP listener only, no auth, JSON; POSTs answer {"ok":true,...}):
//   GET  /__control/stats     {"requests": n, "by_path": {"/wp-json/wc/v3/orders/{id}": n, ...},
//                              "by_status": {...}, "auth_failures": n (401s),
//                              "pages_served": n (200 list answers, malformed ones too),
//                              "last_query": {...}} — over all non-control requests, both listeners
//   GET  /__control/requests  {"requests": [[method, path?query, status, scheme], ...]}: the last
//                              1000, oauth_signature and consumer_secret values "REDACTED"
//   GET  /__control/info      {"seed", "products": n, "orders": n, "product_ids": [every product id],
//                              "order_ids": [first, last], "customers": 50, "generated_until",
//                              "tz_offset_minutes", "consumer_key"}
//   POST /__control/fault     {"status": 429|500|502|503|..., "count": n (1), "after": n (0),
//                              "retry_after": s, "path": "substring"}: of the requests whose
//                              path?query contains `path` (all if absent), `after` more are
//                              answered normally, then `count` fail with `status`: 429 JSON
//                              {"code":"rate_limit_exceeded","message":"Too many requests. Please
//                              wait and try again.","data":{"status":429}} with Retry-After
//                              (retry_after, default 1); 500 WordPress's critical-error JSON
//                              (code internal_server_error); 502 nginx's HTML; 503 WordPress's
//                              maintenance HTML (Retry-After only if retry_after given); others a
//                              JSON {"code":"fake_shop_fault",...}.  Faults come before auth.
//   POST /__control/slow      {"ms": n, "count": n (optional; default all)}: delay answers
//   POST /__control/malformed {"count": n (1), "after": n (0)}: after `after` list pages, the
//                              next `count` list pages are 200 with the JSON cut in half
//   POST /__control/bad_records {"missing_email": [order ids], "unknown_product": [order ids],
//                              "bad_price": [product or order ids], "missing_name": [product ids]}
//                              (adds to the sets): missing_email deletes billing.email;
//                              unknown_product makes line_items[0] product_id 999999999,
//                              variation_id 0, sku null; bad_price makes a product's price and
//                              regular_price "abc" (its variations' too) and an order's total
//                              "12,3x" and line_items[0].price "abc"; missing_name deletes name
//   POST /__control/modify    {"orders": {"percent": p} | {"ids": [...]}, "products": {...}}:
//                              date_modified(_gmt) becomes now; an order moves pending/on-hold ->
//                              processing -> completed (others keep their status) and gains a
//                              "Handling (revision r)" fee of r.00, changing total; a product's
//                              prices rise by 1.00 and its stock by -1.  Answers the ids changed.
//   POST /__control/add       {"products": n, "orders": n}: new records created now, new ids
//                              (answered); new orders use any existing product
//   POST /__control/keys      {"consumer_key": "...", "consumer_secret": "..."} (forgets nonces)
//   POST /__control/root_404  true | false (or {"enabled": bool}): WooCommerce "uninstalled":
//                              every wc/ route, the namespace index too, is 404 rest_no_route
//   POST /__control/reset     clears faults, slowness, malformed pages, bad records,
//                              modifications, stats, the request log, nonces and root_404, and
//                              restores the default keys; records added stay
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');

const php = require('./lib/php');
const auth = require('./lib/auth');
const rest = require('./lib/rest');
const { Catalogue, GENERATED_UNTIL, CUSTOMERS, customer } = require('./lib/catalogue');

const DEFAULT_KEY = 'ck_test_0123456789abcdef0123456789abcdef01234567';
const DEFAULT_SECRET = 'cs_test_0123456789abcdef0123456789abcdef01234567';
const SITE_NAME = 'Sluice Test Shop';
const LOG_LIMIT = 1000;

// ---------------------------------------------------------------------------
// Command line

const USAGE = 'usage: node server.js --http-port N --https-port M --tls-dir DIR [--products N] '
  + '[--orders N] [--seed S] [--untrusted] [--tz-offset-minutes N] [--host ADDR]';

function parseArgs(argv) {
  const opts = { products: 50, orders: 200, seed: 'sluice', untrusted: false, tzOffsetMinutes: 120,
    host: '127.0.0.1' };
  const names = { '--http-port': 'httpPort', '--https-port': 'httpsPort', '--tls-dir': 'tlsDir',
    '--products': 'products', '--orders': 'orders', '--seed': 'seed',
    '--tz-offset-minutes': 'tzOffsetMinutes', '--host': 'host' };
  const numeric = new Set(['httpPort', 'httpsPort', 'products', 'orders', 'tzOffsetMinutes']);
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i].split(/=(.*)/s);
    if (flag === '--untrusted') { opts.untrusted = true; continue; }
    const name = names[flag];
    if (!name) die(`unknown argument ${argv[i]}`);
    if (value === undefined) value = argv[++i];
    if (value === undefined) die(`${flag} needs a value`);
    opts[name] = numeric.has(name) ? Number(value) : value;
    if (numeric.has(name) && !Number.isInteger(opts[name])) die(`${flag} needs an integer`);
  }
  if (opts.httpPort === undefined || opts.httpsPort === undefined || !opts.tlsDir) die('missing arguments');
  return opts;
}

function die(message) {
  process.stderr.write(`fake_shop: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function loadTls(dir, untrusted) {
  const base = untrusted ? 'untrusted' : 'server';
  try {
    return { cert: fs.readFileSync(path.join(dir, `${base}.pem`)), key: fs.readFileSync(path.join(dir, `${base}.key`)) };
  } catch (e) {
    return die(`cannot read ${base}.pem/.key in ${dir} (run make_certs.sh ${dir}): ${e.message}`);
  }
}

// ---------------------------------------------------------------------------
// State

const opts = parseArgs(process.argv.slice(2));
const catalogue = new Catalogue({ seed: opts.seed, products: opts.products, orders: opts.orders,
  tzOffsetMinutes: opts.tzOffsetMinutes });
const keys = new auth.KeyStore(DEFAULT_KEY, DEFAULT_SECRET);
let switches;   // faults and modes set through /__control
let stats;
let requestLog;

function resetSwitches() {
  switches = { fault: null, slow: null, malformed: null, root404: false };
}

function resetStats() {
  stats = { requests: 0, by_path: {}, by_status: {}, auth_failures: 0, pages_served: 0, last_query: {} };
  requestLog = [];
}

resetSwitches();
resetStats();

// ---------------------------------------------------------------------------
// Writing answers

function restHeaders(ctx, extra = {}) {
  return {
    'Content-Type': 'application/json; charset=UTF-8',
    'X-Robots-Tag': 'noindex',
    Link: `<${ctx.home}/wp-json/>; rel="https://api.w.org/"`,
    'X-Content-Type-Options': 'nosniff',
    'Access-Control-Expose-Headers': 'X-WP-Total, X-WP-TotalPages, Link',
    'Access-Control-Allow-Headers': 'Authorization, X-WP-Nonce, Content-Disposition, Content-MD5, Content-Type',
    ...extra,
  };
}

function send(ctx, status, headers, body) {
  ctx.res.writeHead(status, headers);
  ctx.res.end(ctx.method === 'HEAD' ? undefined : body);
}

function sendRest(ctx, status, body, extra = {}) {
  send(ctx, status, restHeaders(ctx, extra), php.wpJsonEncode(body));
}

function sendError(ctx, err, extra = {}) {
  sendRest(ctx, err.data.status, err, extra);
}

function noRoute(ctx) {
  sendError(ctx, rest.wpError('rest_no_route', 'No route was found matching the URL and request method.',
    { status: 404 }));
}

function cannotView(ctx, list) {
  const status = ctx.user ? 403 : 401;
  const message = list ? 'Sorry, you cannot list resources.' : 'Sorry, you cannot view this resource.';
  sendError(ctx, rest.wpError('woocommerce_rest_cannot_view', message, { status }));
}

function invalidId(ctx, postType) {
  sendError(ctx, rest.wpError(`woocommerce_rest_${postType}_invalid_id`, 'Invalid ID.', { status: 404 }));
}

function htmlPage(ctx, status, title, text) {
  const body = `<!DOCTYPE html>\n<html lang="de-DE">\n<head>\n<meta charset="UTF-8">\n`
    + `<title>${title} &#8211; ${SITE_NAME}</title>\n`
    + `<link rel="https://api.w.org/" href="${ctx.home}/wp-json/">\n</head>\n`
    + `<body class="${status === 404 ? 'error404' : 'home'}">\n<main><h1>${title}</h1>\n<p>${text}</p></main>\n`
    + '</body>\n</html>\n';
  send(ctx, status, { 'Content-Type': 'text/html; charset=UTF-8',
    Link: `<${ctx.home}/wp-json/>; rel="https://api.w.org/"` }, body);
}

// ---------------------------------------------------------------------------
// Faults

const CRITICAL_ERROR = '<p>There has been a critical error on this website.</p><p><a href="https://wordpress.org/'
  + 'documentation/article/faq-troubleshooting/">Learn more about troubleshooting WordPress.</a></p>';
const NGINX_502 = '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n'
  + '<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';
const MAINTENANCE = '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Maintenance</title></head>\n'
  + '<body><h1>Briefly unavailable for scheduled maintenance. Check back in a minute.</h1></body></html>\n';

// The armed fault, if this request is one it must fail.
function takeFault(pathAndQuery) {
  const fault = switches.fault;
  if (!fault || (fault.path && !pathAndQuery.includes(fault.path))) return null;
  if (fault.after > 0) {
    fault.after--;
    return null;
  }
  fault.count--;
  if (fault.count <= 0) switches.fault = null;
  return fault;
}

function sendFault(ctx, fault) {
  const retry = fault.retry_after !== undefined ? { 'Retry-After': String(fault.retry_after) } : {};
  if (fault.status === 429) {
    sendRest(ctx, 429, rest.wpError('rate_limit_exceeded', 'Too many requests. Please wait and try again.',
      { status: 429 }), { 'Retry-After': String(fault.retry_after ?? 1) });
  } else if (fault.status === 500) {
    sendRest(ctx, 500, { code: 'internal_server_error', message: CRITICAL_ERROR, data: { status: 500 },
      additional_errors: [] });
  } else if (fault.status === 502) {
    send(ctx, 502, { 'Content-Type': 'text/html' }, NGINX_502);
  } else if (fault.status === 503) {
    send(ctx, 503, { 'Content-Type': 'text/html; charset=utf-8', ...retry }, MAINTENANCE);
  } else {
    sendRest(ctx, fault.status, rest.wpError('fake_shop_fault', 'Injected fault.', { status: fault.status }), retry);
  }
}

async function applySlowness() {
  const slow = switches.slow;
  if (!slow) return;
  if (slow.count !== undefined && --slow.count <= 0) switches.slow = null;
  await new Promise((resolve) => setTimeout(resolve, slow.ms));
}

// True when this list page must be served broken.
function takeMalformed() {
  const m = switches.malformed;
  if (!m) return false;
  if (m.after > 0) {
    m.after--;
    return false;
  }
  if (--m.count <= 0) switches.malformed = null;
  return true;
}

// ---------------------------------------------------------------------------
// Collections

function sendCollection(ctx, routeBase, result, docs) {
  const headers = { 'X-WP-Total': String(result.total), 'X-WP-TotalPages': String(result.totalPages) };
  const link = rest.paginationLink(`${ctx.home}/wp-json/wc/v3/${routeBase}`, ctx.query, result.page,
    result.totalPages);
  if (link) headers.Link = link;
  const body = php.wpJsonEncode(docs.map((d) => rest.filterFields(d, ctx.query.get('_fields'))));
  stats.pages_served++;
  const broken = takeMalformed();
  send(ctx, 200, restHeaders(ctx, { ...headers, Allow: 'GET, POST' }),
    broken ? body.slice(0, Math.max(1, Math.floor(body.length / 2))) : body);
}

function idFilters(params) {
  const tests = [];
  if (params.include && params.include.length) {
    const set = new Set(params.include);
    tests.push((sk) => set.has(sk.id));
  }
  if (params.exclude && params.exclude.length) {
    const set = new Set(params.exclude);
    tests.push((sk) => !set.has(sk.id));
  }
  return tests;
}

function searchWords(params) {
  return params.search ? params.search.toLowerCase().split(/\s+/).filter(Boolean) : [];
}

function productFilters(params) {
  const tests = [...idFilters(params), ...rest.dateFilters(params, catalogue.tzOffset, (sk) => sk.created,
    (sk) => catalogue.effective(sk).modified)];
  if (params.status !== 'any') tests.push((sk) => sk.status === params.status);
  if (params.type) tests.push((sk) => (sk.varCount ? 'variable' : 'simple') === params.type);
  if (params.sku) {
    const skus = params.sku.split(',');
    if (skus.length > 1) skus.push(params.sku);
    tests.push((sk) => sk.sku !== '' && skus.includes(sk.sku));
  }
  if (params.category) {
    const id = Number(params.category);
    tests.push((sk) => sk.category.id === id || (id === 15 && sk.spec.bestseller));
  }
  const words = searchWords(params);
  if (words.length) tests.push((sk) => words.every((w) => sk.name.toLowerCase().includes(w)));
  return tests;
}

function orderFilters(params) {
  const tests = [...idFilters(params), ...rest.dateFilters(params, catalogue.tzOffset, (sk) => sk.created,
    (sk) => catalogue.effective(sk).modified)];
  const statuses = params.status.filter((s) => s !== 'any');
  if (!params.status.includes('any')) tests.push((sk) => statuses.includes(catalogue.effective(sk).status));
  if (params.customer !== undefined) tests.push((sk) => sk.registered && sk.customer + 1 === params.customer);
  const words = searchWords(params);
  if (words.length) {
    tests.push((sk) => {
      const c = customer(sk.customer);
      const hay = `${sk.id} ${c.email} ${c.address.first_name} ${c.address.last_name} ${c.address.city}`.toLowerCase();
      return words.every((w) => hay.includes(w));
    });
  }
  return tests;
}

// Filters, orders and pages the products or orders.
function listRecords(kind, params, tests) {
  const byInclude = params.orderby === 'include' && params.include.length > 0;
  const rows = catalogue.ordered(kind, params.orderby);
  const matched = tests.length ? rows.filter((sk) => tests.every((t) => t(sk))) : rows;
  let ordered;
  if (byInclude) ordered = rest.sortByInclude(matched, params.include); // WP_Query ignores order here
  else ordered = params.order === 'asc' ? matched : matched.slice().reverse();
  return rest.paginate(ordered, params);
}

function validated(ctx, schema) {
  const { params, error } = rest.validateParams(schema, ctx.query);
  if (error) sendError(ctx, error);
  return params;
}

function listProducts(ctx) {
  const params = validated(ctx, 'products');
  if (!params) return;
  if (!ctx.user) return cannotView(ctx, true);
  const result = listRecords('product', params, productFilters(params));
  sendCollection(ctx, 'products', result, result.items.map((sk) => catalogue.productDoc(sk, ctx.home)));
}

function listOrders(ctx) {
  const params = validated(ctx, 'orders');
  if (!params) return;
  if (!ctx.user) return cannotView(ctx, true);
  const result = listRecords('order', params, orderFilters(params));
  sendCollection(ctx, 'orders', result, result.items.map((sk) => catalogue.orderDoc(sk, ctx.home)));
}

function variationSortKey(orderby) {
  const keys = { modified: (v) => v.modified, id: (v) => v.id, menu_order: (v) => v.menuOrder,
    title: (v) => v.name, slug: (v) => v.slug };
  return keys[orderby] || ((v) => v.created);
}

function listVariations(ctx, productId) {
  const params = validated(ctx, 'variations');
  if (!params) return;
  if (!ctx.user) return cannotView(ctx, true);
  const parent = catalogue.productById(productId);
  let rows = parent ? catalogue.variationsOf(parent) : [];
  const tests = [...idFilters(params), ...rest.dateFilters(params, catalogue.tzOffset, (v) => v.created,
    (v) => v.modified)];
  rows = rows.filter((v) => tests.every((t) => t(v)));
  if (params.orderby === 'include' && params.include.length) rows = rest.sortByInclude(rows, params.include);
  else {
    rows = rest.sortByKey(rows, variationSortKey(params.orderby));
    if (params.order !== 'asc') rows.reverse();
  }
  const result = rest.paginate(rows, params);
  sendCollection(ctx, `products/${productId}/variations`, result,
    result.items.map((v) => catalogue.variationDoc(v.parent, v.k, ctx.home)));
}

// ---------------------------------------------------------------------------
// Single records

function sendRecord(ctx, doc, extra = {}) {
  sendRest(ctx, 200, rest.filterFields(doc, ctx.query.get('_fields')),
    { Allow: 'GET, POST, PUT, PATCH, DELETE', ...extra });
}

function getProduct(ctx, id) {
  const sk = catalogue.productById(id);
  const variation = sk ? null : catalogue.variationById(id);
  if (!sk && !variation) return invalidId(ctx, 'product');
  if (!ctx.user) return cannotView(ctx, false);
  const doc = sk ? catalogue.productDoc(sk, ctx.home)
    : catalogue.variationAsProductDoc(variation.parent, variation.k, ctx.home);
  sendRecord(ctx, doc, { Link: `<${doc.permalink}>; rel="alternate"; type=text/html` });
}

function getVariation(ctx, productId, id) {
  const variation = catalogue.variationById(id);
  if (!variation) return invalidId(ctx, 'product_variation');
  if (!ctx.user || variation.parent.id !== productId) return cannotView(ctx, false);
  sendRecord(ctx, catalogue.variationDoc(variation.parent, variation.k, ctx.home));
}

function getOrder(ctx, id) {
  const sk = catalogue.orderById(id);
  if (!sk) return invalidId(ctx, 'shop_order');
  if (!ctx.user) return cannotView(ctx, false);
  sendRecord(ctx, catalogue.orderDoc(sk, ctx.home));
}

// ---------------------------------------------------------------------------
// Indexes

const WC_ROUTES = {
  '/wc/v3': ['GET'],
  '/wc/v3/products': ['GET', 'POST'],
  '/wc/v3/products/(?P<id>[\\d]+)': ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
  '/wc/v3/products/(?P<product_id>[\\d]+)/variations': ['GET', 'POST'],
  '/wc/v3/products/(?P<product_id>[\\d]+)/variations/(?P<id>[\\d]+)': ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
  '/wc/v3/orders': ['GET', 'POST'],
  '/wc/v3/orders/(?P<id>[\\d]+)': ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
};

function routeDocs(ctx) {
  const routes = {};
  for (const [route, methods] of Object.entries(WC_ROUTES)) {
    routes[route] = { namespace: 'wc/v3', methods,
      endpoints: methods.filter((m) => m !== 'PUT' && m !== 'PATCH').map((m) => ({ methods: [m], args: {} })) };
    if (!route.includes('(')) routes[route]._links = { self: [{ href: `${ctx.home}/wp-json${route}` }] };
  }
  return routes;
}

function namespaceIndex(ctx) {
  sendRest(ctx, 200, { namespace: 'wc/v3', routes: routeDocs(ctx),
    _links: { up: [{ href: `${ctx.home}/wp-json/` }] } }, { Allow: 'GET' });
}

function siteIndex(ctx) {
  const namespaces = ['oembed/1.0', ...(switches.root404 ? [] : ['wc/v3', 'wc/store/v1']), 'wp/v2', 'wp-site-health/v1'];
  sendRest(ctx, 200, {
    name: SITE_NAME, description: 'Edelmetalle online kaufen', url: ctx.home, home: ctx.home,
    gmt_offset: catalogue.tzOffset / 3600, timezone_string: '', page_for_posts: 0, page_on_front: 0,
    show_on_front: 'posts', namespaces, authentication: { 'application-passwords': { endpoints: {
      authorization: `${ctx.home}/wp-admin/authorize-application.php` } } },
    routes: switches.root404 ? {} : routeDocs(ctx), site_logo: 0, site_icon: 0, site_icon_url: '',
  }, { Allow: 'GET' });
}

// ---------------------------------------------------------------------------
// Routing

// The REST route of a request ("/wc/v3/orders"), or null for a web page.
function restRoute(pathname, query) {
  const m = /^\/wp-json(\/.*)?$/.exec(pathname);
  let route = null;
  if (m) route = m[1] || '/';
  else if ((pathname === '/' || pathname === '/index.php') && typeof query.get('rest_route') === 'string') {
    route = php.toUtf8(query.get('rest_route'));
  }
  if (route === null) return null;
  return `/${route.replace(/^\/+|\/+$/g, '')}`;
}

function isWcRoute(route) {
  const r = route.slice(1);
  return r.startsWith('wc/') || r.startsWith('wc-');
}

const WC_HANDLERS = [
  [/^\/wc\/v3$/i, (ctx) => namespaceIndex(ctx)],
  [/^\/wc\/v3\/products$/i, (ctx) => listProducts(ctx)],
  [/^\/wc\/v3\/products\/(\d+)$/i, (ctx, m) => getProduct(ctx, Number(m[1]))],
  [/^\/wc\/v3\/products\/(\d+)\/variations$/i, (ctx, m) => listVariations(ctx, Number(m[1]))],
  [/^\/wc\/v3\/products\/(\d+)\/variations\/(\d+)$/i, (ctx, m) => getVariation(ctx, Number(m[1]), Number(m[2]))],
  [/^\/wc\/v3\/orders$/i, (ctx) => listOrders(ctx)],
  [/^\/wc\/v3\/orders\/(\d+)$/i, (ctx, m) => getOrder(ctx, Number(m[1]))],
];

function serveRest(ctx, route) {
  if (route === '/') return siteIndex(ctx);
  if (!isWcRoute(route) || switches.root404) return noRoute(ctx);
  const result = auth.authenticate(keys, ctx);
  if (result.error) return sendError(ctx, result.error);
  ctx.user = result.user || null;
  if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return noRoute(ctx);
  for (const [re, handler] of WC_HANDLERS) {
    const m = re.exec(route);
    if (m) return handler(ctx, m);
  }
  return noRoute(ctx);
}

function servePage(ctx, pathname) {
  if (pathname === '/' || pathname === '/index.php') {
    return htmlPage(ctx, 200, SITE_NAME, 'Gold, Silber, Platin und Palladium.');
  }
  return htmlPage(ctx, 404, 'Page not found', 'It looks like nothing was found at this location.');
}

function decodePath(raw) {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

// ---------------------------------------------------------------------------
// Accounting

function redact(pathAndQuery) {
  return pathAndQuery.replace(/([?&])(oauth_signature|consumer_secret)=[^&]*/g, '$1$2=REDACTED');
}

function pathPattern(pathname) {
  return pathname.replace(/\/\d+(?=\/|$)/g, '/{id}');
}

function account(ctx) {
  const status = ctx.res.statusCode;
  stats.by_status[status] = (stats.by_status[status] || 0) + 1;
  if (status === 401) stats.auth_failures++;
  requestLog.push([ctx.method, redact(ctx.req.url), status, ctx.scheme]);
  if (requestLog.length > LOG_LIMIT) requestLog.splice(0, requestLog.length - LOG_LIMIT);
}

function countArrival(ctx, pathname) {
  stats.requests++;
  const key = pathPattern(pathname);
  stats.by_path[key] = (stats.by_path[key] || 0) + 1;
  const q = php.queryToObject(ctx.query);
  for (const name of ['oauth_signature', 'consumer_secret']) if (name in q) q[name] = 'REDACTED';
  stats.last_query = q;
}

// ---------------------------------------------------------------------------
// Control

function readJson(req) {
  return new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => {
      try { resolve(data.trim() ? JSON.parse(data) : {}); } catch { resolve(undefined); }
    });
  });
}

function json(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

function catalogueInfo() {
  return {
    seed: catalogue.seed, products: catalogue.products.length, orders: catalogue.orders.length,
    product_ids: catalogue.products.map((p) => p.id),
    order_ids: catalogue.orders.length ? [catalogue.orders[0].id, catalogue.orders[catalogue.orders.length - 1].id] : [],
    customers: CUSTOMERS, generated_until: new Date(GENERATED_UNTIL * 1000).toISOString(),
    tz_offset_minutes: catalogue.tzOffset / 60, consumer_key: keys.key.consumer_key,
  };
}

const CONTROL_POSTS = {
  fault(body) {
    const count = body.count ?? 1;
    switches.fault = count > 0 ? { status: Number(body.status), count, after: body.after ?? 0,
      retry_after: body.retry_after, path: body.path } : null;
    return {};
  },
  slow(body) {
    switches.slow = body.ms > 0 ? { ms: Number(body.ms), count: body.count } : null;
    return {};
  },
  malformed(body) {
    const count = body.count ?? 1;
    switches.malformed = count > 0 ? { count, after: body.after ?? 0 } : null;
    return {};
  },
  bad_records(body) {
    for (const what of Object.keys(catalogue.bad)) catalogue.markBad(what, body[what]);
    return {};
  },
  modify(body) {
    const out = {};
    if (body.products) out.products = catalogue.modify('product', body.products);
    if (body.orders) out.orders = catalogue.modify('order', body.orders);
    return out;
  },
  add(body) {
    return catalogue.add(Number(body.products) || 0, Number(body.orders) || 0);
  },
  keys(body) {
    keys.set(String(body.consumer_key ?? keys.key.consumer_key), String(body.consumer_secret ?? keys.key.consumer_secret));
    return {};
  },
  root_404(body) {
    switches.root404 = typeof body === 'boolean' ? body : Boolean(body.enabled);
    return {};
  },
  reset() {
    resetSwitches();
    resetStats();
    catalogue.resetChanges();
    keys.set(DEFAULT_KEY, DEFAULT_SECRET);
    return {};
  },
};

async function control(req, res, what) {
  if (req.method === 'GET' && what === 'stats') return json(res, 200, stats);
  if (req.method === 'GET' && what === 'requests') return json(res, 200, { requests: requestLog });
  if (req.method === 'GET' && what === 'info') return json(res, 200, catalogueInfo());
  const handler = req.method === 'POST' && Object.hasOwn(CONTROL_POSTS, what) ? CONTROL_POSTS[what] : null;
  if (!handler) return json(res, 404, { error: 'no such control' });
  const body = await readJson(req);
  if (body === undefined || body === null) return json(res, 400, { error: 'body is not JSON' });
  return json(res, 200, { ok: true, ...handler(body) });
}

// ---------------------------------------------------------------------------
// Server

function requestContext(req, res, scheme) {
  const [rawPath, qs = ''] = req.url.split(/\?(.*)/s);
  const host = req.headers.host || `${opts.host}`;
  return { req, res, scheme, host, home: `${scheme}://${host}`, method: req.method, rawPath,
    query: php.parseQuery(qs), headers: req.headers, user: null };
}

function handler(scheme) {
  return async (req, res) => {
    const ctx = requestContext(req, res, scheme);
    const pathname = decodePath(ctx.rawPath);
    if (scheme === 'http' && pathname.startsWith('/__control/')) {
      return control(req, res, pathname.slice('/__control/'.length));
    }
    req.resume();
    countArrival(ctx, pathname);
    res.on('finish', () => account(ctx));
    await applySlowness();
    const fault = takeFault(req.url);
    if (fault) return sendFault(ctx, fault);
    const route = restRoute(pathname, ctx.query);
    return route === null ? servePage(ctx, pathname) : serveRest(ctx, route);
  };
}

function guarded(fn) {
  return (req, res) => fn(req, res).catch((e) => {
    process.stderr.write(`fake_shop: ${e.stack}\n`);
    if (!res.headersSent) json(res, 500, { error: String(e.message) });
    else res.destroy();
  });
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, opts.host, () => resolve(server.address().port));
  });
}

async function main() {
  const httpServer = http.createServer(guarded(handler('http')));
  const httpsServer = https.createServer(loadTls(opts.tlsDir, opts.untrusted), guarded(handler('https')));
  const ports = await Promise.all([listen(httpServer, opts.httpPort), listen(httpsServer, opts.httpsPort)]);
  process.stdout.write(JSON.stringify({ http_port: ports[0], https_port: ports[1] }) + '\n');
  const stop = () => {
    for (const s of [httpServer, httpsServer]) {
      s.close();
      if (s.closeAllConnections) s.closeAllConnections();
    }
    setTimeout(() => process.exit(0), 200).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => die(e.message));
