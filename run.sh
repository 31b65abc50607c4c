#!/usr/bin/env bash
# Stock Bazaar: one entry point for running, testing and demonstrating the system.
# Usage: ./run.sh help
set -euo pipefail
cd "$(dirname "$0")"

export BAZAAR_CONFIG="${BAZAAR_CONFIG:-conf/bazaar.yaml}"
# BAZAAR_RUN_DIR lets a second bazaar (e.g. `eval`'s private one) keep its PIDs and logs apart.
RUN_DIR=${BAZAAR_RUN_DIR:-run}
LOG_DIR=$RUN_DIR/logs
PID_DIR=$RUN_DIR/pids
# BAZAAR_BIN_DIR: run prebuilt binaries from there and never build (eval and tests set it to
# the binaries they were built with).
BIN=${BAZAAR_BIN_DIR:-target/release}
# The services of the config in start order (catalog, order-<id> for each replica id,
# frontend): filled by load_config, so that any number of replicas is run the same way.
SERVICES=()
# How long `up` waits for the front-end to report a leader.
UP_TIMEOUT_S=30
# How long `down` waits for a service to exit after SIGTERM before SIGKILL.
DOWN_TIMEOUT_S=5
# How long `demo` waits for the replica files to become identical once the clients are done.
QUIET_TIMEOUT_S=15
# `dist`: static binaries built in their own target directory, so that switching between
# `dist` and normal builds never rebuilds either from scratch.
DIST_DIR=dist
DIST_TARGET=x86_64-unknown-linux-gnu
DIST_TARGET_DIR=target/dist
# The root package's binaries only: eval (the workspace member eval/) is not shipped, so the
# dist build leaves it and its plotting crate out.
DIST_BINS=(catalog order frontend client)
# docker-up/docker-down: one image FROM scratch (deploy/Dockerfile), five containers
# (deploy/compose.yaml). Overridable so that tests run beside a user's own deployment.
DOCKER_IMAGE=${BAZAAR_IMAGE:-stock-bazaar:latest}
DOCKER_PROJECT=${BAZAAR_DOCKER_PROJECT:-bazaar}
DOCKER_PUBLISH=${BAZAAR_PUBLISH:-8080}
# How long docker-up waits for the containerised front-end to report a leader.
DOCKER_UP_TIMEOUT_S=60

usage() {
  cat <<'EOF'
usage: ./run.sh COMMAND [ARGS]

  demo             build, start everything, run 5 seeded clients (p=0.5), verify, stop
                   (a bazaar of its own: refused while services of `up` run)
  test             the full test suite (fmt, clippy, unit and end-to-end tests)
  bench [ARGS]     the performance figures on private bazaars (release build,
                   installs wrk with apt when missing; --only lookups|sweep|scale|failover,
                   --plot PATH, default docs/performance-clients.svg); see docs/performance.md
  up | down        start every service in the background / stop them
  status           show which services run and who leads
  start SERVICE    start one service of the config (catalog, order-<id> for each replica
                   id of the config, frontend) and wait until it listens
  kill SERVICE     SIGKILL one service
  client ARGS...   run the client (see ./run.sh client --help)
  reset            delete the data directory (the only command that removes state)
  chaos [ARGS]     kill/freeze/restart replicas under load on a fresh private bazaar, then
                   check every invariant (--duration S, --seed N, --clients N, --prob P,
                   --replicas N)
  eval [ARGS]      the course evaluation on private bazaars: latency CSV and plots, cache over
                   time, fail-over, report in docs/eval/ (./run.sh eval --help for the sizes);
                   eval --host H --port P measures an existing deployment (latency only)
  dist             static release binaries, a config and a README in dist/
  docker-up        dist, then the five services as containers (deploy/compose.yaml) on a
                   private network, front-end published on port 8080 ($BAZAAR_PUBLISH);
                   waits for a leader
  docker-down      stop and remove those containers and their network (volumes stay)

Config: $BAZAAR_CONFIG (default conf/bazaar.yaml; conf/five.yaml runs five replicas);
environment overrides as in the README.
Logs: run/logs/SERVICE.log   PIDs: run/pids/SERVICE.pid
EOF
}

# The resolved config (the file plus the environment overrides), as the services themselves
# see it: `frontend --print-config` prints one name=value line per value run.sh needs, so the
# binaries are the config's only reader. Filled by load_config, read by conf.
declare -A CONF=()

# Asks the front-end binary (building it first when there is none) for the resolved config.
load_config() {
  ((${#CONF[@]} == 0)) || return 0
  [[ -x $BIN/frontend ]] || build
  [[ -x $BIN/frontend ]] || { echo "run.sh: no $BIN/frontend to read the config with" >&2; exit 1; }
  local out key value
  out=$("$BIN/frontend" --print-config) || exit $?
  while IFS='=' read -r key value; do
    [[ -n $key ]] && CONF[$key]=$value
  done <<<"$out"
  mapfile -t SERVICES < <(configured_services)
}

# The services that have a pid file (running or not), in stop order: front-ends, replicas
# from the highest id down, catalog. `down` stops these rather than the config's, so that a
# bazaar started with another BAZAAR_CONFIG (say five replicas) is stopped whole.
recorded_services() {
  local file names=() name
  for file in "$PID_DIR"/*.pid; do
    [[ -e $file ]] || continue
    name=${file##*/}
    names+=("${name%.pid}")
  done
  for name in "${names[@]}"; do
    if [[ $name == frontend* ]]; then echo "$name"; fi
  done
  for name in "${names[@]}"; do
    if [[ $name == order-* ]]; then echo "$name"; fi
  done | sort -t- -k2,2nr
  for name in "${names[@]}"; do
    if [[ $name == catalog ]]; then echo "$name"; fi
  done
}

# The first running service among the config's and those with a pid file, if any.
first_running() {
  local name
  for name in "${SERVICES[@]}" $(recorded_services); do
    if pid_of "$name" >/dev/null; then
      echo "$name"
      return 0
    fi
  done
  return 1
}

# One value of the resolved config, e.g. `conf frontend_port` (see `frontend --help`).
conf() {
  [[ -n ${CONF[$1]+set} ]] || { echo "run.sh: the config has no $1" >&2; exit 1; }
  echo "${CONF[$1]}"
}

# The HTTP port of replica N.
replica_port() {
  conf "order_$1_port"
}

frontend_addr() {
  echo "$(conf frontend_host):$(conf frontend_port)"
}

data_dir() {
  conf output_dir
}

build() {
  [[ -n ${BAZAAR_BIN_DIR:-} ]] && return 0
  echo "building (the first time takes a minute or two)…"
  # --workspace: the eval binary is the workspace member eval/ (bazaar-eval).
  cargo build --release --quiet --workspace --bins
}

# The service names of the config: catalog, order-<id> for each configured replica, frontend.
configured_services() {
  local id
  echo catalog
  for id in $(conf replica_ids); do echo "order-$id"; done
  echo frontend
}

# Fails (exit 2, naming the choices) unless $1 is a service of the config.
check_service() {
  load_config
  local known
  known=$(configured_services | tr '\n' ' ')
  # Not `configured_services | grep -q`: with pipefail, grep quitting at the first match can
  # fail the pipeline through SIGPIPE.
  if [[ " $known" != *" $1 "* ]]; then
    echo "run.sh: no service '$1' in $BAZAAR_CONFIG (one of: ${known% })" >&2
    exit 2
  fi
}

# The ports a service listens on, from the resolved config.
ports_of() {
  case "$1" in
    catalog) conf catalog_port ;;
    frontend) conf frontend_port ;;
    order-*)
      local id=${1#order-}
      conf "order_${id}_port"
      conf "order_${id}_leader_broadcast_port"
      conf "order_${id}_health_check_port"
      ;;
  esac
}

# Who listens on TCP port $1, as `ss -ltnp` tells it (empty when nobody does; the process is
# only named when it is this user's or we are root).
port_owner() {
  if command -v ss >/dev/null; then
    local line
    line=$(ss -Hltnp "sport = :$1" 2>/dev/null || true)
    line=${line%%$'\n'*}
    [[ -n $line ]] || return 1
    local users
    users=$(grep -o 'users:(([^)]*))' <<<"$line" | sed 's/^users:((//; s/))$//')
    echo "${users:-a process of another user}"
  else
    # No ss: a connection that succeeds means somebody listens.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || return 1
    echo "unknown (no ss to tell)"
  fi
}

# Fails, naming each taken port and its owner, when a port of a service that is not running
# yet is in use: `up` checks before it starts anything.
check_ports_free() {
  local name port owner taken=0
  for name in "$@"; do
    pid_of "$name" >/dev/null && continue
    for port in $(ports_of "$name"); do
      if owner=$(port_owner "$port"); then
        echo "run.sh: port $port ($name) is already in use by $owner" >&2
        taken=1
      fi
    done
  done
  if ((taken)); then
    echo "run.sh: nothing started; free the port(s) or set other ones (e.g. FRONTEND_PORT=8081, see conf/bazaar.yaml)" >&2
    return 1
  fi
}

# The last log lines of a service, for a failure message.
log_tail() {
  echo "--- $1 (last lines of $LOG_DIR/$1.log)" >&2
  tail -n 5 "$LOG_DIR/$1.log" >&2 2>/dev/null || true
}

pid_of() {
  local file=$PID_DIR/$1.pid
  [[ -f $file ]] || return 1
  local pid
  pid=$(cat "$file")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

command_of() {
  case "$1" in
    catalog) echo "$BIN/catalog" ;;
    frontend) echo "$BIN/frontend" ;;
    order-[0-9]*) echo "$BIN/order --id ${1#order-}" ;;
    *) echo "unknown service '$1' (one of: catalog, order-<id>, frontend)" >&2; return 2 ;;
  esac
}

start_service() {
  local name=$1 cmd
  cmd=$(command_of "$name")
  if pid=$(pid_of "$name"); then
    echo "$name already running (pid $pid)"
    return 0
  fi
  mkdir -p "$LOG_DIR" "$PID_DIR"
  # shellcheck disable=SC2086 # the command is a binary and its flags
  nohup $cmd >>"$LOG_DIR/$name.log" 2>&1 &
  echo $! >"$PID_DIR/$name.pid"
  echo "started $name (pid $!, log $LOG_DIR/$name.log)"
}

# Waits until service $1 (just started) listens on its first port, or fails at once if it
# exited (a config error, a refused secret, a port taken meanwhile), naming why.
wait_listening() {
  local name=$1 port deadline
  # The first port: no `| head`, which can fail the pipeline through SIGPIPE (pipefail).
  port=$(ports_of "$name")
  port=${port%%$'\n'*}
  deadline=$((SECONDS + UP_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    if ! pid_of "$name" >/dev/null; then
      echo "run.sh: $name exited at start" >&2
      log_tail "$name"
      rm -f "$PID_DIR/$name.pid"
      return 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run.sh: $name does not listen on port $port after ${UP_TIMEOUT_S}s" >&2
  log_tail "$name"
  return 1
}

stop_service() {
  local name=$1 pid
  if pid=$(pid_of "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((DOWN_TIMEOUT_S * 10))); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    echo "stopped $name"
  fi
  rm -f "$PID_DIR/$name.pid"
}

health() {
  curl -s --max-time 1 "http://$(frontend_addr)/health" || true
}

# Polls the front-end until it reports a leader.
wait_for_leader() {
  local deadline=$((SECONDS + UP_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    if health | grep -q '"leader":[0-9]'; then
      return 0
    fi
    all_alive || return 1
    sleep 0.2
  done
  echo "no leader after ${UP_TIMEOUT_S}s; last log lines:" >&2
  for name in "${SERVICES[@]}"; do
    echo "--- $name" >&2
    tail -n 5 "$LOG_DIR/$name.log" >&2 2>/dev/null || true
  done
  return 1
}

# Fails, naming the first service of STARTED that is no longer running, with its last log lines.
all_alive() {
  local name
  for name in "${STARTED[@]}"; do
    if ! pid_of "$name" >/dev/null; then
      echo "run.sh: $name exited" >&2
      log_tail "$name"
      return 1
    fi
  done
}

# Polls replica N's /health until it has caught up (role leader or follower), so that the
# front-end's first selection sees every replica and picks the highest id.
wait_for_replica() {
  local port deadline
  port=$(replica_port "$1")
  deadline=$((SECONDS + UP_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    if curl -s --max-time 1 "http://127.0.0.1:$port/health" | grep -q '"role":"\(leader\|follower\)"'; then
      return 0
    fi
    all_alive || return 1
    sleep 0.1
  done
  echo "order-$1 is not ready after ${UP_TIMEOUT_S}s (see $LOG_DIR/order-$1.log)" >&2
  return 1
}

# The services `up` started (not those that ran already): what it stops when it fails.
STARTED=()

# Stops what `up` started, after a failure, and fails.
undo_up() {
  local i
  echo "run.sh: up failed; stopping what it started" >&2
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    stop_service "${STARTED[$i]}" >&2
  done
  STARTED=()
  return 1
}

cmd_up() {
  build
  load_config
  check_ports_free "${SERVICES[@]}" || return 1
  local name n
  for name in "${SERVICES[@]}"; do
    if [[ $name == frontend ]]; then
      for n in $(conf replica_ids); do wait_for_replica "$n" || { undo_up; return 1; }; done
    fi
    if ! pid_of "$name" >/dev/null; then
      STARTED+=("$name")
    fi
    start_service "$name"
  done
  wait_for_leader || { undo_up; return 1; }
  echo
  echo "Stock Bazaar is up (config $BAZAAR_CONFIG, data in $(data_dir)/):"
  echo "  front-end  http://$(frontend_addr)   (try: curl http://$(frontend_addr)/stocks/GameStart)"
  echo "  live page  http://$(frontend_addr)/   (open it in a browser: replicas, cache, rates, fail-overs)"
  echo "  catalog    http://$(conf catalog_host):$(conf catalog_port)"
  local ports=() id
  for id in $(conf replica_ids); do ports+=(":$(replica_port "$id")"); done
  echo "  replicas   http://127.0.0.1${ports[*]}   (ids $(conf replica_ids))"
  echo "  health     $(health)"
}

cmd_down() {
  local name
  for name in $(recorded_services); do
    stop_service "$name"
  done
}

cmd_status() {
  load_config
  for name in "${SERVICES[@]}"; do
    if pid=$(pid_of "$name"); then
      printf '%-9s running (pid %s)\n' "$name" "$pid"
    else
      printf '%-9s stopped\n' "$name"
    fi
  done
  # Running, but not a service of this config (started with another BAZAAR_CONFIG).
  for name in $(recorded_services); do
    if [[ " ${SERVICES[*]} " != *" $name "* ]] && pid=$(pid_of "$name"); then
      printf '%-9s running (pid %s), not in %s\n' "$name" "$pid" "$BAZAAR_CONFIG"
    fi
  done
  echo "front-end health: $(health)"
}

# Waits until every replica's log is byte-identical; prints the verdict.
check_replicas_identical() {
  local dir deadline ids first id same
  dir=$(data_dir)
  ids=$(conf replica_ids)
  first=${ids%% *}
  deadline=$((SECONDS + QUIET_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    same=1
    for id in $ids; do
      cmp -s "$dir/orders-$first.csv" "$dir/orders-$id.csv" || { same=0; break; }
    done
    if ((same)) && [[ -f $dir/orders-$first.csv ]]; then
      echo "replica logs identical: $(($(wc -l <"$dir/orders-$first.csv") - 1)) orders in each of $(wc -w <<<"$ids")"
      return 0
    fi
    sleep 0.2
  done
  echo "replica logs differ after ${QUIET_TIMEOUT_S}s" >&2
  return 1
}

cmd_demo() {
  local name
  load_config
  if name=$(first_running); then
    echo "run.sh: demo starts and stops a bazaar of its own, but $name is running (./run.sh up?)." >&2
    echo "  Stop it first (./run.sh down), or load the running one with ./run.sh client --clients 5." >&2
    return 1
  fi
  trap cmd_down EXIT
  cmd_up
  echo
  echo "== 5 clients, seed 42, p=0.5, 20 lookups each"
  local status=0
  "$BIN/client" --port "$(conf frontend_port)" --host "$(conf frontend_host)" \
    --clients 5 --seed 42 --prob 0.5 --n_request 20 || status=$?
  check_replicas_identical || status=1
  if ((status == 0)); then
    echo "demo: every order verified"
  else
    echo "demo: FAILED (see run/logs/)" >&2
  fi
  return "$status"
}

# Installs wrk with apt when it is missing (the lookup figures drive it).
ensure_wrk() {
  command -v wrk >/dev/null && return 0
  echo "bench: wrk is missing; installing it with apt" >&2
  local sudo=
  ((EUID == 0)) || sudo=sudo
  $sudo apt-get install -y wrk >&2 || { $sudo apt-get update >&2 && $sudo apt-get install -y wrk >&2; }
}

cmd_bench() {
  ensure_wrk
  cargo bench --quiet --bench bazaar -- "$@"
}

cmd_test() {
  cargo fmt --all -- --check
  cargo clippy --workspace --all-targets --quiet -- -D warnings
  RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
  local out status=0
  out=$(mktemp)
  cargo test --release --workspace -- --test-threads="${TEST_THREADS:-2}" 2>&1 | tee "$out" || status=$?
  # One closing line for the whole suite (cargo prints one per test binary).
  awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$out"
  rm -f "$out"
  return "$status"
}

# Static (crt-static, static-pie) binaries: they run on any x86-64 Linux and in a `FROM scratch`
# container, with nothing else installed.
cmd_dist() {
  echo "building the static binaries (the first time takes a minute or two)…"
  RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR=$DIST_TARGET_DIR \
    cargo build --release --quiet --target "$DIST_TARGET" --bins
  # Shipped stripped (about 3 MB each instead of 17); the debug info goes to
  # dist/.debug/NAME.debug, named by a gnu-debuglink: gdb looks for it there.
  mkdir -p "$DIST_DIR/conf" "$DIST_DIR/.debug"
  local name built
  for name in "${DIST_BINS[@]}"; do
    built=$DIST_TARGET_DIR/$DIST_TARGET/release/$name
    objcopy --only-keep-debug "$built" "$DIST_DIR/.debug/$name.debug"
    rm -f "$DIST_DIR/$name"
    objcopy --strip-all --add-gnu-debuglink="$DIST_DIR/.debug/$name.debug" "$built" "$DIST_DIR/$name"
    chmod 0755 "$DIST_DIR/$name"
  done
  cp conf/*.yaml "$DIST_DIR/conf/"
  cat >"$DIST_DIR/README" <<'EOF'
Stock Bazaar: static binaries (x86-64 Linux, no shared libraries needed), stripped; their
debug info is in .debug/ (gdb looks there by itself; not needed to run them).

Run them from this directory (each prints its options with --help):

  ./catalog  --config conf/bazaar.yaml
  ./order    --config conf/bazaar.yaml --id N      (N = 1, 2, 3: each replica id of the
                                                   config; conf/five.yaml has 1 to 5)
  ./frontend --config conf/bazaar.yaml [--dump]
  ./client   --host 127.0.0.1 --port 8080 --clients 5 --prob 0.5 [--json]

Start the catalog and the three replicas first, then the front-end. Each runs in the
foreground and logs to its terminal. In the background instead, logs in logs/:

  mkdir -p logs
  for s in catalog "order --id 1" "order --id 2" "order --id 3" frontend; do
    nohup ./$s --config conf/bazaar.yaml >>"logs/${s// /-}.log" 2>&1 &
    echo "$s: pid $!"
  done

Stop one with Ctrl-C (in the foreground) or `kill PID` (SIGTERM: it stops gracefully,
and resumes from its state files when started again).

The secret: the internal endpoints (replication, invalidation, leader selection) require
the deployment's shared secret. conf/bazaar.yaml ships a development value, which the
services accept only on a loopback address (127.0.0.1); on any other address they refuse to
start until they are given your own, the same for every service:

  head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > secret.txt; chmod 600 secret.txt
  BAZAAR_SECRET_FILE=$PWD/secret.txt ./catalog --config conf/multihost.yaml

(or `secret_file: /path/to/secret.txt` in the config). State goes to output_dir of the config
(default ./data, relative to where you start them). Environment variables override single
keys (CATALOG_HOST, ORDER_HOST<id> for any replica id, FRONTEND_PORT, OUTPUT_DIR, ...; see
conf/bazaar.yaml); `./frontend --print-config` shows the values in effect.
EOF
  echo "static binaries in $DIST_DIR/: ${DIST_BINS[*]} (stripped, debug info in $DIST_DIR/.debug/) + conf/, README"
}

# docker-compose with the file secret of deploy/compose.secret-file.yaml in place of the swarm
# secret (docker-compose has no external secrets). Its warnings that it ignores keys meant for
# `docker stack deploy` (endpoint_mode, once per service) are dropped; every other line of
# stderr is kept.
compose() {
  BAZAAR_IMAGE=$DOCKER_IMAGE BAZAAR_PUBLISH=$DOCKER_PUBLISH BAZAAR_SECRET_FILE=$(docker_secret_file) \
    docker-compose --project-name "$DOCKER_PROJECT" --file deploy/compose.yaml \
    --file deploy/compose.secret-file.yaml "$@" 2> >(grep -v -e "endpoint_mode" >&2)
}

# Where docker-up keeps the deployment secret of its containers (one file per project).
docker_secret_file() {
  local dir=$RUN_DIR
  [[ $dir == /* ]] || dir=$PWD/$dir
  echo "$dir/docker-$DOCKER_PROJECT.secret"
}

cmd_docker_up() {
  cmd_dist
  # A deployment secret of its own, kept for the next docker-up (the volumes keep the state,
  # and every service must agree); BAZAAR_SECRET chooses it instead.
  local secret_file
  secret_file=$(docker_secret_file)
  mkdir -p "$RUN_DIR"
  if [[ -n ${BAZAAR_SECRET:-} ]]; then
    (umask 077 && printf '%s\n' "$BAZAAR_SECRET" >"$secret_file")
  elif [[ ! -s $secret_file ]]; then
    (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$secret_file")
    echo "generated a deployment secret for these containers in $secret_file (BAZAAR_SECRET chooses one)"
  fi
  # Quiet, because the legacy builder prints a deprecation notice on every build (buildx is
  # not needed for this one-stage FROM scratch image); on failure everything is shown.
  local built
  if ! built=$(docker build --quiet --file deploy/Dockerfile --tag "$DOCKER_IMAGE" . 2>&1); then
    echo "$built" >&2
    return 1
  fi
  compose up --detach
  local addr=127.0.0.1:$DOCKER_PUBLISH
  local deadline=$((SECONDS + DOCKER_UP_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    if curl -s --max-time 1 "http://$addr/health" | grep -q '"leader":[0-9]'; then
      echo "Stock Bazaar is up in containers (project $DOCKER_PROJECT): http://$addr"
      echo "  health $(curl -s --max-time 1 "http://$addr/health")"
      return 0
    fi
    sleep 0.5
  done
  echo "no leader after ${DOCKER_UP_TIMEOUT_S}s; last log lines:" >&2
  compose logs --tail 5 >&2 || true
  return 1
}

main() {
  local cmd=${1:-help}
  shift || true
  if [[ $cmd == start || $cmd == kill ]] && (($# != 1)); then
    echo "run.sh: $cmd needs exactly one SERVICE (catalog, order-<id>, frontend), got $#" >&2
    usage >&2
    exit 2
  fi
  case "$cmd" in
    demo) cmd_demo ;;
    test) cmd_test ;;
    bench) cmd_bench "$@" ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    start)
      [[ -x $BIN/order ]] || build
      check_service "$1"
      if pid_of "$1" >/dev/null; then
        start_service "$1"
      else
        check_ports_free "$1" || exit 1
        start_service "$1"
        wait_listening "$1" || exit 1
      fi
      ;;
    kill)
      check_service "$1"
      if pid=$(pid_of "$1"); then
        kill -KILL "$pid"
        echo "killed $1 (pid $pid)"
      else
        echo "$1 is not running"
      fi
      rm -f "$PID_DIR/$1.pid"
      ;;
    client)
      [[ -x $BIN/client ]] || build
      "$BIN/client" "$@"
      ;;
    reset)
      local dir
      load_config
      dir=$(data_dir)
      if name=$(first_running); then
        echo "stop the services first (./run.sh down): $name is running" >&2
        exit 1
      fi
      rm -rf -- "$dir"
      echo "deleted $dir/"
      ;;
    dist) cmd_dist ;;
    docker-up) cmd_docker_up ;;
    docker-down) compose down --timeout 10 ;;
    eval)
      build
      "$BIN/eval" "$@"
      ;;
    chaos)
      # The test harness (the `testkit` feature) is in no other binary.
      if [[ -z ${BAZAAR_BIN_DIR:-} ]]; then
        echo "building (the first time takes a minute or two)…"
        cargo build --release --quiet --bins --features testkit
      fi
      "$BIN/chaos" "$@"
      ;;
    help | -h | --help) usage ;;
    *)
      echo "run.sh: unknown command '$cmd'" >&2
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
