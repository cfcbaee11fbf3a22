# Helpers shared by the server scripts (sourced, not run).

# Debian puts server binaries (mariadbd, nginx) in /usr/sbin, which is not on a normal user's PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac

# free_port: a TCP port on 127.0.0.1 that nothing listens on now and that no other server
# script of this run has been handed: the scripts start in parallel and bind seconds later, so
# every port handed out is recorded (under a lock) in $BULWARK_SERVERS_DIR/ports.
# Without BULWARK_SERVERS_DIR (a benchmark starting one server) there is no ledger.
free_port() {
  if [ -z "${BULWARK_SERVERS_DIR:-}" ]; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local ledger="$BULWARK_SERVERS_DIR/ports" port
  (
    flock 9
    for _ in $(seq 50); do
      port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
      if ! grep -qx "$port" "$ledger" 2>/dev/null; then
        echo "$port" >>"$ledger"
        echo "$port"
        exit 0
      fi
    done
    exit 1
  ) 9>>"$ledger.lock"
}

# wait_until SECONDS CMD...: retries CMD every 0.1 s until it succeeds or SECONDS pass.
wait_until() {
  local limit=$1; shift
  local deadline=$(( $(date +%s%N) + limit * 1000000000 ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s%N)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# export_env NAME VALUE: records a variable for the tests in $BULWARK_SERVERS_DIR/env.
export_env() {
  echo "export $1=$(printf '%q' "$2")" >>"$BULWARK_SERVERS_DIR/env"
}

# alive PID: the process exists and is not a zombie (init here reaps only about once a second,
# so kill -0 alone would report a dead server as running).
alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [ -n "$st" ] && [[ $st != Z* ]]
}

# signal_pidfile FILE SIGNAL SECONDS: sends SIGNAL to the process in FILE, waits up to SECONDS
# for it to exit (then SIGKILL), and removes FILE.
signal_pidfile() {
  local f=$1 sig=$2 seconds=$3
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f")
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq $((seconds * 40))); do alive "$pid" || break; sleep 0.025; done
  alive "$pid" && kill -9 "$pid" 2>/dev/null
  rm -f "$f"
}

# stop_pidfile FILE: TERM the process, KILL it after 10 s.
stop_pidfile() { signal_pidfile "$1" TERM 10; }

# static_nginx DIR PORT LOCATION: nginx serving the files under DIR/www as application/json at
# `location LOCATION` on 127.0.0.1:PORT, tuned as the benchmarks compare against it (2 workers,
# sendfile, keep-alive, open_file_cache, no access log); config, pid (DIR/nginx.pid) and logs
# under DIR. Returns once nginx started (not once it answers: wait_until a curl for that).
static_nginx() {
  local dir=$1 port=$2 location=$3
  mkdir -p "$dir/www" "$dir/logs"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  open_file_cache max=64 inactive=60s;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy; fastcgi_temp_path $dir/fcgi;
  uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  server {
    listen 127.0.0.1:$port reuseport;
    root $dir/www;
    location $location { default_type application/json; }
  }
}
CONF
  chmod -R a+rX "$dir" # the workers drop root privileges
  nginx -p "$dir" -c "$dir/nginx.conf"
}

# cpu_ticks PID... -> utime + stime of the processes, in clock ticks (0 for a PID that is gone):
# the benchmarks' CPU time per operation.
cpu_ticks() {
  local p t=0 f
  for p in "$@"; do
    f=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) || f=0
    t=$((t + ${f:-0}))
  done
  echo "$t"
}

# listening_pids HOST:PORT,... -> the PIDs listening on those ports (ss), space-separated: a
# shared Kafka cluster's brokers from its bootstrap list, whose CPU the benchmarks count.
listening_pids() {
  local hp
  for hp in ${1//,/ }; do
    ss -ltnpH "sport = :${hp##*:}" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | head -1
  done | tr '\n' ' '
}

# kafka_crowded RAW_WINDOW BOOTSTRAP WHO -> prints the cluster's topic and partition counts
# (benchmarks/kafka/raw_window.c --count, built as RAW_WINDOW), and WHO's warning above 300
# partitions: a cluster that other runs left hundreds of topics on halves a benchmark's rate.
kafka_crowded() {
  local counted
  counted=$("$1" "$2" --count 2> >(grep -v '^%' >&2)) || return 0
  echo "$counted"
  if [ "$(sed -n 's/.* \([0-9]*\) partitions/\1/p' <<<"$counted")" -gt 300 ] 2>/dev/null; then
    echo "$3: warning: more than 300 partitions on this cluster; leftover topics slow it (delete them first)" >&2
  fi
}

# The benchmark scripts' arithmetic.
# mixed A B -> the throughput of an even GET/SET mix of rates A and B (2 / (1/A + 1/B)), rounded
mixed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", 2 / (1 / a + 1 / b) }'; }
# div A B -> A / B with two decimals
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# bench_executables SUBDIR TARGET... -> with BUILD_DIR unset, builds the TARGETs in the release
# preset (BUILD_DIR=build/release); then each must be an executable in $BUILD_DIR/benchmarks/SUBDIR.
bench_executables() {
  local dir=$1 t
  shift
  if [ -z "${BUILD_DIR:-}" ]; then
    BUILD_DIR=build/release
    cmake --preset release >/dev/null
    cmake --build "$BUILD_DIR" --target "$@" >/dev/null
  fi
  for t in "$@"; do
    [ -x "$BUILD_DIR/benchmarks/$dir/$t" ] || { echo "missing $BUILD_DIR/benchmarks/$dir/$t (build the target $t)" >&2; return 1; }
  done
}

# callgrind_instructions COMMAND... -> the instructions callgrind counted in one run of COMMAND
# (its output discarded; valgrind must be installed)
callgrind_instructions() {
  local out
  out=$(mktemp -d)
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$@" >/dev/null 2>"$out/log"
  grep -o 'Collected : [0-9]*' "$out/log" | grep -o '[0-9]*$'
  rm -rf "$out"
}

# private_redis DIR -> a redis-server of the benchmark's own (loopback, a free port, no
# persistence, its files in DIR); sets redis_port and redis_pid, waits until it answers. The
# caller stops it with stop_private_redis (a no-op when none was started).
private_redis() {
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$1" --save "" --appendonly no --daemonize no \
    --logfile "$1/redis.log" >/dev/null 2>&1 &
  redis_pid=$!
  wait_until 10 redis-cli -p "$redis_port" ping || { echo "redis-server did not start" >&2; return 1; }
}
stop_private_redis() { [ -z "${redis_pid:-}" ] || { kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; } || true; }

# private_redis_cluster -> a six-node Redis Cluster of the benchmark's own
# (scripts/servers/redis-cluster.sh: three masters, three replicas, loopback) in a temporary
# directory (sets work), stopped and removed on exit (an EXIT trap); sets nodes, the seeds
# (host:port,...).
private_redis_cluster() {
  work=$(mktemp -d)
  export BULWARK_SERVERS_DIR="$work" REDIS_CLUSTER_ROOT="$work/cluster"
  trap 'scripts/servers/redis-cluster.sh down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
  scripts/servers/redis-cluster.sh up >/dev/null
  nodes=$(scripts/servers/redis-cluster.sh nodes)
}

# redis_section TITLE IN_FLIGHT PIPELINE REQUESTS SET_REQUESTS REFERENCE_LABEL BULWARK_LABEL
# One section of the Redis comparisons: the caller's `redis_benchmark PIPELINE REQUESTS` ("set get"
# ops/s) against its `bulwark OP IN_FLIGHT REQUESTS` (ops/s) for GET and SET; prints the section
# and sets section_ratio (bulwark's GET+SET mix over the reference's) and section_reference (the
# reference's mix, ops/s).
redis_section() {
  local rb_set rb_get bw_get bw_set
  read -r rb_set rb_get < <(redis_benchmark "$3" "$4")
  bw_get=$(bulwark get "$2" "$4")
  bw_set=$(bulwark set "$2" "$5")
  echo "$1"
  echo "  $6  GET $rb_get ops/s   SET $rb_set ops/s   GET+SET $(mixed "$rb_get" "$rb_set") ops/s"
  echo "  $7  GET $bw_get ops/s   SET $bw_set ops/s   GET+SET $(mixed "$bw_get" "$bw_set") ops/s"
  echo "  ratio_get: $(div "$bw_get" "$rb_get")   ratio_set: $(div "$bw_set" "$rb_set")"
  section_reference=$(mixed "$rb_get" "$rb_set")
  section_ratio=$(div "$(mixed "$bw_get" "$bw_set")" "$section_reference")
}
