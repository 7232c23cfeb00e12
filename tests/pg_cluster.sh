#!/usr/bin/env bash
# pg_cluster.sh — a throwaway PostgreSQL for the tests (and the benchmark).
#
#   pg_cluster.sh start DIR SLUICECTL [--defaults]
#                                       initdb into DIR, start it on a Unix socket in DIR,
#                                       create database sluice_template and migrate it;
#                                       --defaults keeps PostgreSQL's durable default
#                                       settings (the benchmark), instead of fsync off
#   pg_cluster.sh restart DIR           restart it (fast shutdown), for the outage tests
#   pg_cluster.sh stop DIR              stop it and delete DIR
#
# PostgreSQL refuses to run as root, so under root the cluster belongs to the
# unprivileged user "sluice" (created when missing).  Settings favour speed
# over durability (fsync off): the data is thrown away after the run.
set -euo pipefail

cmd=${1:?usage: pg_cluster.sh start|restart|stop DIR [SLUICECTL]}
dir=${2:?usage: pg_cluster.sh start|restart|stop DIR [SLUICECTL]}

pg_bindir() {
	local d
	# The newest installed major version.
	for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5 -nr); do
		[ -x "$d/initdb" ] && { echo "$d"; return; }
	done
	command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return; }
	echo "pg_cluster.sh: PostgreSQL server binaries not found (install postgresql)" >&2
	exit 1
}

# Under root, PostgreSQL runs as "sluice", from / (it may not be able to read
# the caller's working directory).
as_owner() {
	if [ "$(id -u)" = 0 ]; then (cd / && runuser -u sluice -- "$@"); else "$@"; fi
}

case "$cmd" in
start)
	ctl=${3:?pg_cluster.sh start DIR SLUICECTL}
	bin=$(pg_bindir)
	if [ "$(id -u)" = 0 ] && ! id sluice >/dev/null 2>&1; then
		useradd --system --no-create-home --shell /usr/sbin/nologin sluice
	fi
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
	fi
	rm -rf "$dir"
	mkdir -p "$dir"
	[ "$(id -u)" = 0 ] && chown sluice "$dir"
	as_owner "$bin/initdb" -D "$dir/data" -A trust -N -U postgres -E UTF8 \
		--locale=C >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
	cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = 5432
log_min_messages = warning
log_line_prefix = '%m [%p] %d '
CONF
	if [ "${4:-}" != --defaults ]; then
		printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n' \
			>>"$dir/data/postgresql.conf"
	fi
	if ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null; then
		echo "pg_cluster.sh: PostgreSQL did not start; its log follows" >&2
		cat "$dir/server.log" >&2
		exit 1
	fi
	url="postgresql:///sluice_template?host=$dir&port=5432&user=postgres"
	"$bin/psql" -qX "postgresql:///postgres?host=$dir&port=5432&user=postgres" \
		-c "CREATE DATABASE sluice_template" >/dev/null
	"$ctl" --database "$url" migrate >/dev/null
	echo "$dir"
	;;
restart)
	bin=$(pg_bindir)
	as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 60 restart >/dev/null
	;;
stop)
	bin=$(pg_bindir)
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
	fi
	rm -rf "$dir"
	;;
*)
	echo "usage: pg_cluster.sh start|restart|stop DIR [SLUICECTL]" >&2
	exit 2
	;;
esac
