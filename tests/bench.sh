#!/usr/bin/env bash
# The server benchmark of `make bench`, as the throughput issue defines it:
#   raw   the bare PKCS#11 operation in-process (hsm's BenchmarkRawToken:
#         the calls hsm/benchcmp's raw side makes), best of 1, 2 and 4
#         goroutines;
#   null  a server that only verifies SigV4 and answers (bench-target);
#   c     hsmkms serve with its audit log on;
# null and c loaded by one lean SigV4 generator (hsmkms bench), for
# GenerateDataKey and Decrypt, at 16 clients (c against the bound
# 1/(1/raw + 1/null)) and at 1 client (c's p50 against p50(null) + 1/raw,
# raw as above, the best of 1, 2 and 4 goroutines, as the issue defines it,
# and the only bound). null and c take turns in BENCH_SLICES slices of
# BENCH_SLICE each, so that a neighbour's load on this shared machine
# weighs on both alike: a rate is all requests over all slices' time, a
# p50 or p99 the slices' mean weighted by their requests. Beside them: the server's allocations per request
# (BenchmarkServer's handler, -benchmem), its peak RSS over the run, and
# its RSS early and late in a 60 s run (no growth expected); and tok: the
# token behind a bare HTTP endpoint (bench-target --mode token: no SigV4,
# no audit, no store), its rate at 16 clients and its p50 at one, the
# floor of any server of this token, shown beside the bound, never as it;
# and the CPU each request costs null, tok and c at 16 clients, the
# server's (/proc/<pid>/stat around each slice) and the load generator's.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/hsmkms
go=${GO:-go}
slice=${BENCH_SLICE:-2s}
slices=${BENCH_SLICES:-4}
concurrency=${BENCH_CONCURRENCY:-16}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# A failing step ends the run (set -e); say which, since a pipeline into
# sed or awk otherwise ends it without a word (seen: the benchmarks' test
# binary refusing to start without SoftHSM2; make bench runs make deps).
trap 'echo "$(basename "$0"): line $LINENO failed: $BASH_COMMAND" >&2' ERR

# raw is measured in slices too, taking turns with null and c: measured
# once at the start, a neighbour's load at that moment moved the bound by
# a quarter between runs. The test binary is built once; each slice runs
# BenchmarkRawToken for one operation at 1, 2 and 4 goroutines. The slices
# run in the 16-client rounds (before XKS Encrypt's, for XKSEncrypt); the
# 1-client bounds and XKS Decrypt use the raw those rounds measured.
"$go" test -c -o "$work/hsm.test" ./hsm/
raw_slice() { # op: appends "op goroutines iterations rate" lines to $work/raw
  local before
  before=$(wc -l <"$work/raw")
  (cd hsm && "$work/hsm.test" -test.run '^$' -test.bench "^BenchmarkRawToken\$/^op=$1\$" -test.benchtime "$slice" -test.count 1) |
    awk '$1 ~ /^BenchmarkRawToken\/op=/ && $4 == "raw-op/s" { split($1, f, /[=\/-]/); print f[3], f[5], $2, $3 }' >>"$work/raw"
  [ "$(wc -l <"$work/raw")" -eq "$((before + 3))" ] || { echo "BenchmarkRawToken printed no rates for $1" >&2; exit 1; }
}
: >"$work/raw"

# Allocations per request: the server's handler alone, in process
# (service/server's BenchmarkServer/op=…/handler, -benchmem).
"$go" test -run '^$' -bench 'BenchmarkServer/op=.*/handler' -benchtime "${BENCH_ALLOC_N:-20000x}" -count 1 ./service/server/ |
  sed -n 's|^BenchmarkServer/op=\([A-Za-z]*\)/handler[^ ]* .* \([0-9]*\) B/op[[:space:]]*\([0-9]*\) allocs/op.*|\1 \2 \3|p' >"$work/allocs"
[ "$(wc -l <"$work/allocs")" -eq 2 ] || { echo "BenchmarkServer printed no allocations" >&2; exit 1; }

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

"$bin" bench-target --mode null >"$work/null.url" 2>>"$work/err" & pids+=($!)
null_pid=$!
null=$(endpoint_of "$work/null.url")
# The token behind an HTTP endpoint without authentication or audit: an
# extra column for one client (the floor any server of this token has),
# never the bound.
HSMKMS_TOKEN_LABEL=bench "$bin" bench-target --mode token >"$work/tok.url" 2>>"$work/err" & pids+=($!)
tok_pid=$!
tok=$(endpoint_of "$work/tok.url")
"$bin" serve --listen 127.0.0.1:0 --xks-listen 127.0.0.1:0 --data-dir "$work/data" --audit-log "$work/audit.log" 2>"$work/serve.err" & pids+=($!)
serve_pid=$!
for _ in $(seq 100); do grep -q "serving the XKS proxy API at" "$work/serve.err" && break; sleep 0.1; done
hsmkms=$(sed -n 's/.*serving the KMS API at //p' "$work/serve.err")
hsmkms_xks=$(sed -n 's/.*serving the XKS proxy API at //p' "$work/serve.err")
[ -n "$hsmkms" ] && [ -n "$hsmkms_xks" ] || { cat "$work/serve.err" >&2; exit 1; }
# The XKS proxy API's null: SigV4 for kms-xks-proxy verified, canned answers.
"$bin" bench-target --mode xks-null >"$work/xnull.url" 2>>"$work/err" & pids+=($!)
xnull=$(endpoint_of "$work/xnull.url")

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of a process
run() { # out endpoint op concurrency key-id server-pid: appends one slice's result
  # and, to out.cpu, the server's CPU ticks before and after and the load
  # generator's user and system seconds (GNU time), for CPU per request.
  local before
  before=$(cpu_ticks "$6")
  /usr/bin/time -f '%U %S' -o "$work/time" \
    "$bin" --output json bench --endpoint "$2" --op "$3" --concurrency "$4" --duration "$slice" --key-id "$5" >>"$1"
  echo "$before $(cpu_ticks "$6") $(cat "$work/time")" >>"$1.cpu"
}

dummy=00000000-0000-0000-0000-000000000000
key=$(HSMKMS_ENDPOINT=$hsmkms "$bin" --output json key create --description "hsmkms bench" | python3 -c 'import json, sys; print(json.load(sys.stdin)["KeyId"])')
for op in GenerateDataKey Decrypt; do
  for n in "$concurrency" 1; do
    for _ in $(seq "$slices"); do
      [ "$n" = "$concurrency" ] && raw_slice $op
      run "$work/null.$op.$n" "$null" $op "$n" $dummy "$null_pid"
      run "$work/c.$op.$n" "$hsmkms" $op "$n" "$key" "$serve_pid"
      run "$work/tok.$op.$n" "$tok" $op "$n" $dummy "$tok_pid"
    done
  done
done
# The XKS proxy API, as the throughput issue's bound applies to it: null
# is xks-null, raw its token operation (BenchmarkRawToken's XKSEncrypt for
# Encrypt: IV from C_GenerateRandom, then the seal; Decrypt's unseal for
# Decrypt, the same calls).
HSMKMS_ENDPOINT=$hsmkms "$bin" xks store create bench >/dev/null
HSMKMS_ENDPOINT=$hsmkms "$bin" xks key allow bench "$key" >/dev/null
read -r xks_id xks_secret < <(HSMKMS_ENDPOINT=$hsmkms "$bin" xks credential add bench 2>/dev/null |
  python3 -c 'import json, sys; c = json.load(sys.stdin)["XksProxyAuthenticationCredential"]; print(c["AccessKeyId"], c["RawSecretAccessKey"])')
run_xks() { # out url op concurrency [id secret]: appends one slice's result
  AWS_ACCESS_KEY_ID=${5:-$AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY=${6:-$AWS_SECRET_ACCESS_KEY} \
    "$bin" --output json bench --endpoint "$hsmkms" --xks "$2" --xks-prefix bench --key-id "$key" --op "$3" \
    --concurrency "$4" --duration "$slice" >>"$1"
}
for op in Encrypt Decrypt; do
  for n in "$concurrency" 1; do
    for _ in $(seq "$slices"); do
      [ "$n" = "$concurrency" ] && [ $op = Encrypt ] && raw_slice XKSEncrypt
      run_xks "$work/xnull.$op.$n" "$xnull" $op "$n"
      run_xks "$work/xc.$op.$n" "$hsmkms_xks" $op "$n" "$xks_id" "$xks_secret"
    done
  done
done
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status")

# Memory over a long run: GenerateDataKey at full concurrency for
# BENCH_LONG (60 s), the server's resident set read after its first tenth
# and at its end.
long=${BENCH_LONG:-60}
"$bin" --output json bench --endpoint "$hsmkms" --op GenerateDataKey --concurrency "$concurrency" --duration "${long}s" >"$work/long" &
long_pid=$!
sleep "$((long / 10))"
rss_early=$(awk '/VmRSS/ {print $2}' "/proc/$serve_pid/status")
wait "$long_pid"
rss_late=$(awk '/VmRSS/ {print $2}' "/proc/$serve_pid/status")

python3 - "$work" "$concurrency" "$rss_kib" "$rss_early" "$rss_late" "$long" "$(getconf CLK_TCK)" <<'PY'
import json, sys
work, n, rss, early, late, long = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
tck = int(sys.argv[7])
allocs = {}
for line in open(f"{work}/allocs"):
    op, b, a = line.split()
    allocs[op] = (int(b), int(a))
# raw per operation and goroutine count: all its slices' iterations over
# their total time, as for null and c.
ops, secs = {}, {}
for line in open(f"{work}/raw"):
    op, g, iters, rate = line.split()
    k = (op, int(g))
    ops[k] = ops.get(k, 0) + int(iters)
    secs[k] = secs.get(k, 0.0) + int(iters) / float(rate)
raw = {}
for (op, g), n_ops in ops.items():
    raw.setdefault(op, {})[g] = n_ops / secs[(op, g)]
def load(name):
    """The slices of one target: requests and errors summed, the rate
    over their total time, p50 and p99 weighted by requests."""
    text, dec, runs, i = open(f"{work}/{name}").read(), json.JSONDecoder(), [], 0
    while text[i:].strip():
        r, i = dec.raw_decode(text, len(text) - len(text[i:].lstrip()))
        runs.append(r)
    n = sum(r["requests"] for r in runs)
    seconds = sum(r["requests"] / r["rate_per_second"] for r in runs if r["requests"])
    out = {"requests": n, "errors": sum(r["errors"] for r in runs),
           "rate_per_second": n / seconds if seconds else 0.0}
    for p in ("p50_ms", "p99_ms"):
        out[p] = sum(r[p] * r["requests"] for r in runs) / n if n else 0.0
    return out
errors = 0
# misses are the bounds the issues set (12: c/bound >= 0.85 at 16 clients
# and <= 1.3 at one; 14: >= 0.85 through the XKS listener) that this run
# missed, named in its last line.
misses = []
def check(what, ratio, ok):
    if not ok:
        misses.append(f"{what} {ratio:.2f}")
print(f"{n} clients")
print(f"{'op':<16} {'raw':>8} {'(g)':>3} {'null':>8} {'c':>8} {'bound':>8} {'c/bound':>8} {'p50_ms':>7} {'p99_ms':>7} {'allocs':>6} {'B/req':>6} {'tok':>8} {'tok/bound':>9}")
for op in ("GenerateDataKey", "Decrypt"):
    g, r = max(raw[op].items(), key=lambda kv: kv[1])
    nl, c, tk = load(f"null.{op}.{n}"), load(f"c.{op}.{n}"), load(f"tok.{op}.{n}")
    errors += nl["errors"] + c["errors"] + tk["errors"]
    bound = 1 / (1 / r + 1 / nl["rate_per_second"])
    print(f"{op:<16} {r:8.0f} {g:3d} {nl['rate_per_second']:8.0f} {c['rate_per_second']:8.0f} {bound:8.0f} {c['rate_per_second'] / bound:8.2f} {c['p50_ms']:7.3f} {c['p99_ms']:7.3f} {allocs[op][1]:6d} {allocs[op][0]:6d} {tk['rate_per_second']:8.0f} {tk['rate_per_second'] / bound:9.2f}")
    check(f"{op} at {n} clients", c['rate_per_second'] / bound, c['rate_per_second'] / bound >= 0.85)
def cpu(name):
    """CPU per request over a target's slices, in µs: the server's (from
    /proc/<pid>/stat) and the load generator's (GNU time)."""
    server = loadgen = 0.0
    for line in open(f"{work}/{name}.cpu"):
        before, after, user, system = line.split()
        server += (int(after) - int(before)) / tck
        loadgen += float(user) + float(system)
    reqs = load(name)["requests"]
    return server / reqs * 1e6, loadgen / reqs * 1e6
print(f"CPU per request at {n} clients, µs: the server's (the load generator's)")
print(f"{'op':<16} {'null':>12} {'tok':>12} {'c':>12}")
for op in ("GenerateDataKey", "Decrypt"):
    cols = [cpu(f"{t}.{op}.{n}") for t in ("null", "tok", "c")]
    print(f"{op:<16} " + " ".join(f"{f'{s:.0f} ({l:.0f})':>12}" for s, l in cols))
print("1 client")
print(f"{'op':<16} {'1/raw_ms':>8} {'null_p50':>8} {'c_p50':>8} {'bound_ms':>8} {'c/bound':>8} {'c_p99':>7} {'tok_p50':>7}")
for op in ("GenerateDataKey", "Decrypt"):
    lat = 1000 / max(raw[op].values())
    nl, c, tk = load(f"null.{op}.1"), load(f"c.{op}.1"), load(f"tok.{op}.1")
    errors += nl["errors"] + c["errors"] + tk["errors"]
    bound = nl["p50_ms"] + lat
    print(f"{op:<16} {lat:8.3f} {nl['p50_ms']:8.3f} {c['p50_ms']:8.3f} {bound:8.3f} {c['p50_ms'] / bound:8.2f} {c['p99_ms']:7.3f} {tk['p50_ms']:7.3f}")
    check(f"{op} at 1 client", c['p50_ms'] / bound, c['p50_ms'] / bound <= 1.3)
print(f"XKS proxy API, {n} clients (raw: XKSEncrypt for Encrypt, Decrypt's for Decrypt)")
print(f"{'op':<16} {'raw':>8} {'null':>8} {'c':>8} {'bound':>8} {'c/bound':>8} {'p50_ms':>7} {'p99_ms':>7}")
for op, rop in (("Encrypt", "XKSEncrypt"), ("Decrypt", "Decrypt")):
    g, r = max(raw[rop].items(), key=lambda kv: kv[1])
    nl, c = load(f"xnull.{op}.{n}"), load(f"xc.{op}.{n}")
    errors += nl["errors"] + c["errors"]
    bound = 1 / (1 / r + 1 / nl["rate_per_second"])
    print(f"{op:<16} {r:8.0f} {nl['rate_per_second']:8.0f} {c['rate_per_second']:8.0f} {bound:8.0f} {c['rate_per_second'] / bound:8.2f} {c['p50_ms']:7.3f} {c['p99_ms']:7.3f}")
    check(f"XKS {op} at {n} clients", c['rate_per_second'] / bound, c['rate_per_second'] / bound >= 0.85)
print("XKS proxy API, 1 client")
print(f"{'op':<16} {'1/raw_ms':>8} {'null_p50':>8} {'c_p50':>8} {'bound_ms':>8} {'c/bound':>8} {'c_p99':>7}")
for op, rop in (("Encrypt", "XKSEncrypt"), ("Decrypt", "Decrypt")):
    lat = 1000 / max(raw[rop].values())
    nl, c = load(f"xnull.{op}.1"), load(f"xc.{op}.1")
    errors += nl["errors"] + c["errors"]
    bound = nl["p50_ms"] + lat
    print(f"{op:<16} {lat:8.3f} {nl['p50_ms']:8.3f} {c['p50_ms']:8.3f} {bound:8.3f} {c['p50_ms'] / bound:8.2f} {c['p99_ms']:7.3f}")
print(f"server peak RSS {rss / 1024:.1f} MiB")
lg = load("long")
errors += lg["errors"]
print(f"{long} s of GenerateDataKey at {n} clients ({lg['rate_per_second']:.0f}/s): RSS {early / 1024:.1f} MiB after {int(long) // 10} s, {late / 1024:.1f} MiB at the end ({(late - early) / early * 100:+.1f} %)")
print("bounds: all met" if not misses else "bounds missed: " + "; ".join(misses))
if errors:
    sys.exit(f"{errors} requests failed")
PY

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
