#!/usr/bin/env bash
# The replica benchmark of `make bench`: 1, 2 and 3 `hsmkms serve`
# processes on one SoftHSM2 token directory and one PostgreSQL database,
# loaded by one generator (hsmkms bench, 16 clients spread over the
# replicas), GenerateDataKey and Decrypt on a warm key. Beside each rate it
# prints the raw token operation's rate (bench-target --mode token, one
# process), the machine's CPU busy share during the run and the database
# transactions per request, which say where the limit is.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/hsmkms
duration=${BENCH_DURATION:-8s}
concurrency=${BENCH_CONCURRENCY:-16}
work=$(mktemp -d /tmp/hsmkms-bench-replicas-XXXXXX)
chmod 755 "$work"
pids=()
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$pgbin" ] || pgbin=$(dirname "$(command -v pg_ctl)")
runpg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  runpg "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# A failing step ends the run (set -e); say which, since a pipeline into
# sed or awk otherwise ends it without a word (seen: the benchmarks' test
# binary refusing to start without SoftHSM2; make bench runs make deps).
trap 'echo "$(basename "$0"): line $LINENO failed: $BASH_COMMAND" >&2' ERR

# PostgreSQL, as the tests start it (service/store/postgres/pgtest).
mkdir -p "$work/pg"
[ "$(id -u)" -eq 0 ] && chown postgres "$work/pg"
export PGPASSWORD=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$PGPASSWORD" >"$work/pg/pw"
[ "$(id -u)" -eq 0 ] && chown postgres "$work/pg/pw"
runpg "$pgbin/initdb" -D "$work/pg/data" -U hsmkms --pwfile "$work/pg/pw" --auth scram-sha-256 --no-sync >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
runpg "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1" -w start >/dev/null
psql() { "$pgbin/psql" -X -q -t -A -h 127.0.0.1 -p "$port" -U hsmkms "$@"; }
psql -d postgres -c 'CREATE DATABASE bench'
# The password comes from PGPASSWORD, as libpq's users expect.
export HSMKMS_STORE="postgres://hsmkms@127.0.0.1:$port/bench?sslmode=disable"

eval "$(softhsm/mktoken.sh "$work/softhsm" bench 2>/dev/null)"
export HSMKMS_PIN=1234
export AWS_ACCESS_KEY_ID=AKIABENCHBENCHBENCH0 AWS_SECRET_ACCESS_KEY=benchbenchbenchbenchbenchbenchbenchbench
export HSMKMS_ROOT_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID HSMKMS_ROOT_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

"$bin" bench-target --mode token >"$work/token.url" 2>>"$work/err" & pids+=($!)
for _ in $(seq 100); do [ -s "$work/token.url" ] && break; sleep 0.1; done
token=$(head -n1 "$work/token.url")
endpoints=()
for i in 1 2 3; do
  "$bin" serve --listen 127.0.0.1:0 --metrics-listen off --data-dir "$work/data$i" --audit-log "$work/audit$i.log" 2>"$work/serve$i.err" & pids+=($!)
  for _ in $(seq 100); do grep -q "serving the KMS API at" "$work/serve$i.err" && break; sleep 0.1; done
  e=$(sed -n 's/.*serving the KMS API at //p' "$work/serve$i.err")
  [ -n "$e" ] || { cat "$work/serve$i.err" >&2; exit 1; }
  endpoints+=("$e")
done
export HSMKMS_ENDPOINT=${endpoints[0]}
key=$("$bin" --output json key create | python3 -c 'import json,sys; print(json.load(sys.stdin)["KeyId"])')

cpu() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat; }
commits() { psql -d bench -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'bench'"; }
run() { # endpoints op key
  "$bin" --output json bench --endpoint "$1" --op "$2" --concurrency "$concurrency" --duration "$duration" ${3:+--key-id "$3"}
}

printf '%-16s %9s %10s %8s %10s %9s %9s %9s\n' op replicas rate/s vs_1 token/s cpu_busy db_tx/req p99_ms
for op in GenerateDataKey Decrypt; do
  t=$(run "$token" $op 00000000-0000-0000-0000-000000000000)
  one=
  for n in 1 2 3; do
    eps=$(IFS=,; echo "${endpoints[*]:0:$n}")
    read -r total0 idle0 <<<"$(cpu)"; tx0=$(commits)
    r=$(run "$eps" $op "$key")
    read -r total1 idle1 <<<"$(cpu)"; tx1=$(commits)
    python3 - "$op" "$n" "$r" "$t" "$total0" "$idle0" "$total1" "$idle1" "$tx0" "$tx1" "${one:-0}" <<'PY'
import json, sys
op, n, r, t = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
total0, idle0, total1, idle1, tx0, tx1, one = map(float, sys.argv[5:12])
busy = 1 - (idle1 - idle0) / max(total1 - total0, 1)
rate = r["rate_per_second"]
vs1 = rate / one if one else 1.0
txreq = (tx1 - tx0) / max(r["requests"], 1)
err = f"  ERRORS {r['errors']}: {r.get('first_error', '')}" if r["errors"] else ""
print(f"{op:<16} {n:9d} {rate:10.0f} {vs1:8.2f} {t['rate_per_second']:10.0f} {busy:9.0%} {txreq:9.4f} {r['p99_ms']:9.2f}{err}")
# A rate with failed requests in it is no figure: fail the run, as bench.sh does.
if r["errors"] or t["errors"]:
    sys.exit(f"{op} on {n} replicas: {r['errors']} requests failed, {t['errors']} against the token")
PY
    # An if, not [ ] &&: as the script's last command, a false test
    # would be its exit status.
    if [ -z "$one" ]; then one=$(echo "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rate_per_second"])'); fi
  done
done
