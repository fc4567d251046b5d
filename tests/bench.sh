#!/usr/bin/env bash
# The server benchmark of `make bench`: with one load generator (hsmkms
# bench, 16 concurrent clients) it measures, in one run,
#   (a) the raw token operation behind an unauthenticated endpoint,
#   (b) a null server that verifies SigV4 and answers without the token,
#   (c) hsmkms serve,
# for GenerateDataKey and Decrypt, and prints c against the composed bound
# 1/(1/a + 1/b).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/hsmkms
duration=${BENCH_DURATION:-8s}
concurrency=${BENCH_CONCURRENCY:-16}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

eval "$(softhsm/mktoken.sh "$work/softhsm" bench 2>/dev/null)"
export HSMKMS_PIN=1234
export AWS_ACCESS_KEY_ID=AKIABENCHBENCHBENCH0 AWS_SECRET_ACCESS_KEY=benchbenchbenchbenchbenchbenchbenchbench
export HSMKMS_ROOT_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID HSMKMS_ROOT_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

endpoint_of() { # waits for a file's first line
  for _ in $(seq 100); do
    if [ -s "$1" ]; then head -n1 "$1"; return; fi
    sleep 0.1
  done
  echo "no endpoint in $1" >&2; cat "$work/err" >&2; exit 1
}

# One at a time: SoftHSM2 processes that open a new token at the same
# instant can miss it.
"$bin" bench-target --mode token >"$work/token.url" 2>>"$work/err" & pids+=($!)
token=$(endpoint_of "$work/token.url")
"$bin" bench-target --mode null >"$work/null.url" 2>>"$work/err" & pids+=($!)
null=$(endpoint_of "$work/null.url")
"$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" --audit-log "$work/audit.log" 2>"$work/serve.err" & pids+=($!)
for _ in $(seq 100); do grep -q "serving the KMS API at" "$work/serve.err" && break; sleep 0.1; done
hsmkms=$(sed -n 's/.*serving the KMS API at //p' "$work/serve.err")
[ -n "$hsmkms" ] || { cat "$work/serve.err" >&2; exit 1; }

run() { # endpoint op [key-id]
  local args=(--endpoint "$1" --op "$2" --concurrency "$concurrency" --duration "$duration")
  [ -n "${3:-}" ] && args+=(--key-id "$3")
  "$bin" --output json bench "${args[@]}"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

dummy=00000000-0000-0000-0000-000000000000
printf '%-16s %10s %10s %10s %10s %8s %9s %9s\n' op a:token b:null c:hsmkms bound c/bound p50_ms p99_ms
for op in GenerateDataKey Decrypt; do
  a=$(run "$token" $op $dummy); b=$(run "$null" $op $dummy); c=$(run "$hsmkms" $op)
  ra=$(echo "$a" | field rate_per_second); rb=$(echo "$b" | field rate_per_second); rc=$(echo "$c" | field rate_per_second)
  errs=$(( $(echo "$a" | field errors) + $(echo "$b" | field errors) + $(echo "$c" | field errors) ))
  python3 - "$op" "$ra" "$rb" "$rc" "$(echo "$c" | field p50_ms)" "$(echo "$c" | field p99_ms)" "$errs" <<'PY'
import sys
op, a, b, c, p50, p99, errs = sys.argv[1], *map(float, sys.argv[2:7]), int(sys.argv[7])
bound = 1 / (1 / a + 1 / b)
print(f"{op:<16} {a:10.0f} {b:10.0f} {c:10.0f} {bound:10.0f} {c / bound:8.2f} {p50:9.2f} {p99:9.2f}" + (f"  ERRORS {errs}" if errs else ""))
PY
done

# Files: hsmkms encrypt and decrypt of a 2 GiB file through the server,
# with the peak resident memory of each (GNU time's maximum RSS).
big_size_mib=${BENCH_FILE_MIB:-2048}
head -c "$((big_size_mib << 20))" /dev/zero >"$work/big"
export HSMKMS_ENDPOINT=$hsmkms
"$bin" key create --alias bench-files >/dev/null
printf '\n%-8s %10s %10s %12s\n' file MiB seconds max_rss_MiB
for step in encrypt decrypt; do
  if [ $step = encrypt ]; then args=(encrypt --key alias/bench-files --in "$work/big" --out "$work/big.enc")
  else args=(decrypt --in "$work/big.enc" --out "$work/big.out"); fi
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" "$bin" "${args[@]}"
  end=$(date +%s.%N)
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'{sys.argv[3]:<8} {int(sys.argv[4]):10d} {s:10.2f} {int(sys.argv[5])/1024:12.1f}   ({int(sys.argv[4])/s:.0f} MiB/s)')" "$start" "$end" $step "$big_size_mib" "$(cat "$work/rss")"
done
cmp -s "$work/big" "$work/big.out" || { echo "the decrypted file differs" >&2; exit 1; }
