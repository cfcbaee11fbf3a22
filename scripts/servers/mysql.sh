#!/usr/bin/env bash
# A throwaway MariaDB server for the mysql tests and benchmarks, under $BULWARK_SERVERS_DIR/mysql.
#   up      install a datadir, start mariadbd on a free loopback port, create the test database
#           and user, record BULWARK_MYSQL_{HOST,PORT,USER,PASSWORD,DATABASE} via export_env
#   down    SIGKILL, datadir removed (also any private instance left behind)
#   stop    clean shutdown, datadir kept          start   start again on the same datadir and port
#   kill    SIGKILL (no shutdown)                 hang / resume   SIGSTOP / SIGCONT
#   status  exits 0 when the server answers a ping
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh"
: "${BULWARK_SERVERS_DIR:=$(cd "$here/../.." && pwd)/.servers}"
export BULWARK_SERVERS_DIR
# BULWARK_MYSQL_INSTANCE=<name> runs a private server in $BULWARK_SERVERS_DIR/<name> whose
# variables go to $BULWARK_SERVERS_DIR/<name>/env instead of the shared env file (failure
# tests use one each, so stopping or killing it never disturbs the other tests).
instance=${BULWARK_MYSQL_INSTANCE:-mysql}
dir="$BULWARK_SERVERS_DIR/$instance"
# The socket lives in /tmp under a name derived from $dir: a Unix socket path is limited to
# 107 bytes, and $dir (checkout path + instance name) can be longer than that.
sock="/tmp/bulwark-mysqld.$(printf '%s' "$dir" | md5sum | cut -c1-16).sock"
pidfile="$dir/mysqld.pid"
user=bulwark
password=bulwark-test
database=bulwark_test

admin() { mariadb-admin --no-defaults --socket="$sock" -uroot "$@"; }

start_server() {
  local port; port=$(cat "$dir/port")
  local run_as=()
  [ "$(id -u)" -eq 0 ] && run_as=(--user=root)
  # setsid: its own session, so it is never in a process group that the kernel finds orphaned
  # with a stopped member (which sends SIGHUP + SIGCONT and would undo `hang`).
  setsid mariadbd --no-defaults --datadir="$dir/data" --socket="$sock" --port="$port" --bind-address=127.0.0.1 \
    --pid-file="$pidfile" --log-error="$dir/error.log" --skip-log-bin --skip-name-resolve \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=8M --max-connections=200 --max-allowed-packet=64M "${run_as[@]}" \
    >/dev/null 2>&1 &
  echo $! >"$dir/server.pid"
  # Ready = answers on its socket AND owns the TCP port (free_port can race with another
  # server starting at the same moment; the socket would answer even if the port were lost).
  if ! wait_until 30 ready "$port" "$(server_pid)"; then
    echo "mysql: server did not start, see $dir/error.log" >&2
    tail -n 20 "$dir/error.log" >&2 || true
    return 1
  fi
}

ready() { admin ping && ss -ltnpH "sport = :$1" | grep -q "pid=$2,"; }

server_pid() { cat "$dir/server.pid" 2>/dev/null; }

# all_threads_stopped PID: every thread of PID is in state T (stopped by a signal).
all_threads_stopped() {
  local stat state
  for stat in /proc/"$1"/task/*/stat; do
    state=$(sed 's/^.*) //' "$stat" | cut -d' ' -f1) || return 1
    [ "$state" = T ] || return 1
  done
}

stop_server() {
  local pid; pid=$(server_pid) || return 0
  kill -CONT "$pid" 2>/dev/null || true
  admin shutdown >/dev/null 2>&1 || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/server.pid"
}

case "${1:-}" in
  up)
    stop_server 2>/dev/null || true
    rm -rf "$dir"
    rm -f "$sock" "$sock.lock"
    mkdir -p "$dir"
    # mariadb-install-db takes 1-6 s on a busy machine: do it once into a template datadir
    # (never started, so a plain copy is consistent) and copy that for every instance.
    template="$BULWARK_SERVERS_DIR/mysql.template"
    if [ ! -f "$template/ready" ]; then
      rm -rf "$template.$$"; mkdir -p "$template.$$"
      mariadb-install-db --no-defaults --datadir="$template.$$/data" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve --innodb-log-file-size=8M \
        $([ "$(id -u)" -eq 0 ] && echo --user=root) >"$dir/install.log" 2>&1 \
        || { cat "$dir/install.log" >&2; exit 1; }
      touch "$template.$$/ready"
      mv -T "$template.$$" "$template" 2>/dev/null || rm -rf "$template.$$"
    fi
    cp -a --sparse=always "$template/data" "$dir/data"
    for attempt in 1 2 3; do
      free_port >"$dir/port"
      start_server && break
      stop_server
      [ "$attempt" -lt 3 ] || exit 1
    done
    mariadb --no-defaults --socket="$sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS $database;
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$password';
CREATE USER IF NOT EXISTS '$user'@'localhost' IDENTIFIED BY '$password';
GRANT ALL ON $database.* TO '$user'@'127.0.0.1';
GRANT ALL ON $database.* TO '$user'@'localhost';
SQL
    if [ "$instance" != mysql ]; then
      export_env() { echo "export $1=$(printf '%q' "$2")" >>"$dir/env"; }
    fi
    export_env BULWARK_MYSQL_HOST 127.0.0.1
    export_env BULWARK_MYSQL_PORT "$(cat "$dir/port")"
    export_env BULWARK_MYSQL_USER "$user"
    export_env BULWARK_MYSQL_PASSWORD "$password"
    export_env BULWARK_MYSQL_DATABASE "$database"
    export_env BULWARK_MYSQL_SCRIPT "$here/mysql.sh"
    echo "mysql ($instance): up on 127.0.0.1:$(cat "$dir/port")" ;;
  down)
    # The datadir is thrown away: no clean shutdown needed.
    if pid=$(server_pid); then kill -9 "$pid" 2>/dev/null || true; while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done; fi
    rm -rf "$dir"
    rm -f "$sock" "$sock.lock"
    [ "$instance" = mysql ] && rm -rf "$BULWARK_SERVERS_DIR/mysql.template"
    # Private instances a crashed failure test left behind.
    if [ "$instance" = mysql ]; then
      for other in "$BULWARK_SERVERS_DIR"/mysql-*/; do
        [ -d "$other" ] && BULWARK_MYSQL_INSTANCE=$(basename "$other") "$0" down
      done
    fi ;;
  stop) stop_server ;;
  start) start_server ;;
  kill) pid=$(server_pid) && { kill -9 "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done; rm -f "$dir/server.pid"; } ;;
  hang)
    # SIGSTOP takes effect asynchronously (each thread stops when the kernel next schedules
    # it): return only once every thread of the server is stopped.
    pid=$(server_pid)
    kill -STOP "$pid"
    wait_until 10 all_threads_stopped "$pid" ;;
  resume) kill -CONT "$(server_pid)" ;;
  status) admin ping >/dev/null 2>&1 ;;
  *) echo "usage: mysql.sh up|down|stop|start|kill|hang|resume|status" >&2; exit 2 ;;
esac
