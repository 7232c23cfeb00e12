#!/usr/bin/env bash
# run.sh — the Sluice benchmark: enqueue, processing and latency figures, beside pgbench's
# figures for the same PostgreSQL, in one run on the machine at hand.
#
# Run it as `tools/sluice bench` (which builds a release build first).  Options:
#   --quick      smaller job counts and shorter runs (a smoke run, not for the README)
#   --only LIST  comma-separated phases: pgbench,enqueue,api,process,latency,backlog,held,ratelimit,woocommerce
#
# It starts its own PostgreSQL with PostgreSQL's default (durable) settings under
# /tmp, and its own lighttpd, and removes both at the end.  Figures go to stdout as
# a Markdown table.  Processing figures are the median of three trials, each from a
# fresh (truncated) queue after a CHECKPOINT, because a checkpoint landing inside a
# short run moves its figure by a third on a small machine.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=${SLUICE_BUILD_DIR:-$ROOT/build-bench}
WORKER=$BUILD/worker/sluice-worker
CTL=$BUILD/tools/sluicectl
API=$BUILD/api/sluice-api
PGDIR=/tmp/sluice-bench-$(id -u)
STATE=$PGDIR/state
URL="postgresql:///bench?host=$PGDIR&port=5432&user=postgres"

QUICK=0
ONLY=all
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1 ;;
	--only) ONLY=${2:?--only needs a list}; shift ;;
	*) echo "usage: run.sh [--quick] [--only pgbench,enqueue,api,process,latency,backlog,held,ratelimit,woocommerce]" >&2
	   exit 2 ;;
	esac
	shift
done

# Sizes: jobs per processing trial, seconds per pgbench/wrk run, the big backlog.
if [ "$QUICK" = 1 ]; then
	JOBS=50000; SECS=3; BIG=200000; TRIALS=1
else
	JOBS=300000; SECS=10; BIG=1000000; TRIALS=3
fi

for f in "$WORKER" "$CTL" "$API"; do
	[ -x "$f" ] || { echo "run.sh: $f is missing; run it as tools/sluice bench" >&2; exit 1; }
done
PGBIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5 -nr | head -n1)
PGBENCH=$PGBIN/pgbench
command -v wrk >/dev/null || { echo "run.sh: wrk is missing (apt-get install wrk)" >&2; exit 1; }

want() { [ "$ONLY" = all ] || [[ ",$ONLY," == *",$1,"* ]]; }
# Runs SQL (one or more statements, each in its own transaction).
q() { psql -qXAt "$URL" -v ON_ERROR_STOP=1 <<<"$1"; }
log() { printf 'bench: %s\n' "$*" >&2; }

WORKER_PIDS=()
LIGHTTPD_PID=
cleanup() {
	local p
	for p in "${WORKER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	if [ -n "$LIGHTTPD_PID" ]; then kill "$LIGHTTPD_PID" 2>/dev/null || true; fi
	if [ -n "${SHOP_PID:-}" ]; then kill "$SHOP_PID" 2>/dev/null || true; fi
	wait 2>/dev/null || true
	"$ROOT/tests/pg_cluster.sh" stop "$PGDIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# ---- the server -------------------------------------------------------------

log "starting PostgreSQL (default settings) in $PGDIR"
"$ROOT/tests/pg_cluster.sh" start "$PGDIR" "$CTL" --defaults >/dev/null
psql -qXAt "postgresql:///postgres?host=$PGDIR&port=5432&user=postgres" -c "CREATE DATABASE bench"
"$CTL" --database "$URL" migrate >/dev/null
ORG=$(q "SELECT sluice.create_org('bench')")
mkdir -p "$STATE"
[ "$(id -u)" = 0 ] && chown sluice "$STATE"

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 |"); log "$1: $2"; }

# Empties the queue with fresh table files, so trials do not inherit bloat.
fresh() {
	q "TRUNCATE sluice.job, sluice.job_archive, sluice.job_lane, sluice.worker" >/dev/null
	q "CHECKPOINT" >/dev/null
}

start_workers() {
	local n=$1 i
	shift
	for ((i = 0; i < n; i++)); do
		env DATABASE_URL="$URL" SLUICE_LOG_LEVEL=warn "$@" "$WORKER" 2>>"$STATE/workers.log" &
		WORKER_PIDS+=($!)
	done
}

stop_workers() {
	local p
	for p in "${WORKER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${WORKER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	WORKER_PIDS=()
}

wait_empty() {
	while [ "$(q "SELECT count(*) FROM sluice.job")" != 0 ]; do sleep 0.1; done
}

# Jobs per second over the archive: first claim to last completion.
processing_rate() {
	q "SELECT round(count(*) / extract(epoch FROM max(finished_at) - min(started_at)))
	     FROM sluice.job_archive"
}

enqueue_bulk() {
	local n=$1 chunk=100000
	while [ "$n" -gt 0 ]; do
		[ "$n" -lt "$chunk" ] && chunk=$n
		q "SELECT count(*) FROM sluice.enqueue_jobs($ORG, array_fill('noop'::text, ARRAY[$chunk]))" >/dev/null
		n=$((n - chunk))
	done
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# One processing trial: N jobs queued, W workers started, rate measured.
process_trial() {
	local jobs=$1 workers=$2
	fresh
	enqueue_bulk "$jobs"
	q "CHECKPOINT" >/dev/null
	start_workers "$workers"
	wait_empty
	stop_workers
	processing_rate
}

pgbench_tps() {
	"$PGBENCH" -n "$@" "$URL" 2>/dev/null | awk '/^tps/ { printf "%d", $3 }'
}

# ---- pgbench: what PostgreSQL itself does on this machine ---------------------

if want pgbench; then
	log "pgbench reference transactions (8 clients, ${SECS}s each)"
	for n in 1 100; do
		q "DROP TABLE IF EXISTS bench_q;
		   CREATE TABLE bench_q (id bigserial PRIMARY KEY, state int NOT NULL DEFAULT 0,
		                         payload jsonb NOT NULL DEFAULT '{}');
		   INSERT INTO bench_q (state) SELECT 0 FROM generate_series(1, $((n == 1 ? 400000 : 3000000)));
		   CREATE INDEX bench_q_ready ON bench_q (id) WHERE state = 0;
		   VACUUM ANALYZE bench_q; CHECKPOINT;" >/dev/null
		printf 'UPDATE bench_q SET state = 1 WHERE id IN (SELECT id FROM bench_q WHERE state = 0 ORDER BY id LIMIT %d FOR UPDATE SKIP LOCKED);\n' \
			"$n" >"$STATE/claim.sql"
		tps=$(pgbench_tps -c 8 -j 2 -T "$SECS" -f "$STATE/claim.sql")
		row "pgbench: minimal queue transaction, claim $n per transaction" \
		    "$((tps * n)) jobs/s" "reference"
	done
	q "DROP TABLE IF EXISTS bench_q; DROP TABLE IF EXISTS bench_i;
	   CREATE TABLE bench_i (id bigserial PRIMARY KEY, payload jsonb NOT NULL DEFAULT '{}'); CHECKPOINT" >/dev/null
	echo "INSERT INTO bench_i (payload) VALUES ('{}');" >"$STATE/insert.sql"
	tps=$(pgbench_tps -c 8 -j 2 -T "$SECS" -f "$STATE/insert.sql")
	INSERT_TPS=$tps
	row "pgbench: bare one-row INSERT, 8 clients" "$tps rows/s" "reference"
	printf "INSERT INTO bench_i (payload) VALUES ('{}');\nNOTIFY bench;\n" >"$STATE/notify.sql"
	tps=$(pgbench_tps -c 8 -j 2 -T "$SECS" -f "$STATE/notify.sql")
	row "pgbench: one-row INSERT + NOTIFY, 8 clients" "$tps rows/s" "reference (why Sluice does not NOTIFY per job)"
	q "DROP TABLE bench_i" >/dev/null
fi

# ---- enqueue ------------------------------------------------------------------

if want enqueue; then
	log "enqueue one job per transaction, and in bulk"
	echo "SELECT sluice.enqueue($ORG, 'noop');" >"$STATE/enqueue.sql"
	for c in 1 8; do
		fresh
		tps=$(pgbench_tps -c "$c" -j "$((c < 2 ? 1 : 2))" -T "$SECS" -f "$STATE/enqueue.sql")
		target=""
		[ "$c" = 8 ] && [ -n "${INSERT_TPS:-}" ] && target="≥ $((INSERT_TPS / 2)) (half the bare INSERT)"
		row "enqueue one job per transaction (SQL), $c producer(s)" "$tps jobs/s" "$target"
	done
	chunk=20000
	echo "SELECT count(*) FROM sluice.enqueue_jobs($ORG, array_fill('noop'::text, ARRAY[$chunk]));" >"$STATE/bulk.sql"
	fresh
	tps=$("$PGBENCH" -n -c 1 -t "$((QUICK ? 5 : 15))" -f "$STATE/bulk.sql" "$URL" 2>/dev/null |
	      awk '/^tps/ { printf "%.3f", $3 }')
	row "enqueue in bulk (SQL, sluice.enqueue_jobs, $chunk per call)" \
	    "$(awk -v t="$tps" -v c="$chunk" 'BEGIN { printf "%d", t * c }') jobs/s" "> 150000"
fi

# ---- the API through lighttpd -------------------------------------------------

if want api; then
	log "API through lighttpd (wrk, 8 connections, ${SECS}s)"
	fresh
	KEY=$("$CTL" --database "$URL" key create --org "$ORG" --name bench --scope write 2>/dev/null | tail -n1)
	# A free loopback port: the first from 18080 that nothing answers on.
	PORT=18080
	while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done
	(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$STATE/master.key")
	# The URL holds '&', which sed's replacement would read as "the match".
	sed -e "s|@PORT@|$PORT|" -e "s|@STATE_DIR@|$STATE|g" -e "s|@API_BIN@|$API|" \
	    -e "s|@DATABASE_URL@|${URL//&/\\&}|" -e "s|@LOG_LEVEL@|warn|" \
	    -e "s|@MASTER_KEY_FILE@|$STATE/master.key|" \
	    "$ROOT/tools/lighttpd.conf.in" >"$STATE/lighttpd.conf"
	/usr/sbin/lighttpd -D -f "$STATE/lighttpd.conf" 2>>"$STATE/lighttpd.stderr" &
	LIGHTTPD_PID=$!
	deadline=$((SECONDS + 30))
	until curl -fs "http://127.0.0.1:$PORT/health" >/dev/null; do
		[ "$SECONDS" -lt "$deadline" ] || { log "the API did not come up; see $STATE/api.log"; exit 1; }
		sleep 0.1
	done
	printf '{"kind":"noop","payload":{"n":1}}' >"$STATE/one.json"
	awk 'BEGIN { printf "{\"jobs\":["; for (i = 0; i < 1000; i++)
	             printf "%s{\"kind\":\"noop\",\"payload\":{\"n\":%d}}", (i ? "," : ""), i; printf "]}" }' \
	    >"$STATE/batch.json"
	for body in one batch; do
		cat >"$STATE/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
local f = io.open("$STATE/$body.json", "rb"); wrk.body = f:read("*a"); f:close()
LUA
		fresh
		out=$(wrk -t 2 -c 8 -d "${SECS}s" -s "$STATE/post.lua" "http://127.0.0.1:$PORT/api/v1/jobs")
		rps=$(awk '/^Requests\/sec/ { printf "%d", $2 }' <<<"$out")
		bad=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
		jobs=$(q "SELECT count(*) FROM sluice.job")
		secs=$(awk '/requests in/ { sub("s,", "", $4); print $4 }' <<<"$out")
		per=$(awk -v j="$jobs" -v s="$secs" 'BEGIN { printf "%d", j / s }')
		row "enqueue through the API and lighttpd, $([ "$body" = one ] && echo "one job" || echo "1000-job batches") per request" \
		    "$rps requests/s = $per jobs/s${bad:+ ($bad non-2xx)}" ""
	done
	kill "$LIGHTTPD_PID"; wait "$LIGHTTPD_PID" 2>/dev/null || true; LIGHTTPD_PID=
fi

# ---- processing ---------------------------------------------------------------

if want process; then
	for w in 1 2 4 8; do
		log "processing $JOBS noop jobs with $w worker(s), $TRIALS trial(s)"
		rates=()
		for ((t = 0; t < TRIALS; t++)); do rates+=("$(process_trial "$JOBS" "$w")"); done
		r=$(printf '%s\n' "${rates[@]}" | median)
		[ "$w" = 2 ] && TWO_WORKERS=$r
		row "processing noop jobs, $w worker(s) ($JOBS queued; median of $TRIALS: ${rates[*]})" "$r jobs/s" \
		    "$([ "$w" = 2 ] && echo "≥ the pgbench claim-100 figure")"
	done
fi

# ---- latency ------------------------------------------------------------------

if want latency; then
	log "enqueue→start latency: a job every 20 ms to 2 idle workers"
	fresh
	start_workers 2
	until [ "$(q "SELECT count(*) FROM sluice.worker WHERE waiting_until IS NOT NULL")" = 2 ]; do sleep 0.1; done
	echo "SELECT sluice.enqueue($ORG, 'noop');" >"$STATE/enqueue.sql"
	"$PGBENCH" -n -c 1 -R 50 -T "$((SECS * 2))" -f "$STATE/enqueue.sql" "$URL" >/dev/null 2>&1
	wait_empty
	stop_workers
	lat=$(q "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) || ' / ' ||
	                round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2) || ' / ' ||
	                round(max(ms)::numeric, 2) || ' ms (' || count(*) || ' jobs)'
	           FROM (SELECT extract(epoch FROM started_at - created_at) * 1000 AS ms
	                   FROM sluice.job_archive) x")
	row "enqueue→start latency p50 / p99 / max, idle workers, a job every 20 ms" "$lat" "p50 ≤ 2 ms, p99 ≤ 5 ms"
fi

# ---- backlog ------------------------------------------------------------------

if want backlog; then
	log "processing with a 10,000-job backlog (10 rounds) and a $BIG-job backlog, 2 workers"
	fresh
	start_workers 2
	total=0; secs=0
	for ((i = 0; i < 10; i++)); do
		q "TRUNCATE sluice.job_archive" >/dev/null
		enqueue_bulk 10000
		wait_empty
		d=$(q "SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM sluice.job_archive")
		total=$((total + 10000)); secs=$(awk -v a="$secs" -v b="$d" 'BEGIN { print a + b }')
	done
	stop_workers
	small=$(awk -v t="$total" -v s="$secs" 'BEGIN { printf "%d", t / s }')
	row "processing with a 10,000-job backlog, 2 workers" "$small jobs/s" ""
	rates=()
	for ((t = 0; t < TRIALS; t++)); do rates+=("$(process_trial "$BIG" 2)"); done
	big=$(printf '%s\n' "${rates[@]}" | median)
	row "processing with a $BIG-job backlog, 2 workers (median of $TRIALS: ${rates[*]})" "$big jobs/s" \
	    "within 10 % of the 10k figure ($(awk -v a="$big" -v b="$small" 'BEGIN { printf "%+.1f %%", (a - b) * 100 / b }'))"
fi

# ---- a transaction held open --------------------------------------------------

if want held; then
	log "processing while another session holds a transaction (and its snapshot) open"
	rates=()
	for ((t = 0; t < TRIALS; t++)); do
		fresh
		enqueue_bulk "$JOBS"
		q "CHECKPOINT" >/dev/null
		# REPEATABLE READ keeps the first snapshot; txid_current() gives it an xid too.
		psql -qXAt "$URL" -c "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current();
		                      SELECT pg_sleep(3600) AS sluice_bench_holder" >/dev/null 2>&1 &
		holder=$!
		until [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL
		                AND query LIKE '%sluice_bench_holder%' AND pid <> pg_backend_pid()")" = 1 ]; do
			sleep 0.1
		done
		start_workers 2
		wait_empty
		stop_workers
		rates+=("$(processing_rate)")
		q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		    WHERE query LIKE '%sluice_bench_holder%' AND pid <> pg_backend_pid()" >/dev/null
		wait "$holder" 2>/dev/null || true
	done
	r=$(printf '%s\n' "${rates[@]}" | median)
	cmp=""
	[ -n "${TWO_WORKERS:-}" ] && cmp=" ($(awk -v a="$r" -v b="$TWO_WORKERS" 'BEGIN { printf "%+.1f %%", (a - b) * 100 / b }') vs no held transaction)"
	row "processing noop jobs, 2 workers, a transaction held open all along (median of $TRIALS: ${rates[*]})" \
	    "$r jobs/s$cmp" "no more than 10 % lost"
fi

# ---- rate limits: 10,000 jobs behind an exhausted bucket ----------------------------

if want ratelimit; then
	log "10,000 rate-limited jobs waiting on an exhausted bucket (100 calls per 10 s)"
	fresh
	q "TRUNCATE sluice.rate_slot, sluice.rate_bucket" >/dev/null
	q "ALTER DATABASE bench SET track_functions = 'pl'" >/dev/null
	CONN=$(q "SELECT sluice.create_connector($ORG, 'ttd', 'bench')")
	q "UPDATE sluice.rate_window SET seconds = 10, max_calls = 100
	    WHERE policy_id = (SELECT id FROM sluice.rate_policy WHERE provider = 'ttd' AND org_id IS NULL)" >/dev/null
	q "SELECT count(sluice.enqueue_limited($ORG, 'noop', '{}', 3, '$CONN', 'ttd'))
	     FROM generate_series(1, 10000)" >/dev/null
	stats() {
		q "SELECT (SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions
		            WHERE schemaname = 'sluice' AND funcname = 'claim_jobs') || ' ' ||
		          (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'sluice.job'::regclass) || ' ' ||
		          (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'bench') || ' ' ||
		          (SELECT tup_returned + tup_fetched FROM pg_stat_database WHERE datname = 'bench') || ' ' ||
		          (SELECT count(*) FROM sluice.job_archive WHERE state = 'done')"
	}
	secs=$((SECS * 3))
	start_workers 2
	read -r c0 u0 x0 t0 d0 <<<"$(stats)"
	sleep "$secs"
	read -r c1 u1 x1 t1 d1 <<<"$(stats)"
	stop_workers
	done_jobs=$((d1 - d0))
	row "rate-limited jobs run from a backlog of 10,000 behind a 100 per 10 s bucket, 2 workers, ${secs} s" \
	    "$done_jobs jobs ($(awk -v n="$done_jobs" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')/s)" \
	    "the limit: $((secs * 10)) in ${secs} s"
	row "... claims per rate-limited job run" \
	    "$(awk -v c="$((c1 - c0))" -v n="$done_jobs" 'BEGIN { printf "%.2f", (n ? c / n : c) }')" \
	    "no claim-then-reject: idle workers sleep until the bucket reopens"
	row "... job rows written per job run (claim + settle)" \
	    "$(awk -v u="$((u1 - u0))" -v n="$done_jobs" 'BEGIN { printf "%.2f", (n ? u / n : u) }')" \
	    "the 10,000 waiting jobs are never touched"
	row "... database transactions / rows read per second" \
	    "$(( (x1 - x0) / secs )) / $(( (t1 - t0) / secs ))" "while the bucket is exhausted"

	# Function statistics cost every PL/pgSQL call: off again before the throughput trials.
	q "ALTER DATABASE bench RESET track_functions" >/dev/null

	log "processing lane jobs beside 10,000 jobs waiting on an exhausted bucket"
	rates=()
	for ((t = 0; t < TRIALS; t++)); do
		# Each trial from fresh table files, like the trials it is compared with:
		# the 10,000 waiting jobs made again, then the lane jobs.
		fresh
		q "SELECT count(sluice.enqueue_limited($ORG, 'noop', '{}', 3, '$CONN', 'ttd'))
		     FROM generate_series(1, 10000)" >/dev/null
		# Exhaust the bucket for the whole trial.
		q "UPDATE sluice.rate_window SET seconds = 3600 WHERE policy_id =
		     (SELECT id FROM sluice.rate_policy WHERE provider = 'ttd' AND org_id IS NULL)" >/dev/null
		q "INSERT INTO sluice.rate_slot SELECT id, 3600, sluice.rate_slot_start(3600, now()), 100
		     FROM sluice.rate_bucket ON CONFLICT DO NOTHING" >/dev/null
		enqueue_bulk "$JOBS"
		q "CHECKPOINT" >/dev/null
		start_workers 2
		while [ "$(q "SELECT count(*) FROM sluice.job WHERE rate_bucket IS NULL")" != 0 ]; do sleep 0.1; done
		stop_workers
		rates+=("$(processing_rate)")
	done
	r=$(printf '%s\n' "${rates[@]}" | median)
	cmp=""
	[ -n "${TWO_WORKERS:-}" ] && cmp=" ($(awk -v a="$r" -v b="$TWO_WORKERS" 'BEGIN { printf "%+.1f %%", (a - b) * 100 / b }') vs without them)"
	row "processing noop jobs, 2 workers, 10,000 jobs waiting on an exhausted bucket (median of $TRIALS: ${rates[*]})" \
	    "$r jobs/s$cmp" "the waiting jobs cost the others nothing"
fi

if want woocommerce; then
	# Seed 002: a full sync from the fake shop on loopback over HTTPS, then a
	# delta after 1 % of the orders changed.  One worker; the shop, PostgreSQL
	# and the worker share the machine's cores.  The connector gets a policy of
	# its own, far above the default 120 calls/min, so that the figure is the
	# sync's, not the limit's.
	if [ "$QUICK" = 1 ]; then PRODUCTS=1000; ORDERS=5000; else PRODUCTS=10000; ORDERS=50000; fi
	log "WooCommerce: $PRODUCTS products and $ORDERS orders in the fake shop"
	fresh
	SHOP_TLS=$STATE/shop-tls
	bash "$ROOT/tests/fake_shop/make_certs.sh" "$SHOP_TLS" >/dev/null
	node "$ROOT/tests/fake_shop/server.js" --http-port 0 --https-port 0 --tls-dir "$SHOP_TLS" \
		--products "$PRODUCTS" --orders "$ORDERS" >"$STATE/shop.out" 2>>"$STATE/shop.log" &
	SHOP_PID=$!
	until grep -q https_port "$STATE/shop.out" 2>/dev/null; do
		kill -0 "$SHOP_PID" 2>/dev/null || { echo "run.sh: the fake shop did not start" >&2; exit 1; }
		sleep 0.1
	done
	SHOP_HTTPS=$(sed -n 's/.*"https_port":\([0-9]*\).*/\1/p' "$STATE/shop.out")
	SHOP_HTTP=$(sed -n 's/.*"http_port":\([0-9]*\).*/\1/p' "$STATE/shop.out")
	export SLUICE_MASTER_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
	KEY=$("$CTL" --database "$URL" key create --org "$ORG" --scope admin --name bench | grep "^sk_")
	q "INSERT INTO sluice.app_user (org_id, email) SELECT $ORG, 'customer-' || i || '@example.com'
	     FROM generate_series(1, 50) i" >/dev/null
	body="{\"type\": \"woocommerce\", \"label\": \"bench shop\",
	       \"config\": {\"base_url\": \"https://127.0.0.1:$SHOP_HTTPS\"},
	       \"credentials\": {\"consumer_key\": \"ck_test_0123456789abcdef0123456789abcdef01234567\",
	                        \"consumer_secret\": \"cs_test_0123456789abcdef0123456789abcdef01234567\"}}"
	SHOP_CONN=$(printf '%s' "$body" | env -i PATH="$PATH" SLUICE_MASTER_KEY="$SLUICE_MASTER_KEY" \
		DATABASE_URL="$URL" REQUEST_METHOD=POST PATH_INFO=/api/v1/connectors \
		CONTENT_TYPE=application/json CONTENT_LENGTH=${#body} HTTP_AUTHORIZATION="Bearer $KEY" \
		"$API" | sed -n 's/.*"id":"\([0-9a-f-]\{36\}\)".*/\1/p' | head -n 1)
	[ -n "$SHOP_CONN" ] || { echo "run.sh: could not create the bench shop's connector" >&2; exit 1; }
	q "INSERT INTO sluice.external_sync_config (connector_id, page_size) VALUES ('$SHOP_CONN', 100);
	   WITH p AS (INSERT INTO sluice.rate_policy (provider, connector_id, per, note)
	              VALUES ('woocommerce', '$SHOP_CONN', 'connector', 'bench') RETURNING id)
	   INSERT INTO sluice.rate_window SELECT id, 60, 1000000 FROM p" >/dev/null
	# One sync, timed from the run's start to its end; prints "records seconds".
	sync_run() {
		local run
		run=$(q "SELECT sluice.woo_request_sync('$SHOP_CONN', 'manual')")
		until [ "$(q "SELECT status NOT IN ('queued', 'running') FROM sluice.external_sync_run WHERE id = '$run'")" = t ]; do
			sleep 0.2
		done
		[ "$(q "SELECT status FROM sluice.external_sync_run WHERE id = '$run'")" = success ] ||
			{ echo "run.sh: the bench sync did not succeed: $(q "SELECT error FROM sluice.external_sync_run WHERE id = '$run'")" >&2; exit 1; }
		q "SELECT coalesce((stats_json #>> '{product,fetched}')::bigint, 0) + coalesce((stats_json #>> '{order,fetched}')::bigint, 0)
		          || ' ' || round(extract(epoch FROM finished_at - started_at)::numeric, 1)
		     FROM sluice.external_sync_run WHERE id = '$run'"
	}
	start_workers 1 SLUICE_CA_FILE="$SHOP_TLS/ca.pem"
	read -r n s <<<"$(sync_run)"
	rss=$(awk '/VmHWM/ { print $2 }' "/proc/${WORKER_PIDS[0]}/status")
	row "WooCommerce full sync over HTTPS, $PRODUCTS products (with variations) and $ORDERS orders, 1 worker" \
	    "$n records in $s s ($(awk -v n="$n" -v s="$s" 'BEGIN { printf "%.0f", n / s }') records/s)" \
	    "stored raw, mapped, written to the platform's tables, one page of 100 per call"
	row "... the worker's peak RSS during the full sync" "$((rss / 1024)) MiB" \
	    "flat: one page at a time, whatever the shop's size"
	curl -sS -X POST "http://127.0.0.1:$SHOP_HTTP/__control/modify" -d '{"orders": {"percent": 1}}' >/dev/null
	read -r n s <<<"$(sync_run)"
	row "WooCommerce delta sync after 1 % of orders changed, 1 worker" \
	    "$n records in $s s" "modified_after the last run's shop time, less a 10 min overlap"
	stop_workers
	kill "$SHOP_PID" 2>/dev/null || true
	SHOP_PID=
fi

# ---- the table ------------------------------------------------------------------

echo
echo "Sluice benchmark, $(date -u +%Y-%m-%d), $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)),"
echo "$("$PGBIN/postgres" --version) with its default settings; \`tools/sluice bench$([ "$QUICK" = 1 ] && echo " --quick")\`"
echo
echo "| measure | result | target or note |"
echo "| --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
