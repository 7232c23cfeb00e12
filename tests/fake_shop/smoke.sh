#!/usr/bin/env bash
# smoke.sh — a quick self-check of the fake WooCommerce shop (bash, curl,
# openssl, node).  Makes certificates in a scratch directory, starts
# server.js twice on random ports (trusted, and --untrusted), checks answers
# (status, headers and bodies), prints PASS/FAIL per check and exits non-zero
# if any failed.  Takes a few seconds; the servers are stopped on exit.
#
#   bash tests/fake_shop/smoke.sh
#
# OAuth 1.0a signatures are made here independently of the server: RFC 3986
# encoding in bash, HMAC with `openssl dgst`.
set -u

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
pids=()
fails=0
passes=0

cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

KEY=ck_test_0123456789abcdef0123456789abcdef01234567
SECRET=cs_test_0123456789abcdef0123456789abcdef01234567

# --- reporting ---------------------------------------------------------------

pass() { echo "PASS $1"; passes=$((passes + 1)); }
fail() { echo "FAIL $1${2:+ — $2}"; fails=$((fails + 1)); }

# expect NAME JS-EXPRESSION: the expression is evaluated by node on the last
# answer: s (status), h (headers, lower-case names), raw (body text), b (body
# JSON, or null).  A failure prints the answer.
expect() {
	local name=$1 expr=$2
	if node - "$tmp/body" "$tmp/headers" "$status" "$expr" <<'EOF'
const fs = require('fs');
const [bodyFile, headerFile, status, expr] = process.argv.slice(2);
const raw = fs.readFileSync(bodyFile, 'latin1');
let b = null;
try { b = JSON.parse(Buffer.from(raw, 'latin1').toString('utf8')); } catch { b = null; }
const h = {};
for (const line of fs.readFileSync(headerFile, 'utf8').split(/\r?\n/)) {
  const m = /^([^:\s]+):\s*(.*)$/.exec(line);
  if (m) h[m[1].toLowerCase()] = m[2];
}
const s = Number(status);
let ok = false;
try { ok = Boolean(eval(expr)); } catch (e) { console.error(`    ${e.message}`); }
if (!ok) {
  console.error(`    status ${s}; headers ${JSON.stringify(h)}`);
  console.error(`    body ${raw.slice(0, 400)}`);
}
process.exit(ok ? 0 : 1);
EOF
	then pass "$name"; else fail "$name"; fi
}

# --- HTTP ---------------------------------------------------------------------

# get URL [curl options]: status in $status, body and headers in files.
get() {
	local url=$1
	shift
	status=$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' "$@" "$url" 2>"$tmp/curl_err")
	curl_rc=$?
}

post() {
	curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
		--data "$2" "http://127.0.0.1:$HTTP/__control/$1" | grep -q '^200$' || fail "control $1" "not 200"
}

# json_of URL: the body of a control GET.
json_of() {
	curl -sS "http://127.0.0.1:$HTTP/__control/$1"
}

# node_eval 'expr' < json: print expr over stdin parsed as j.
node_eval() {
	node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8")); const v = eval(process.argv[1]);
process.stdout.write(typeof v === "string" ? v : JSON.stringify(v));' "$1"
}

# start NAME ARGS...: runs server.js, waits for its ports line, sets NAME_HTTP / NAME_HTTPS.
start() {
	local name=$1 i line
	shift
	node "$here/server.js" --http-port 0 --https-port 0 --tls-dir "$tmp/tls" "$@" \
		>"$tmp/$name.out" 2>"$tmp/$name.err" &
	pids+=($!)
	for i in $(seq 1 100); do
		line=$(head -n1 "$tmp/$name.out" 2>/dev/null)
		[ -n "$line" ] && break
		sleep 0.1
	done
	if ! [[ $line =~ ^\{\"http_port\":([0-9]+),\"https_port\":([0-9]+)\}$ ]]; then
		echo "FAIL start $name — got '$line'"
		cat "$tmp/$name.err"
		exit 1
	fi
	printf -v "${name}_HTTP" '%s' "${BASH_REMATCH[1]}"
	printf -v "${name}_HTTPS" '%s' "${BASH_REMATCH[2]}"
	pass "start $name prints {\"http_port\":N,\"https_port\":M}"
}

# --- OAuth 1.0a, written independently of the server ---------------------------

rawenc() {
	local LC_ALL=C s=$1 out='' c i
	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		case $c in
		[A-Za-z0-9._~-]) out+=$c ;;
		*) printf -v c '%%%02X' "'$c"; out+=$c ;;
		esac
	done
	printf '%s' "$out"
}

# oauth_query BASE_URL ALGO SECRET k=v...: a signed query string (without '?').
oauth_query() {
	local base=$1 algo=$2 secret=$3 p pairs=() norm sbs sig
	shift 3
	for p in "$@"; do
		pairs+=("$(rawenc "${p%%=*}")=$(rawenc "${p#*=}")")
	done
	norm=$(printf '%s\n' "${pairs[@]}" | LC_ALL=C sort | paste -sd '&')
	sbs="GET&$(rawenc "$base")&$(rawenc "$norm")"
	sig=$(printf '%s' "$sbs" | openssl dgst "-$algo" -hmac "$secret&" -binary | base64 -w0)
	printf '%s&oauth_signature=%s' "$norm" "$(rawenc "$sig")"
}

nonce() { openssl rand -hex 16; }

# =============================================================================

if ! bash "$here/make_certs.sh" "$tmp/tls"; then
	echo "FAIL make_certs.sh"
	exit 1
fi
[ -s "$tmp/tls/ca.pem" ] && [ -s "$tmp/tls/server.key" ] && [ -s "$tmp/tls/untrusted.pem" ] \
	&& openssl verify -CAfile "$tmp/tls/ca.pem" "$tmp/tls/server.pem" >/dev/null 2>&1 \
	&& ! openssl verify -CAfile "$tmp/tls/ca.pem" "$tmp/tls/untrusted.pem" >/dev/null 2>&1 \
	&& openssl x509 -in "$tmp/tls/server.pem" -noout -ext subjectAltName | grep -q 'DNS:localhost, IP Address:127.0.0.1' \
	&& pass "make_certs.sh: CA, server cert (SAN localhost, 127.0.0.1), untrusted cert" \
	|| fail "make_certs.sh output"
before=$(stat -c %Y "$tmp/tls/server.pem")
bash "$here/make_certs.sh" "$tmp/tls" && [ "$(stat -c %Y "$tmp/tls/server.pem")" = "$before" ] \
	&& pass "make_certs.sh is idempotent" || fail "make_certs.sh is idempotent"

start MAIN
start UNTRUSTED --untrusted
HTTP=$MAIN_HTTP
HTTPS=$MAIN_HTTPS
S="https://localhost:$HTTPS/wp-json/wc/v3"
P="http://127.0.0.1:$HTTP/wp-json/wc/v3"
CA=(--cacert "$tmp/tls/ca.pem")

# --- TLS ------------------------------------------------------------------------

get "$S/products" "${CA[@]}" -u "$KEY:$SECRET"
[ "$curl_rc" = 0 ] && [ "$status" = 200 ] && pass "HTTPS verifies with --cacert ca.pem" \
	|| fail "HTTPS verifies with --cacert ca.pem" "curl $curl_rc, status $status"
get "$S/products" -u "$KEY:$SECRET"
[ "$curl_rc" = 60 ] && pass "HTTPS without the test CA fails verification (curl 60)" \
	|| fail "HTTPS without the test CA fails verification" "curl $curl_rc"
get "https://localhost:$UNTRUSTED_HTTPS/wp-json/wc/v3/products" "${CA[@]}" -u "$KEY:$SECRET"
[ "$curl_rc" = 60 ] && pass "--untrusted server fails verification against ca.pem (curl 60)" \
	|| fail "--untrusted server fails verification" "curl $curl_rc: $(cat "$tmp/curl_err")"

# --- Basic auth, pagination ------------------------------------------------------

get "$S/products?orderby=id&order=asc" "${CA[@]}" -u "$KEY:$SECRET"
expect "HTTPS Basic: list of 10, X-WP-Total 50, X-WP-TotalPages 5" \
	's === 200 && b.length === 10 && h["x-wp-total"] === "50" && h["x-wp-totalpages"] === "5"
	 && b.every((p, i) => i === 0 || p.id > b[i - 1].id)'
expect "Link: absolute rel=next to page 2, same query, no prev" \
	'h.link === `<https://localhost:'"$HTTPS"'/wp-json/wc/v3/products?orderby=id&order=asc&page=2>; rel="next"`'
expect "product documents: fields, prices as strings, escaped slashes" \
	'b.every((p) => typeof p.price === "string" && /^\d+\.\d\d$/.test(p.price) && typeof p.id === "number"
	   && Array.isArray(p.categories) && p.categories[0].slug && Array.isArray(p.images) && p.images[0].src
	   && Array.isArray(p.meta_data) && ["simple", "variable"].includes(p.type) && p.date_created_gmt
	   && p.date_created !== p.date_created_gmt) && raw.includes("https:\\/\\/localhost")'
next_url=$(node -e 'const m = /<([^>]+)>; rel="next"/.exec(process.argv[1]); console.log(m[1])' \
	"$(grep -i '^link:' "$tmp/headers")")
get "$next_url" "${CA[@]}" -u "$KEY:$SECRET"
expect "following Link next: page 2 with prev and next" \
	's === 200 && b.length === 10 && /page=1>; rel="prev", <[^>]*page=3>; rel="next"$/.test(h.link)'
get "$S/products?orderby=id&order=asc&page=5" "${CA[@]}" -u "$KEY:$SECRET"
expect "last page: prev only" 's === 200 && b.length === 10 && /page=4>; rel="prev"$/.test(h.link)'
get "$S/products?page=9" "${CA[@]}" -u "$KEY:$SECRET"
expect "page past the end: [] with totals" 's === 200 && raw === "[]" && h["x-wp-total"] === "50"'
get "$S/orders?per_page=100&orderby=id&order=asc" "${CA[@]}" -u "$KEY:$SECRET"
expect "orders: 100 of 200, realistic documents" \
	's === 200 && b.length === 100 && h["x-wp-total"] === "200" && h["x-wp-totalpages"] === "2"
	 && b.every((o) => /^customer-([1-9]|[1-4][0-9]|50)@example\.com$/.test(o.billing.email)
	   && typeof o.total === "string" && o.line_items.length > 0
	   && o.line_items.every((l) => typeof l.price === "number" && l.product_id > 0)
	   && ["pending","processing","on-hold","completed","cancelled","refunded","failed"].includes(o.status))
	 && b.some((o) => o.currency === "EUR") && b.some((o) => /^[a-z]{3}$/.test(o.currency))'
expect "order totals add up" \
	'b.every((o) => { const c = (x) => Math.round(Number(x) * 100);
	   const items = o.line_items.reduce((s, l) => s + c(l.total), 0);
	   const fees = o.fee_lines.reduce((s, f) => s + c(f.total), 0);
	   return items + fees + c(o.shipping_total) + c(o.total_tax) === c(o.total); })'
product_ids=$(json_of info | node_eval 'j.product_ids.join(" ")')
get "$S/orders?per_page=100&page=2&orderby=id&order=asc" "${CA[@]}" -u "$KEY:$SECRET"
expect "orders reference existing products" \
	'const ids = new Set("'"$product_ids"'".split(" ").map(Number));
	 s === 200 && b.every((o) => o.line_items.every((l) => ids.has(l.product_id)))'

# --- auth errors -----------------------------------------------------------------

get "$S/products?consumer_key=$KEY&consumer_secret=$SECRET" "${CA[@]}"
expect "HTTPS query-string consumer_key/consumer_secret" 's === 200 && b.length === 10'
get "$S/products?consumer_key=$KEY&consumer_secret=$SECRET&per_page=2" "${CA[@]}"
expect "Link leaves the credentials out" 's === 200 && !/consumer_/.test(h.link) && /per_page=2/.test(h.link)'
get "$S/products" "${CA[@]}" -u "$KEY:cs_wrong"
expect "wrong secret: 401 Consumer secret is invalid." \
	'raw === `{"code":"woocommerce_rest_authentication_error","message":"Consumer secret is invalid.","data":{"status":401}}` && s === 401'
get "$S/products" "${CA[@]}"
expect "no auth: 401 woocommerce_rest_cannot_view" \
	'raw === `{"code":"woocommerce_rest_cannot_view","message":"Sorry, you cannot list resources.","data":{"status":401}}` && s === 401'
get "$P/products" -u "$KEY:$SECRET"
expect "Basic auth over plain HTTP is ignored: 401 cannot_view" \
	's === 401 && b.code === "woocommerce_rest_cannot_view"'
get "$P/products?consumer_key=$KEY&consumer_secret=$SECRET"
expect "query-string keys over plain HTTP are ignored: 401 cannot_view" \
	's === 401 && b.code === "woocommerce_rest_cannot_view"'

# --- OAuth 1.0a over HTTP -------------------------------------------------------

ts=$(date +%s)
n1=$(nonce)
q=$(oauth_query "$P/products" sha256 "$SECRET" oauth_consumer_key="$KEY" oauth_nonce="$n1" \
	oauth_signature_method=HMAC-SHA256 oauth_timestamp="$ts" per_page=5 search="Silver Coin" _fields=id,name,sku)
get "$P/products?$q"
expect "OAuth HMAC-SHA256 (with a space and a comma in values): 200" \
	's === 200 && b.length > 0 && b.length <= 5 && b.every((p) => /Silver/.test(p.name) && /Coin/.test(p.name)
	 && Object.keys(p).join() === "id,name,sku")'
get "$P/products?$q"
expect "OAuth reused nonce: 401 Invalid nonce" \
	'raw === `{"code":"woocommerce_rest_authentication_error","message":"Invalid nonce - nonce has already been used.","data":{"status":401}}`'
q=$(oauth_query "$P/orders" sha1 "$SECRET" oauth_consumer_key="$KEY" oauth_nonce="$(nonce)" \
	oauth_signature_method=HMAC-SHA1 oauth_timestamp="$ts" status=processing,completed)
get "$P/orders?$q"
expect "OAuth HMAC-SHA1 with a status list: 200" \
	's === 200 && b.length > 0 && b.every((o) => ["processing", "completed"].includes(o.status))'
q=$(oauth_query "$P/products" sha256 "$SECRET" oauth_consumer_key="$KEY" oauth_nonce="$(nonce)" \
	oauth_signature_method=HMAC-SHA256 oauth_timestamp="$ts")
get "$P/products?${q%oauth_signature=*}oauth_signature=AAAA$(rawenc "$(openssl rand -base64 28)")"
expect "OAuth wrong signature: 401 exact body" \
	'raw === `{"code":"woocommerce_rest_authentication_error","message":"Invalid signature - provided signature does not match.","data":{"status":401}}` && s === 401'
q=$(oauth_query "$P/products" sha256 "cs_other" oauth_consumer_key="$KEY" oauth_nonce="$(nonce)" \
	oauth_signature_method=HMAC-SHA256 oauth_timestamp="$ts")
get "$P/products?$q"
expect "OAuth signed with another secret: Invalid signature" 's === 401 && /does not match/.test(b.message)'
q=$(oauth_query "$P/products" sha256 "$SECRET" oauth_consumer_key="ck_unknown" oauth_nonce="$(nonce)" \
	oauth_signature_method=HMAC-SHA256 oauth_timestamp="$ts")
get "$P/products?$q"
expect "OAuth unknown key: 401 Consumer key is invalid." \
	'raw === `{"code":"woocommerce_rest_authentication_error","message":"Consumer key is invalid.","data":{"status":401}}`'
q=$(oauth_query "$P/products" sha256 "$SECRET" oauth_consumer_key="$KEY" oauth_nonce="$(nonce)" \
	oauth_signature_method=HMAC-SHA256 oauth_timestamp="$((ts - 3600))")
get "$P/products?$q"
expect "OAuth timestamp an hour old: 401 Invalid timestamp." 's === 401 && b.message === "Invalid timestamp."'
get "$P/products?oauth_consumer_key=$KEY&oauth_timestamp=$ts"
expect "OAuth missing parameters: 401 missing_parameter" \
	'raw === `{"code":"woocommerce_rest_authentication_missing_parameter","message":"Missing OAuth parameters oauth_nonce, oauth_signature, oauth_signature_method","data":{"status":401}}`'
q=$(oauth_query "$P/products/${product_ids%% *}" sha256 "$SECRET" oauth_consumer_key="$KEY" \
	oauth_nonce="$(nonce)" oauth_signature_method=HMAC-SHA256 oauth_timestamp="$ts")
get "$P/products/${product_ids%% *}?$q"
expect "OAuth single product: 200, Link rel=alternate" \
	's === 200 && b.id === '"${product_ids%% *}"' && /rel="alternate"/.test(h.link)'

# --- validation, routes ------------------------------------------------------------

get "$S/products?per_page=101" "${CA[@]}" -u "$KEY:$SECRET"
expect "per_page=101: 400 rest_invalid_param" \
	's === 400 && b.code === "rest_invalid_param" && b.message === "Invalid parameter(s): per_page"
	 && b.data.status === 400
	 && b.data.params.per_page === "per_page must be between 1 (inclusive) and 100 (inclusive)"'
get "$S/orders?orderby=price" "${CA[@]}" -u "$KEY:$SECRET"
expect "orders orderby=price: 400 not one of" \
	's === 400 && b.data.params.orderby === "orderby is not one of date, id, include, title, slug, and modified."'
get "$S/products/999999" "${CA[@]}" -u "$KEY:$SECRET"
expect "unknown product: 404 woocommerce_rest_product_invalid_id" \
	'raw === `{"code":"woocommerce_rest_product_invalid_id","message":"Invalid ID.","data":{"status":404}}`'
get "$S/orders/${product_ids%% *}" "${CA[@]}" -u "$KEY:$SECRET"
expect "a product id is not an order: 404 woocommerce_rest_shop_order_invalid_id" \
	's === 404 && b.code === "woocommerce_rest_shop_order_invalid_id"'
get "http://127.0.0.1:$HTTP/wp-json/unknown"
expect "/wp-json/unknown: 404 rest_no_route" \
	'raw === `{"code":"rest_no_route","message":"No route was found matching the URL and request method.","data":{"status":404}}`'
get "http://127.0.0.1:$HTTP/shop/nothing-here"
expect "a page outside /wp-json/: 404 HTML" 's === 404 && /^text\/html/.test(h["content-type"]) && /Page not found/.test(raw)'
get "$P"
expect "namespace index: 200 without auth" 's === 200 && b.namespace === "wc/v3" && "/wc/v3/orders" in b.routes'

variable=$(curl -sS "${CA[@]}" -u "$KEY:$SECRET" "$S/products?type=variable&per_page=1" | node_eval 'j[0].id + " " + j[0].variations.join(",")')
get "$S/products/${variable%% *}/variations?orderby=id&order=asc" "${CA[@]}" -u "$KEY:$SECRET"
expect "variations of a variable product" \
	's === 200 && b.map((v) => v.id).join(",") === "'"${variable#* }"'" && b.every((v) => v.type === "variation"
	 && v.parent_id === '"${variable%% *}"' && /^\d+\.\d\d$/.test(v.price))'

# --- date filters ------------------------------------------------------------------

get "$S/orders?per_page=100&orderby=modified&order=asc" "${CA[@]}" -u "$KEY:$SECRET"
cp "$tmp/body" "$tmp/by_modified.json"
pivot_gmt=$(node_eval 'j[60].date_modified_gmt' <"$tmp/by_modified.json")
pivot_local=$(node_eval 'j[60].date_modified' <"$tmp/by_modified.json")
expect "orderby=modified asc is sorted" \
	'b.every((o, i) => i === 0 || o.date_modified_gmt >= b[i - 1].date_modified_gmt)'
get "$S/orders?per_page=100&orderby=modified&order=asc&dates_are_gmt=true&modified_after=$pivot_gmt" "${CA[@]}" -u "$KEY:$SECRET"
gmt_total=$(grep -i '^x-wp-total:' "$tmp/headers" | tr -dc 0-9)
expect "modified_after (GMT) keeps only later orders" \
	's === 200 && b.length > 0 && b.every((o) => o.date_modified_gmt > "'"$pivot_gmt"'")
	 && Number(h["x-wp-total"]) < 200 && Number(h["x-wp-total"]) >= 100'
get "$S/orders?per_page=100&orderby=modified&order=asc&modified_after=$pivot_local" "${CA[@]}" -u "$KEY:$SECRET"
expect "modified_after (local time) gives the same orders" \
	's === 200 && h["x-wp-total"] === "'"$gmt_total"'" && b.every((o) => o.date_modified > "'"$pivot_local"'")'
get "$S/orders?modified_after=yesterday" "${CA[@]}" -u "$KEY:$SECRET"
expect "modified_after=yesterday: 400 Invalid date." 's === 400 && b.data.params.modified_after === "Invalid date."'

# --- control: faults ----------------------------------------------------------------

post fault '{"status":429,"count":1,"retry_after":7}'
get "$S/products" "${CA[@]}" -u "$KEY:$SECRET"
expect "fault 429 with Retry-After" \
	's === 429 && h["retry-after"] === "7" && b.code === "rate_limit_exceeded" && b.data.status === 429'
get "$S/products" "${CA[@]}" -u "$KEY:$SECRET"
expect "after the fault: 200 again" 's === 200'
post fault '{"status":500,"count":1,"after":1,"path":"/orders"}'
get "$S/products" "${CA[@]}" -u "$KEY:$SECRET"; s1=$status
get "$S/orders" "${CA[@]}" -u "$KEY:$SECRET"; s2=$status
get "$S/orders" "${CA[@]}" -u "$KEY:$SECRET"
expect "fault 500 on /orders after one good answer" \
	'"'"$s1 $s2"'" === "200 200" && s === 500 && b.code === "internal_server_error"'
post malformed '{"count":1}'
get "$S/orders" "${CA[@]}" -u "$KEY:$SECRET"
expect "malformed page: 200 with broken JSON" 's === 200 && b === null && raw.startsWith("[{")'
get "$S/orders" "${CA[@]}" -u "$KEY:$SECRET"
expect "next page is whole again" 's === 200 && Array.isArray(b) && b.length === 10'
post slow '{"ms":400,"count":1}'
t0=$(date +%s%N)
get "$S/products?per_page=1" "${CA[@]}" -u "$KEY:$SECRET"
elapsed=$((($(date +%s%N) - t0) / 1000000))
[ "$status" = 200 ] && [ "$elapsed" -ge 400 ] && pass "slow: answer delayed ${elapsed} ms" \
	|| fail "slow" "status $status after $elapsed ms"

# --- control: bad records, modify, add --------------------------------------------

read -r o1 o2 o3 o4 <<<"$(node_eval 'j.slice(0, 4).map((o) => o.id).join(" ")' <"$tmp/by_modified.json")"
p1=$(echo "$product_ids" | cut -d' ' -f2)
p2=$(echo "$product_ids" | cut -d' ' -f3)
post bad_records "{\"missing_email\":[$o1],\"unknown_product\":[$o2],\"bad_price\":[$o3,$p1],\"missing_name\":[$p2]}"
get "$S/orders/$o1" "${CA[@]}" -u "$KEY:$SECRET"
expect "bad_records missing_email" 's === 200 && !("email" in b.billing) && b.billing.first_name'
get "$S/orders/$o2" "${CA[@]}" -u "$KEY:$SECRET"
expect "bad_records unknown_product" 'b.line_items[0].product_id === 999999999 && b.line_items[0].sku === null'
get "$S/orders/$o3" "${CA[@]}" -u "$KEY:$SECRET"
expect "bad_records bad_price (order)" 'b.total === "12,3x" && b.line_items[0].price === "abc"'
get "$S/products?include=$p1,$p2&orderby=include" "${CA[@]}" -u "$KEY:$SECRET"
expect "bad_records bad_price and missing_name (products, in a list)" \
	'b.length === 2 && b[0].id === '"$p1"' && b[0].price === "abc" && b[0].regular_price === "abc"
	 && b[1].id === '"$p2"' && !("name" in b[1])'

since=$(date -u -d '-5 seconds' +%Y-%m-%dT%H:%M:%S)
get "$S/orders/$o4" "${CA[@]}" -u "$KEY:$SECRET"
cp "$tmp/body" "$tmp/o4_before.json"
post modify "{\"orders\":{\"ids\":[$o4]},\"products\":{\"percent\":10}}"
get "$S/orders/$o4" "${CA[@]}" -u "$KEY:$SECRET"
before_total=$(node_eval 'j.total' <"$tmp/o4_before.json")
expect "modify: order date_modified_gmt is now, total changed" \
	'b.date_modified_gmt >= "'"$since"'" && b.total !== "'"$before_total"'"
	 && b.fee_lines.some((f) => /revision 1/.test(f.name))'
get "$S/orders?dates_are_gmt=true&modified_after=$since" "${CA[@]}" -u "$KEY:$SECRET"
expect "modify: delta query finds exactly the modified order" \
	's === 200 && h["x-wp-total"] === "1" && b[0].id === '"$o4"
get "$S/products?dates_are_gmt=true&modified_after=$since&per_page=100" "${CA[@]}" -u "$KEY:$SECRET"
expect "modify: 10% of the products" 's === 200 && h["x-wp-total"] === "5"'

post add '{"products":2,"orders":3}'
get "$S/products?per_page=1" "${CA[@]}" -u "$KEY:$SECRET"
expect "add: 52 products, newest first" 'h["x-wp-total"] === "52" && b[0].date_created_gmt >= "'"$since"'"'
get "$S/orders?per_page=1" "${CA[@]}" -u "$KEY:$SECRET"
expect "add: 203 orders" 'h["x-wp-total"] === "203"'

# --- control: root_404, keys, stats, reset ----------------------------------------

post root_404 true
get "$P"
expect "root_404: /wp-json/wc/v3 is rest_no_route" 's === 404 && b.code === "rest_no_route"'
get "$S/products" "${CA[@]}" -u "$KEY:$SECRET"
expect "root_404: products too" 's === 404 && b.code === "rest_no_route"'
post root_404 false
get "$P"
expect "root_404 off: namespace index again" 's === 200 && b.namespace === "wc/v3"'

post keys '{"consumer_key":"ck_new","consumer_secret":"cs_new"}'
get "$S/orders?per_page=1" "${CA[@]}" -u "ck_new:cs_new"
expect "keys: the new key works" 's === 200'
get "$S/orders?per_page=1" "${CA[@]}" -u "$KEY:$SECRET"
expect "keys: the old key is unknown (anonymous: cannot_view)" 's === 401 && b.code === "woocommerce_rest_cannot_view"'

stats=$(json_of stats)
echo "$stats" >"$tmp/body"; : >"$tmp/headers"; status=200
expect "stats: counts" \
	'b.requests > 40 && b.auth_failures >= 10 && b.pages_served > 10 && b.by_path["/wp-json/wc/v3/orders/{id}"] > 0
	 && typeof b.last_query === "object"'
json_of requests >"$tmp/body"
expect "requests log: redacted, no secrets" \
	'b.requests.length > 40 && b.requests.some((r) => /oauth_signature=REDACTED/.test(r[1]))
	 && b.requests.some((r) => /consumer_secret=REDACTED/.test(r[1]))
	 && !raw.includes("'"$SECRET"'") && b.requests.every((r) => r.length === 4 && ["http", "https"].includes(r[3]))'

post reset '{}'
get "$S/products?per_page=1" "${CA[@]}" -u "$KEY:$SECRET"
expect "reset: default keys back, added records kept" 's === 200 && h["x-wp-total"] === "52"'
get "$S/orders/$o1" "${CA[@]}" -u "$KEY:$SECRET"
expect "reset: bad records cleared" 's === 200 && typeof b.billing.email === "string"'

echo
echo "$passes passed, $fails failed"
[ "$fails" = 0 ]
