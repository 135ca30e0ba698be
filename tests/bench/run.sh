#!/usr/bin/env bash
# tests/bench/run.sh: electric-socket's benchmark suite (issue 6). Builds the
# server, the reference server and the load generator into a temporary
# folder, runs every scenario in sequence on loopback, prints one JSON line
# per run and then the markdown tables (BENCHMARKS.md shows a run's output).
# It reports; it never fails on speed. Not run in CI.
#
#   tests/bench/run.sh                  every scenario (about 6 minutes on an idle machine)
#   tests/bench/run.sh a c              only some: a b c d e h profile peer gobench client
#
# Environment (defaults in brackets):
#   WARMUP [2s] DURATION [8s]    echo scenarios: warm-up, measured window
#   IDLE_CONNS [10000]           scenario (d)
#   FANOUT_CONNS [1000]          scenario (c): receivers (plus one sender)
#   REPEAT [1]                   rounds of a, b, c and client (the report shows
#                                medians; BENCHMARKS.md uses 3: about 10 minutes)
#   OUT [a new temporary folder] where binaries, logs, configs, results go
#   KEEP=1                       keep OUT afterwards (it is printed either way)
#   CENTRIFUGO_VERSION [the latest v6 on the module proxy]  scenario peer
#   ES_BENCH_CACHE [~/.cache/es-bench]  where scenario peer builds Centrifugo
#                                (never in the repository); a build is reused
#   QUIET_CORES [0.15] QUIET_WAIT [120] QUIET_BUDGET [300]
#                                before each run, wait up to QUIET_WAIT s until
#                                the machine is idle (below QUIET_CORES CPUs busy),
#                                and at most QUIET_BUDGET s over the whole run:
#                                on a shared machine other work skews msgs/s and
#                                latency (each line reports other_cpu_cores)
#
# Scenarios (each es run is compared with a reference run of the same shape):
#   a   echo integration, no broker key: 100 × 8 in flight, 1000 × 1
#   b   echo inside a broker update (one key per connection, every message
#       commits): memory broker, and redis with two instances (connections
#       split between them) on a redis-server of our own on a free port
#   c   fan-out: one message to a room of FANOUT_CONNS connections
#   h   one hot key: 100 connections x 1 in flight, every message an update
#       of the SAME entity (echo_key.lua, one key for all): the memory broker
#       on one instance (the reference), redis with one and with two
#       instances; then the same with a 10 ms pause between an answer and
#       the next message (latency under ordinary chat-like load). Reports
#       Redis commands per update.
#   d   IDLE_CONNS idle connections: server RSS per connection (reference,
#       es without and with a broker key)
#   e   hot reload: save the script, time until the new version answers
#   profile  the 1000 × 1 echo against tests/bench/profiled (the same
#       host.App plus pprof): CPU and allocation profiles of the window,
#       the same for the reference and for b on redis, and scenario d with
#       the Go heap, stacks and heap profiles per stage
#   (a b c d e h profile is the default set)
#   peer  Centrifugo (the latest v6, memory engine; built with go install
#       into ES_BENCH_CACHE when missing, skipped loudly when it cannot be
#       built) as a peer in the same run: after scenario a's runs of each
#       shape (the references and our echo run with it), each connection
#       publishing to its own channel and receiving its publication back
#       (the closest Centrifugo has to an echo); and after scenario d's
#       idle runs, IDLE_CONNS connections connected and subscribed. Not in
#       the default set (the first build takes about 10 minutes).
#   gobench  the Go benchmarks of the hot paths (luabridge, host, broker,
#       tests/bench), with -benchmem
#   client  the generator's CPU per message with gobwas/ws and with
#       coder/websocket as its client (not in the default set)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WARMUP=${WARMUP:-2s}
DURATION=${DURATION:-8s}
IDLE_CONNS=${IDLE_CONNS:-10000}
FANOUT_CONNS=${FANOUT_CONNS:-1000}
REPEAT=${REPEAT:-1}
OUT=${OUT:-$(mktemp -d /tmp/esbench.XXXXXX)}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

if [ $# -eq 0 ]; then
	set -- a b c d e h profile
fi
want() {
	local s
	for s in "${SELECTED[@]}"; do [ "$s" = "$1" ] && return 0; done
	return 1
}
SELECTED=("$@")

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [ "${KEEP:-}" != 1 ]; then
		echo "run.sh: results were in $OUT (removed; KEEP=1 keeps them)" >&2
		rm -rf "$OUT"
	else
		echo "run.sh: results, logs and profiles are in $OUT" >&2
	fi
}
trap cleanup EXIT

say() { echo "== $*" >&2; }

# 10,000 client sockets in the generator and 10,000 in a server: raise the
# soft limit of open files to the hard one (children inherit it).
ulimit -n "$(ulimit -Hn)" || true
say "open files: soft $(ulimit -n), hard $(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 200)) ]; then
	say "warning: the open-file limit $(ulimit -n) is below IDLE_CONNS + 200; scenario d may fail"
fi

say "building into $OUT"
(
	cd "$ROOT"
	go build -o "$OUT/electric-socket" .
	go build -o "$OUT/" ./tests/bench/loadgen ./tests/bench/refserver ./tests/bench/profiled ./tests/bench/report
)
cp "$ROOT"/tests/bench/scripts/*.lua "$OUT/"
LG=$OUT/loadgen

# ---- processes ----

# wait_log FILE PATTERN: until PATTERN appears in FILE (bounded).
wait_log() {
	local i
	for i in $(seq 1 300); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "run.sh: timed out waiting for '$2' in $1:" >&2
	tail -20 "$1" >&2
	exit 1
}

# stop PID: SIGTERM, then SIGKILL after 30 s.
stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	local keep=()
	for p in "${PIDS[@]}"; do [ "$p" != "$pid" ] && keep+=("$p"); done
	PIDS=("${keep[@]+"${keep[@]}"}")
}

# start_ref NAME [FLAGS...]: a reference server; sets PID and PORT.
start_ref() {
	local name=$1
	shift
	PORT=$($LG freeport)
	"$OUT/refserver" -listen "127.0.0.1:$PORT" "$@" 2>"$OUT/$name.log" &
	PID=$!
	PIDS+=("$PID")
	wait_log "$OUT/$name.log" "refserver listening"
}

# start_es NAME CONFIG [BINARY ARGS...]: electric-socket serve; sets PID and PORT.
start_es() {
	local name=$1 cfg=$2
	shift 2
	PORT=$($LG freeport)
	if [ $# -gt 0 ]; then
		"$@" -config "$cfg" -listen "127.0.0.1:$PORT" 2>"$OUT/$name.log" &
	else
		"$OUT/electric-socket" serve --config "$cfg" --listen "127.0.0.1:$PORT" 2>"$OUT/$name.log" &
	fi
	PID=$!
	PIDS+=("$PID")
	wait_log "$OUT/$name.log" "msg=listening"
}

# config FILE SCRIPT BROKER [REDIS_URL] [WATCH]: a configuration of the
# defaults but for: auth_timeout (scenario d authorises 10,000 connections
# after dialing them all), watch (on for scenario e only), and [limits] off
# (a closed loop sends far more than the default message_rate of 100/s per
# connection, and scenario d opens as many connections as the default
# max_connections). A server built before [limits] existed gets no [limits].
config() {
	cat >"$1" <<EOF
# written by tests/bench/run.sh
[server]
listen = "127.0.0.1:0"   # --listen sets the port
auth_timeout = "300s"

[lua]
watch = ${5:-false}

[broker]
kind = "$3"
url = "${4:-redis://127.0.0.1:6379/0}"
${LIMITS}
[[integration]]
name = "bench"
path = "/echo"
script = "$2"
EOF
}
LIMITS='
[limits]
max_connections = 0
max_connections_per_ip = 0
message_rate = 0
'
config "$OUT/probe.toml" echo.lua memory
if ! "$OUT/electric-socket" check --config "$OUT/probe.toml" >/dev/null 2>&1; then
	LIMITS=''
	config "$OUT/probe.toml" echo.lua memory
	if ! "$OUT/electric-socket" check --config "$OUT/probe.toml" >&2; then
		echo "run.sh: the bench configuration does not check" >&2
		exit 1
	fi
	say "this server has no [limits]: configurations without it"
fi

# busy_cores SECONDS: how many CPUs the whole machine kept busy meanwhile.
busy_cores() {
	local a b
	a=$(head -1 /proc/stat)
	sleep "$1"
	b=$(head -1 /proc/stat)
	echo "$a $b $1" | awk '{ busy = ($13+$14+$15+$18+$19+$20) - ($2+$3+$4+$7+$8+$9); printf "%.2f", busy / 100 / $23 }'
}

# wait_quiet: on a shared machine, wait (at most QUIET_WAIT seconds) until
# the rest of the machine is idle (below QUIET_CORES busy over 2 s) before a
# measured run; each JSON line still reports other_cpu_cores, what the rest
# of the machine used during its window.
QUIET_WAIT=${QUIET_WAIT:-120}
QUIET_BUDGET=${QUIET_BUDGET:-300}
QUIET_CORES=${QUIET_CORES:-0.15}
QUIET_SPENT=0
wait_quiet() {
	local waited=0 busy
	while :; do
		busy=$(busy_cores 2)
		if awk -v b="$busy" -v q="$QUIET_CORES" 'BEGIN { exit !(b < q) }'; then
			[ $waited -gt 0 ] && say "quiet after ${waited}s ($busy cores busy)"
			QUIET_SPENT=$((QUIET_SPENT + waited))
			return 0
		fi
		if [ $waited -ge "$QUIET_WAIT" ] || [ $((QUIET_SPENT + waited)) -ge "$QUIET_BUDGET" ]; then
			say "warning: the machine is busy ($busy cores) after ${waited}s of waiting: measuring anyway"
			QUIET_SPENT=$((QUIET_SPENT + waited))
			return 0
		fi
		waited=$((waited + 2))
	done
}

# run NAME [loadgen flags...]: one loadgen run; its JSON line goes to stdout
# and to results.jsonl.
run() {
	local name=$1
	shift
	wait_quiet
	say "$name"
	if ! "$LG" -name "$name" "$@" 2>>"$OUT/loadgen.log" | tee -a "$RESULTS"; then
		say "$name FAILED (see $OUT/loadgen.log):"
		tail -5 "$OUT/loadgen.log" >&2
	fi
}

config "$OUT/echo.toml" echo.lua memory
config "$OUT/key-memory.toml" echo_key.lua memory
config "$OUT/fanout.toml" fanout.lua memory
config "$OUT/reload.toml" reload.lua memory "" true

AUTH='{"user":"u{conn}"}'
AUTH_KEY='{"key":"k{conn}","user":"u{conn}"}'
MSG='{"seq":{seq},"text":"hello, world"}'
ECHO=(-mode echo -warmup "$WARMUP" -duration "$DURATION" -msg "$MSG")

say "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, kernel $(uname -r), $(go version | cut -d' ' -f3)"
say "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"

# ref_echo SHAPE CONNS INFLIGHT: the references of one shape, the plain one
# and the buffered one.
ref_echo() {
	start_ref "ref-$1"
	run "ref echo $1" "${ECHO[@]}" -url "ws://127.0.0.1:$PORT/echo" -conns "$2" -inflight "$3" -auth "$AUTH" -pid "$PID"
	stop "$PID"
	start_ref "refbuf-$1" -buffered
	run "refbuf echo $1" "${ECHO[@]}" -url "ws://127.0.0.1:$PORT/echo" -conns "$2" -inflight "$3" -auth "$AUTH" -pid "$PID"
	stop "$PID"
}

es_echo() { # NAME SHAPE CONFIG AUTH CONNS INFLIGHT
	start_es "$1" "$3"
	run "$1" -ref "ref echo $2" -ref2 "refbuf echo $2" "${ECHO[@]}" -url "ws://127.0.0.1:$PORT/echo" \
		-conns "$5" -inflight "$6" -auth "$4" -pid "$PID"
	stop "$PID"
}

# ---- the peer: Centrifugo (scenario peer) ----
#
# Built with `go install` from the module proxy into ES_BENCH_CACHE (outside
# the repository: neither its code nor its binary is ever committed), with
# the release build's flags (CGO_ENABLED=0, -s -w, the version stamped in).
# Configuration, for an echo as close to ours as Centrifugo allows:
#   engine memory (one node, no Redis);
#   namespace "bench": a client may subscribe to a channel of it and publish
#     to a channel it is subscribed to; no history, presence or join/leave
#     (all off by default), so a publication is only delivered;
#   connections authenticate with an HS256 connection token (claims
#     {"sub":"u<conn>"}) that the generator signs with CF_SECRET: like our
#     echo's auth message, every connection is a named user, and Centrifugo
#     does at connect what a real deployment does (its anonymous and
#     insecure modes skip that and are not how it is deployed);
#   limits off: connection_limit, user_connection_limit and
#     connection_rate_limit 0 (Centrifugo has no per-message rate limit);
#   stale_close_delay 300s (as our auth_timeout: scenario d dials 10,000
#     connections before it sends the first connect command), and the
#     application-level ping every 30s with a 10s pong timeout, as our
#     ping_interval and pong_timeout; the generator answers its pings;
#   usage_stats off (it would try to reach the Internet); everything else
#     Centrifugo's defaults, logging at info to a file.
CF_CACHE=${ES_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/es-bench}
CF_SECRET=es-bench-hmac-secret
CF_ARGS=(-protocol centrifugo -token-secret "$CF_SECRET" -auth '{"sub":"u{conn}"}' -channel 'bench:c{conn}')
CF="" CF_VERSION="" CF_SKIPPED=""
peer_skip() {
	CF="" CF_SKIPPED=$1
	say "peer: SKIPPED: $1"
	printf '{"name":"peer centrifugo","mode":"skipped","reason":"%s"}\n' "${1//\"/\'}" >>"$RESULTS"
}
peer_build() {
	local v=${CENTRIFUGO_VERSION:-} bin
	if [ -z "$v" ]; then
		v=$(cd "$OUT" && go list -m -f '{{.Version}}' github.com/centrifugal/centrifugo/v6@latest 2>>"$OUT/centrifugo-build.log") || v=""
		if [ -z "$v" ]; then
			# offline: the newest version built before
			v=$(find "$CF_CACHE" -maxdepth 1 -name 'centrifugo-v6.*' -printf '%f\n' 2>/dev/null | sed 's/^centrifugo-//' | sort -V | tail -1) || v=""
			[ -n "$v" ] && say "peer: the module proxy did not answer; using Centrifugo $v from $CF_CACHE"
		fi
	fi
	if [ -z "$v" ]; then
		peer_skip "no Centrifugo version: the module proxy did not answer and $CF_CACHE holds none (see $OUT/centrifugo-build.log)"
		return
	fi
	bin=$CF_CACHE/centrifugo-$v/centrifugo
	if [ ! -x "$bin" ]; then
		say "peer: building Centrifugo $v into $CF_CACHE/centrifugo-$v (go install; about 10 minutes the first time)"
		if ! (cd "$OUT" && CGO_ENABLED=0 GOBIN="$CF_CACHE/centrifugo-$v" go install \
			-ldflags "-s -w -X github.com/centrifugal/centrifugo/v6/internal/build.Version=${v#v}" \
			"github.com/centrifugal/centrifugo/v6@$v") >>"$OUT/centrifugo-build.log" 2>&1; then
			tail -5 "$OUT/centrifugo-build.log" >&2
			rm -rf "$CF_CACHE/centrifugo-$v"
			peer_skip "Centrifugo $v could not be built (go install failed; see $OUT/centrifugo-build.log)"
			return
		fi
	fi
	if ! "$bin" version 2>/dev/null | grep -q "Centrifugo v${v#v} "; then
		peer_skip "$bin does not report version $v: $("$bin" version 2>&1 | head -1)"
		return
	fi
	cat >"$OUT/centrifugo.json" <<EOF
{
  "log": {"level": "info"},
  "engine": {"type": "memory"},
  "usage_stats": {"disabled": true},
  "client": {
    "token": {"hmac_secret_key": "$CF_SECRET"},
    "connection_limit": 0,
    "user_connection_limit": 0,
    "connection_rate_limit": 0,
    "stale_close_delay": "300s",
    "ping_interval": "30s",
    "pong_timeout": "10s"
  },
  "channel": {
    "namespaces": [
      {"name": "bench", "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true}
    ]
  }
}
EOF
	if ! "$bin" checkconfig -c "$OUT/centrifugo.json" >>"$OUT/centrifugo-build.log" 2>&1; then
		peer_skip "Centrifugo $v refuses the bench configuration (see $OUT/centrifugo-build.log)"
		return
	fi
	CF=$bin CF_VERSION=$v
	say "peer: $("$CF" version) at $CF"
}
if want peer; then
	peer_build
fi

# start_cf NAME: Centrifugo with the bench configuration; sets PID and PORT.
start_cf() {
	PORT=$($LG freeport)
	"$CF" -c "$OUT/centrifugo.json" -a 127.0.0.1 -p "$PORT" >"$OUT/$1.log" 2>&1 &
	PID=$!
	PIDS+=("$PID")
	wait_log "$OUT/$1.log" "serving websocket"
	# it logs that line just before it listens: wait until it accepts
	local i
	for i in $(seq 1 300); do
		(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "run.sh: Centrifugo does not accept on 127.0.0.1:$PORT:" >&2
	tail -20 "$OUT/$1.log" >&2
	exit 1
}

peer_echo() { # SHAPE CONNS INFLIGHT
	start_cf "peer-$1"
	run "peer centrifugo $1" -ref "ref echo $1" -ref2 "refbuf echo $1" -vs "a echo $1" -note "Centrifugo $CF_VERSION" \
		"${ECHO[@]}" "${CF_ARGS[@]}" -url "ws://127.0.0.1:$PORT/connection/websocket" -conns "$2" -inflight "$3" -pid "$PID"
	stop "$PID"
}

# REPEAT rounds of a, b, c: each round runs the references and the servers
# of a shape back to back; the report shows the median of the rounds (and
# the range of msgs/s), as one run's figures move by a fifth from round to
# round on a virtual machine.
for round in $(seq 1 "$REPEAT"); do
	[ "$REPEAT" -gt 1 ] && say "round $round of $REPEAT"
	if want a || want b || want peer; then
		for shape in "100x8 100 8" "1000x1 1000 1"; do
			set -- $shape
			ref_echo "$1" "$2" "$3"
			if want a || want peer; then
				es_echo "a echo $1" "$1" "$OUT/echo.toml" "$AUTH" "$2" "$3"
			fi
			if want peer && [ -n "$CF" ]; then
				peer_echo "$1" "$2" "$3"
			fi
			if want b; then
				es_echo "b memory $1" "$1" "$OUT/key-memory.toml" "$AUTH_KEY" "$2" "$3"
			fi
		done
	fi

	if want b; then
		RPORT=$($LG freeport)
		redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT" \
			--logfile "$OUT/redis.log" &
		RPID=$!
		PIDS+=("$RPID")
		wait_log "$OUT/redis.log" "Ready to accept connections"
		config "$OUT/key-redis.toml" echo_key.lua redis "redis://127.0.0.1:$RPORT/0"
		for shape in "100x8 100 8" "1000x1 1000 1"; do
			set -- $shape
			start_es "b-redis-1-$1" "$OUT/key-redis.toml"
			P1=$PID PORT1=$PORT
			start_es "b-redis-2-$1" "$OUT/key-redis.toml"
			P2=$PID PORT2=$PORT
			redis-cli -p "$RPORT" config resetstat >/dev/null
			run "b redis2 $1" -ref "ref echo $1" -ref2 "refbuf echo $1" "${ECHO[@]}" \
				-url "ws://127.0.0.1:$PORT1/echo,ws://127.0.0.1:$PORT2/echo" \
				-conns "$2" -inflight "$3" -auth "$AUTH_KEY" -pid "$P1,$P2" -auxpid "$RPID"
			# what Redis was asked, for the commands per message
			redis-cli -p "$RPORT" info commandstats >"$OUT/redis-commandstats-$1-$round.txt"
			stop "$P1"
			stop "$P2"
		done
		stop "$RPID"
		rm -f "$OUT/redis.log"
	fi

	if want h; then
		AUTH_HOT='{"key":"hot","user":"u{conn}"}'
		start_es "h-memory" "$OUT/key-memory.toml"
		run "h memory 100x1" "${ECHO[@]}" -url "ws://127.0.0.1:$PORT/echo" -conns 100 -inflight 1 -auth "$AUTH_HOT" -pid "$PID"
		run "h memory 100x1 pause" "${ECHO[@]}" -pause 10ms -url "ws://127.0.0.1:$PORT/echo" \
			-conns 100 -inflight 1 -auth "$AUTH_HOT" -pid "$PID"
		stop "$PID"
		RPORT=$($LG freeport)
		redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT" \
			--logfile "$OUT/redis-h.log" &
		RPID=$!
		PIDS+=("$RPID")
		wait_log "$OUT/redis-h.log" "Ready to accept connections"
		config "$OUT/hot-redis.toml" echo_key.lua redis "redis://127.0.0.1:$RPORT/0"
		start_es "h-redis-1" "$OUT/hot-redis.toml"
		run "h redis1 100x1" -ref "h memory 100x1" "${ECHO[@]}" -url "ws://127.0.0.1:$PORT/echo" \
			-conns 100 -inflight 1 -auth "$AUTH_HOT" -pid "$PID" -auxpid "$RPID" -redis "127.0.0.1:$RPORT"
		P1=$PID PORT1=$PORT
		start_es "h-redis-2" "$OUT/hot-redis.toml"
		P2=$PID PORT2=$PORT
		for pause in "" 10ms; do
			name="h redis2 100x1" ref="h memory 100x1"
			[ -n "$pause" ] && name="$name pause" ref="$ref pause"
			run "$name" -ref "$ref" "${ECHO[@]}" ${pause:+-pause $pause} \
				-url "ws://127.0.0.1:$PORT1/echo,ws://127.0.0.1:$PORT2/echo" \
				-conns 100 -inflight 1 -auth "$AUTH_HOT" -pid "$P1,$P2" -auxpid "$RPID" -redis "127.0.0.1:$RPORT"
		done
		stop "$P1"
		stop "$P2"
		stop "$RPID"
		rm -f "$OUT/redis-h.log"
	fi

	if want c; then
		FAN=(-mode fanout -conns "$FANOUT_CONNS" -rounds 30 -warmup-rounds 5 -gap 20ms -msg "$MSG")
		start_ref ref-fanout
		run "ref fanout" "${FAN[@]}" -url "ws://127.0.0.1:$PORT/room" -auth '{"room":"fan","user":"u{conn}"}' -pid "$PID"
		stop "$PID"
		start_es c-fanout "$OUT/fanout.toml"
		run "c fanout" -ref "ref fanout" "${FAN[@]}" -url "ws://127.0.0.1:$PORT/echo" -auth '{"room":"fan","user":"u{conn}"}' -pid "$PID"
		stop "$PID"
	fi
done

if want d || want peer; then
	IDLE=(-mode idle -conns "$IDLE_CONNS" -settle 3s -idle-traffic 3s -dial-parallel 32 -msg "$MSG")
	start_ref ref-idle
	run "ref idle" "${IDLE[@]}" -url "ws://127.0.0.1:$PORT/echo" -auth "$AUTH" -pid "$PID"
	stop "$PID"
	start_es d-idle "$OUT/echo.toml"
	run "d idle es" -ref "ref idle" "${IDLE[@]}" -url "ws://127.0.0.1:$PORT/echo" -auth "$AUTH" -pid "$PID"
	stop "$PID"
	if want d; then
		start_es d-idle-key "$OUT/key-memory.toml"
		run "d idle es, broker key" -ref "ref idle" "${IDLE[@]}" -url "ws://127.0.0.1:$PORT/echo" -auth "$AUTH_KEY" -pid "$PID"
		stop "$PID"
	fi
	if want peer && [ -n "$CF" ]; then
		start_cf peer-idle
		run "peer idle centrifugo" -ref "ref idle" -vs "d idle es" -note "Centrifugo $CF_VERSION" "${IDLE[@]}" "${CF_ARGS[@]}" \
			-url "ws://127.0.0.1:$PORT/connection/websocket" -pid "$PID"
		stop "$PID"
	fi
fi

if want e; then
	for save in inplace rename; do
		start_es "e-reload-$save" "$OUT/reload.toml"
		run "e reload $save" -mode reload -script "$OUT/reload.lua" -save "$save" -reloads 10 \
			-url "ws://127.0.0.1:$PORT/echo" -auth "$AUTH" -msg '{"seq":{seq}}' -log "$OUT/e-reload-$save.log"
		stop "$PID"
	done
fi

if want profile; then
	mkdir -p "$OUT/profile"
	DPORT=$($LG freeport)
	start_es profile "$OUT/echo.toml" "$OUT/profiled" -debug "127.0.0.1:$DPORT"
	run "profile echo 1000x1" "${ECHO[@]}" -url "ws://127.0.0.1:$PORT/echo" -conns 1000 -inflight 1 -auth "$AUTH" \
		-pid "$PID" -stats "http://127.0.0.1:$DPORT/debug/mallocs" -pprof "http://127.0.0.1:$DPORT" -profile-dir "$OUT/profile"
	stop "$PID"
	# the plain reference under the same load, for its allocations and its
	# CPU profile (how much of a message is the kernel's)
	start_ref ref-profile -debug "127.0.0.1:$DPORT"
	mkdir -p "$OUT/profile/ref"
	run "profile ref 1000x1" "${ECHO[@]}" -url "ws://127.0.0.1:$PORT/echo" -conns 1000 -inflight 1 -auth "$AUTH" \
		-pid "$PID" -stats "http://127.0.0.1:$DPORT/debug/mallocs" -pprof "http://127.0.0.1:$DPORT" -profile-dir "$OUT/profile/ref"
	stop "$PID"
	go tool pprof -top -nodecount=30 "$OUT/refserver" "$OUT/profile/ref/cpu.pb.gz" >"$OUT/profile/ref/cpu-top.txt" 2>/dev/null || true
	# the redis scenario (b) at 1000 × 1: instance 1 is profiled
	if command -v redis-server >/dev/null; then
		RPORT=$($LG freeport)
		redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT" \
			--logfile "$OUT/redis-profile.log" &
		RPID=$!
		PIDS+=("$RPID")
		wait_log "$OUT/redis-profile.log" "Ready to accept connections"
		config "$OUT/key-redis-profile.toml" echo_key.lua redis "redis://127.0.0.1:$RPORT/0"
		start_es profile-redis-1 "$OUT/key-redis-profile.toml" "$OUT/profiled" -debug "127.0.0.1:$DPORT"
		P1=$PID PORT1=$PORT
		start_es profile-redis-2 "$OUT/key-redis-profile.toml"
		P2=$PID PORT2=$PORT
		mkdir -p "$OUT/profile/redis"
		run "profile redis2 1000x1" "${ECHO[@]}" -url "ws://127.0.0.1:$PORT1/echo,ws://127.0.0.1:$PORT2/echo" \
			-conns 1000 -inflight 1 -auth "$AUTH_KEY" -pid "$P1,$P2" -auxpid "$RPID" \
			-pprof "http://127.0.0.1:$DPORT" -profile-dir "$OUT/profile/redis"
		stop "$P1"
		stop "$P2"
		stop "$RPID"
		go tool pprof -top -cum -nodecount=60 "$OUT/profiled" "$OUT/profile/redis/cpu.pb.gz" \
			>"$OUT/profile/redis/cpu-cum.txt" 2>/dev/null || true
	fi
	# what an idle connection holds: the Go heap and goroutines per
	# connection, and heap profiles, at each stage of scenario d (the forced
	# GCs of the heap profiles make its RSS figures differ from d's)
	start_es profile-idle "$OUT/echo.toml" "$OUT/profiled" -debug "127.0.0.1:$DPORT"
	mkdir -p "$OUT/profile/idle"
	run "profile idle es" -mode idle -conns "$IDLE_CONNS" -settle 3s -idle-traffic 3s -dial-parallel 32 -msg "$MSG" \
		-url "ws://127.0.0.1:$PORT/echo" -auth "$AUTH" -pid "$PID" -stats "http://127.0.0.1:$DPORT/debug/mallocs" \
		-pprof "http://127.0.0.1:$DPORT" -profile-dir "$OUT/profile/idle"
	stop "$PID"
	go tool pprof -top -sample_index=inuse_space -nodecount=25 "$OUT/profiled" "$OUT/profile/idle/heap-authorised.pb.gz" \
		>"$OUT/profile/idle/heap-authorised-top.txt" 2>/dev/null || true
	start_ref ref-profile-idle -debug "127.0.0.1:$DPORT"
	run "profile idle ref" -mode idle -conns "$IDLE_CONNS" -settle 3s -dial-parallel 32 -msg "$MSG" \
		-url "ws://127.0.0.1:$PORT/echo" -auth "$AUTH" -pid "$PID" -stats "http://127.0.0.1:$DPORT/debug/mallocs"
	stop "$PID"
	(
		cd "$OUT/profile"
		go tool pprof -top -nodecount=40 "$OUT/profiled" cpu.pb.gz >cpu-top.txt 2>/dev/null || true
		go tool pprof -top -cum -nodecount=60 "$OUT/profiled" cpu.pb.gz >cpu-cum.txt 2>/dev/null || true
		go tool pprof -top -sample_index=alloc_objects -nodecount=40 -base allocs0.pb.gz "$OUT/profiled" allocs1.pb.gz >allocs-top.txt 2>/dev/null || true
		go tool pprof -top -sample_index=alloc_space -nodecount=30 -base allocs0.pb.gz "$OUT/profiled" allocs1.pb.gz >alloc-space-top.txt 2>/dev/null || true
	)
	say "profiles: $OUT/profile (cpu.pb.gz, allocs0/1.pb.gz; go tool pprof -http=: $OUT/profiled $OUT/profile/cpu.pb.gz)"
	sed -n '1,30p' "$OUT/profile/cpu-top.txt" >&2
	sed -n '1,25p' "$OUT/profile/allocs-top.txt" >&2
fi

if want client; then
	# the generator's own CPU per message with either client library, on the
	# buffered reference (the cheapest server): why loadgen uses gobwas/ws
	for round in $(seq 1 "$REPEAT"); do
		for shape in "100x8 100 8" "1000x1 1000 1"; do
			set -- $shape
			for client in gobwas coder; do
				start_ref "client-$client-$1" -buffered
				run "client $client $1" "${ECHO[@]}" -client "$client" -url "ws://127.0.0.1:$PORT/echo" \
					-conns "$2" -inflight "$3" -auth "$AUTH" -pid "$PID"
				stop "$PID"
			done
		done
	done
fi

if want gobench; then
	say "go benchmarks"
	(
		cd "$ROOT"
		go test -run '^$' -bench 'ProcessWebsocketMessage|ToAction|DecodeJSON|AppendJSON|CheckMessage' -benchmem -count 3 ./luabridge
		go test -run '^$' -bench 'FrameReadWrite|Message' -benchmem -count 3 ./host/ws ./host/engine
		go test -run '^$' -bench . -benchmem -count 3 ./tests/bench
		go test -run '^$' -bench RedisUpdate -benchtime 2s -count 1 ./broker
	) 2>&1 | tee "$OUT/gobench.txt" >&2
fi

say "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
if want peer && [ -z "$CF" ]; then
	say "peer: SKIPPED: $CF_SKIPPED"
fi
echo
"$OUT/report" "$RESULTS"
