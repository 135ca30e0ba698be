#!/usr/bin/env bash
# tests/bench/ab.sh: two builds of the server back to back on the same load,
# alternated (old, new, old, new, ...), for a change too small to see across
# run.sh's separate runs: on a shared 2-core guest a run's speed moves by
# ±20% from one minute to the next, and both builds share each minute here.
# Reports; never fails on speed. Not run in CI.
#
#   tests/bench/ab.sh OLD [NEW]     git revisions (NEW defaults to the working tree)
#
# Environment (defaults in brackets): ROUNDS [4] WARMUP [2s] DURATION [5s]
#   SHAPES [echo 1000 1,echo 100 8,key 1000 1,key 100 8]
#   OUT [a new temporary folder]; KEEP=1 keeps it.
#
# Shapes (SHAPES: "SCRIPT CONNS INFLIGHT", comma-separated): echo is
# echo.lua (no broker key), key the echo inside a memory-broker update
# (echo_key.lua, a key per connection), with run.sh's configuration (limits
# off). Each round runs every shape, old then new. Per shape and build it prints the
# median msgs/s, server CPU µs per message, and that CPU divided by the load
# generator's own CPU per message in the same window (the generator is the
# same binary for both builds, so its cost per message measures how fast
# the machine ran that minute; the quotient is the least noisy figure).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OLD=${1:?usage: tests/bench/ab.sh OLD [NEW]}
NEW=${2:-}
ROUNDS=${ROUNDS:-4}
WARMUP=${WARMUP:-2s}
DURATION=${DURATION:-5s}
SHAPES=${SHAPES:-echo 1000 1,echo 100 8,key 1000 1,key 100 8}
OUT=${OUT:-$(mktemp -d /tmp/esab.XXXXXX)}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
SERVERS=()
cleanup() {
	local p
	for p in "${SERVERS[@]+"${SERVERS[@]}"}"; do kill "$p" 2>/dev/null || true; done
	git -C "$ROOT" worktree remove --force "$OUT/old-tree" 2>/dev/null || true
	git -C "$ROOT" worktree remove --force "$OUT/new-tree" 2>/dev/null || true
	if [ "${KEEP:-}" = 1 ]; then echo "ab.sh: results in $OUT" >&2; else rm -rf "$OUT"; fi
}
trap cleanup EXIT
say() { echo "== $*" >&2; }

# build REV NAME: the server of git revision REV (empty: the working tree).
build() {
	local rev=$1 name=$2 dir=$ROOT
	if [ -n "$rev" ]; then
		dir=$OUT/$name-tree
		git -C "$ROOT" worktree add -q --detach "$dir" "$rev"
	fi
	(cd "$dir" && go build -o "$OUT/$name" .)
	say "$name: ${rev:-working tree} ($(git -C "$dir" rev-parse --short HEAD))"
}
build "$OLD" old
build "$NEW" new
(cd "$ROOT" && go build -o "$OUT/" ./tests/bench/loadgen)
cp "$ROOT"/tests/bench/scripts/echo.lua "$ROOT"/tests/bench/scripts/echo_key.lua "$OUT/"
LG=$OUT/loadgen

config() { # FILE SCRIPT
	cat >"$1" <<EOF
[server]
listen = "127.0.0.1:0"
auth_timeout = "300s"
[lua]
watch = false
[broker]
kind = "memory"
[limits]
max_connections = 0
max_connections_per_ip = 0
message_rate = 0
[[integration]]
name = "bench"
path = "/echo"
script = "$2"
EOF
}
config "$OUT/echo.toml" echo.lua
config "$OUT/key.toml" echo_key.lua

MSG='{"seq":{seq},"text":"hello, world"}'
# one NAME BUILD CONFIG AUTH CONNS INFLIGHT
one() {
	local port pid
	port=$($LG freeport)
	"$OUT/$2" serve --config "$OUT/$3.toml" --listen "127.0.0.1:$port" 2>"$OUT/server.log" &
	pid=$!
	SERVERS=("$pid")
	for _ in $(seq 100); do grep -q "msg=listening" "$OUT/server.log" && break; sleep 0.1; done
	"$LG" -name "$1" -mode echo -warmup "$WARMUP" -duration "$DURATION" -msg "$MSG" \
		-url "ws://127.0.0.1:$port/echo" -conns "$5" -inflight "$6" -auth "$4" -pid "$pid" \
		2>>"$OUT/loadgen.log" >>"$RESULTS"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	SERVERS=()
}

ulimit -n "$(ulimit -Hn)" || true
say "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
	IFS=, read -ra shapes <<<"$SHAPES"
	for shape in "${shapes[@]}"; do
		set -- $shape
		auth='{"user":"u{conn}"}'
		[ "$1" = key ] && auth='{"key":"k{conn}","user":"u{conn}"}'
		for b in old new; do
			say "round $r: $b $1 $2x$3"
			one "$b $1 $2x$3" "$b" "$1" "$auth" "$2" "$3"
		done
	done
done

# the medians, per shape and build
echo
echo "| shape | build | msgs/s | server µs/msg | ÷ loadgen µs/msg |"
echo "|---|---|---|---|---|"
sed -E 's/.*"name":"([a-z]+) ([a-z]+ [0-9x]+)".*"msgs_per_s":([0-9.]+).*"server_cpu_us_per_msg":([0-9.]+).*"loadgen_cpu_us_per_msg":([0-9.]+).*/\2|\1|\3|\4|\5/' "$RESULTS" |
	sort -t'|' -k1,1 -k2,2r |
	awk -F'|' '
	function median(s,   a, n, i, j, t) { n = split(s, a, " ")
		for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
		return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
	{ k = $1 "|" $2; if (!(k in m)) order[++n] = k; m[k] = m[k] " " $3; c[k] = c[k] " " $4; q[k] = q[k] " " ($4 / $5) }
	END { for (i = 1; i <= n; i++) { k = order[i]; split(k, p, "|");
		printf "| %s | %s | %d | %.2f | %.3f |\n", p[1], p[2], median(m[k]), median(c[k]), median(q[k]) } }'
