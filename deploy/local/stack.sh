#!/usr/bin/env bash
# The local stack, from the project's own files: a real Apache Kafka broker (KRaft, single node,
# jars resolved from Maven Central by kafka/pom.xml), SecantusDB (a MongoDB wire-protocol server,
# from PyPI) and the five services. Everything it writes lives under .local/ (make clean removes it).
#
#   stack.sh fetch-kafka | start-kafka | start-mongo | start-services | up | down | status
#
# Ports and paths come from the environment (defaults in brackets):
#   AFORO_LOCAL_DIR [.local]  AFORO_KAFKA_PORT [9092]  AFORO_KAFKA_CONTROLLER_PORT [9093]
#   AFORO_MONGO_PORT [27017]  AFORO_KAFKA_HEAP [512m]
#   AFORO_API_HTTP_PORT [8089]  AFORO_SSE_GATEWAY_HTTP_PORT [8090]  AFORO_BRIDGE_HTTP_PORT [9101]
#   AFORO_TRIGGER_HTTP_PORT [9102]  AFORO_DISPATCHER_HTTP_PORT [9103]  AFORO_HARNESS_HTTP_PORT [3001]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/deploy/local"
LOCAL=${AFORO_LOCAL_DIR:-$ROOT/.local}
PY=${AFORO_PYTHON:-$ROOT/.venv/bin/python}
KAFKA_PORT=${AFORO_KAFKA_PORT:-9092}
CONTROLLER_PORT=${AFORO_KAFKA_CONTROLLER_PORT:-9093}
MONGO_PORT=${AFORO_MONGO_PORT:-27017}
KAFKA_HEAP=${AFORO_KAFKA_HEAP:-512m}
KAFKA_LIBS="$ROOT/.local/kafka-libs" # shared by every stack dir: the jars are fetched once
RUN="$LOCAL/run"
LOGS="$LOCAL/logs"

SERVICES=(bridge trigger dispatcher api sse_gateway)
declare -A SERVICE_PORT=(
  [bridge]=${AFORO_BRIDGE_HTTP_PORT:-9101}
  [trigger]=${AFORO_TRIGGER_HTTP_PORT:-9102}
  [dispatcher]=${AFORO_DISPATCHER_HTTP_PORT:-9103}
  [api]=${AFORO_API_HTTP_PORT:-8089}
  [sse_gateway]=${AFORO_SSE_GATEWAY_HTTP_PORT:-8090}
)
HARNESS_PORT=${AFORO_HARNESS_HTTP_PORT:-3001}

mkdir -p "$RUN" "$LOGS"

say() { printf '%s\n' "$*" >&2; }
ready_line() { printf '  %-12s ready  %s\n' "$1" "$2" >&2; } # name what: one line per component

alive() { # pid -> 0 if it runs; a zombie (killed, not yet reaped: pid 1 of some containers never reaps) is dead
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0 # no /proc (macOS): kill -0 is all there is
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

running() { # name -> 0 if its recorded pid is alive
  local pidfile="$RUN/$1.pid"
  [[ -f $pidfile ]] && alive "$(cat "$pidfile")"
}

launch() { # name logfile command... : start detached in its own session, record the pid
  local name=$1 logfile=$2; shift 2
  if running "$name"; then say "$name already running (pid $(cat "$RUN/$name.pid"))"; return 0; fi
  setsid nohup "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local deadline=$((SECONDS + $3))
  until port_open "$2"; do
    if ! running "$1"; then say "$1 exited; see its log in $LOGS"; tail -n 30 "$LOGS/$1.log" >&2 || true; return 1; fi
    if ((SECONDS > deadline)); then say "$1 not listening on $2 after $3 s"; return 1; fi
    sleep 0.3
  done
}

fetch_kafka() {
  local stamp="$KAFKA_LIBS/.pom.sha256" want
  want=$(sha256sum "$HERE/kafka/pom.xml" | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return 0; fi
  say "fetching Kafka jars from Maven Central (once; cached in $KAFKA_LIBS)"
  rm -rf "$KAFKA_LIBS.tmp" && mkdir -p "$KAFKA_LIBS.tmp"
  mvn -q -B -Dstyle.color=never -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.tmp" >&2
  rm -rf "$KAFKA_LIBS" && mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
  echo "$want" >"$stamp"
}

start_kafka() {
  fetch_kafka
  local data="$LOCAL/kafka" props="$LOCAL/kafka/server.properties"
  mkdir -p "$data/logs"
  sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" \
    -e "s#@DATA_DIR@#$data#g" "$HERE/kafka/server.properties.template" >"$props"
  if running kafka; then say "kafka already running"; return 0; fi
  if port_open "$KAFKA_PORT"; then say "port $KAFKA_PORT is taken by another process; set AFORO_KAFKA_PORT"; return 1; fi
  if [[ ! -f $data/logs/meta.properties ]]; then
    local cluster_id
    cluster_id=$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties" \
      kafka.tools.StorageTool format --standalone --cluster-id "$cluster_id" --config "$props" >>"$LOGS/kafka.log" 2>&1
  fi
  launch kafka "$LOGS/kafka.log" java "-Xms128m" "-Xmx$KAFKA_HEAP" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$props"
  wait_port kafka "$KAFKA_PORT" 90
  ready_line kafka "127.0.0.1:$KAFKA_PORT"
}

start_mongo() {
  mkdir -p "$LOCAL/secantus"
  if ! running mongodb && port_open "$MONGO_PORT"; then
    say "port $MONGO_PORT is taken by another process; set AFORO_MONGO_PORT"
    return 1
  fi
  launch mongodb "$LOGS/mongodb.log" "$PY" -m secantus --host 127.0.0.1 --port "$MONGO_PORT" \
    --storage-path "$LOCAL/secantus" --log-level WARNING
  wait_port mongodb "$MONGO_PORT" 60
  ready_line mongodb "127.0.0.1:$MONGO_PORT (SecantusDB, MongoDB wire protocol)"
}

dev_env() { # the development-only secrets and settings the services (and the harness's dev tokens) use
  export AFORO_SECRETS_ENCRYPTION_KEYS=${AFORO_SECRETS_ENCRYPTION_KEYS:-$(dev_secret secrets-key "$PY" -c \
    'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')}
  export AFORO_API_AUTH_MODE=${AFORO_API_AUTH_MODE:-hs256}
  export AFORO_API_JWT_HS256_SECRET=${AFORO_API_JWT_HS256_SECRET:-$(dev_secret jwt-secret "$PY" -c \
    'import secrets; print(secrets.token_urlsafe(48))')}
}

dev_secret() { # name generator-command: a per-checkout development secret, made once, kept in .local/
  local file="$ROOT/.local/dev-$1"
  if [[ ! -s $file ]]; then (umask 077; "${@:2}" >"$file"); fi
  cat "$file"
}

start_services() {
  # Development-only secrets and settings; production sets these in its own environment.
  dev_env
  export AFORO_SSE_GATEWAY_SESSION_SECRET=${AFORO_SSE_GATEWAY_SESSION_SECRET:-$(dev_secret sse-session-secret "$PY" -c \
    'import secrets; print(secrets.token_urlsafe(48))')}
  export AFORO_DISPATCHER_OUTBOUND_ALLOWLIST=${AFORO_DISPATCHER_OUTBOUND_ALLOWLIST:-127.0.0.1/32}
  # Plaintext SMTP (security: none) to a local mail catcher is accepted for these hosts (docs/channels.md).
  export AFORO_API_OUTBOUND_ALLOWLIST=${AFORO_API_OUTBOUND_ALLOWLIST:-127.0.0.1/32}
  export AFORO_KAFKA_BOOTSTRAP_SERVERS=${AFORO_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}
  # retryWrites=false: a single local node has no failover to retry across, and SecantusDB slows down
  # once it holds 10,000 retryable-write records (every write then scans them). Production keeps the default.
  export AFORO_MONGO_URI=${AFORO_MONGO_URI:-mongodb://127.0.0.1:$MONGO_PORT/?retryWrites=false}
  local service
  for service in "${SERVICES[@]}"; do
    local upper=${service^^}
    launch "$service" "$LOGS/$service.log" env "AFORO_${upper}_HTTP_PORT=${SERVICE_PORT[$service]}" \
      "$PY" -m "aforo.$service"
  done
}

harness_env() { # the harness beside the local stack: its API, and the dev setting for its dev tokens
  export AFORO_HARNESS_HTTP_PORT=$HARNESS_PORT
  export AFORO_HARNESS_API_URL=${AFORO_HARNESS_API_URL:-http://127.0.0.1:${SERVICE_PORT[api]}}
  export AFORO_KAFKA_BOOTSTRAP_SERVERS=${AFORO_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}
  dev_env
}

start_harness() {
  harness_env
  launch harness "$LOGS/harness.log" "$PY" -m aforo.harness
}

ready() { # name port: /readyz answers 200 (quietly: no curl errors while it is still starting)
  curl -fs -o /dev/null --max-time 3 "http://127.0.0.1:$2/readyz"
}

wait_ready() { # each service's /readyz, then the harness's, one line as each becomes ready
  local deadline=$((SECONDS + ${1:-120})) name port
  local -a names=("${SERVICES[@]}")
  running harness && names+=(harness)
  for name in "${names[@]}"; do
    port=${SERVICE_PORT[$name]:-$HARNESS_PORT}
    until ready "$name" "$port"; do
      if ! running "$name"; then say "$name exited; last lines of $LOGS/$name.log:"; tail -n 30 "$LOGS/$name.log" >&2; return 1; fi
      if ((SECONDS > deadline)); then say "$name not ready in time; last lines of $LOGS/$name.log:"; tail -n 30 "$LOGS/$name.log" >&2; return 1; fi
      sleep 0.5
    done
    ready_line "$name" "http://127.0.0.1:$port"
  done
}

stop_one() { # name: SIGTERM, then SIGKILL after 30 s
  local pidfile="$RUN/$1.pid" pid
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  if alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then say "$1 ignored SIGTERM; killing"; kill -KILL -- "-$pid" 2>/dev/null || true; fi
  fi
  rm -f "$pidfile"
}

down() {
  local name
  stop_one harness
  for name in "${SERVICES[@]}"; do stop_one "$name"; done
  stop_one mongodb
  stop_one kafka
}

status() {
  local name
  for name in kafka mongodb "${SERVICES[@]}" harness; do
    if running "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

urls() {
  cat <<TXT

aforo-notify is up.
  API           http://127.0.0.1:${SERVICE_PORT[api]}          (readyz, metrics, /api/v1/...)
  SSE gateway   http://127.0.0.1:${SERVICE_PORT[sse_gateway]}          (readyz, metrics, streams)
  bridge        http://127.0.0.1:${SERVICE_PORT[bridge]}/readyz   /metrics
  trigger       http://127.0.0.1:${SERVICE_PORT[trigger]}/readyz   /metrics
  dispatcher    http://127.0.0.1:${SERVICE_PORT[dispatcher]}/readyz   /metrics
  Harness       http://127.0.0.1:$HARNESS_PORT          (open it: catalog, webhook, fire, live inbox, audit)
  Kafka         127.0.0.1:$KAFKA_PORT      MongoDB  ${AFORO_MONGO_URI:-mongodb://127.0.0.1:$MONGO_PORT}
  Logs          $LOGS/<name>.log
  Stop          make down

A development token (tenant t1, role ADMIN) for the API:
  AFORO_API_AUTH_MODE=hs256 AFORO_API_JWT_HS256_SECRET=\$(cat $ROOT/.local/dev-jwt-secret) $PY -m aforo.api.dev_tokens token --tenant t1 --role ADMIN
Receiving webhooks: docs/receiving-webhooks.md
TXT
}

case "${1:-}" in
  fetch-kafka) fetch_kafka ;;
  start-kafka) start_kafka ;;
  start-mongo) start_mongo ;;
  start-services) start_services ;;
  start-harness) start_harness ;;
  harness) harness_env; exec "$PY" -m aforo.harness ;;
  wait-ready) wait_ready "${2:-120}" ;;
  up)
    say "starting the local stack; each component is listed as it becomes ready"
    # An existing Kafka or MongoDB named in the environment is used instead of starting one.
    if [[ -n ${AFORO_KAFKA_BOOTSTRAP_SERVERS:-} ]]; then say "using Kafka at $AFORO_KAFKA_BOOTSTRAP_SERVERS"; else start_kafka; fi
    if [[ -n ${AFORO_MONGO_URI:-} ]]; then say "using MongoDB at $AFORO_MONGO_URI"; else start_mongo; fi
    start_services; start_harness; wait_ready 150; urls ;;
  down) down ;;
  status) status ;;
  *) say "usage: $0 fetch-kafka|start-kafka|start-mongo|start-services|start-harness|harness|wait-ready|up|down|status"; exit 2 ;;
esac
