#!/usr/bin/env bash
# Makes sure the machine's Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) answer, starting them
# if they are stopped. Idempotent; leaves running services alone and never stops anything.
# Used by `make test`. tests/_services.py does the same from Python and, failing that, starts a private
# redis-server, so this script mostly saves each test process the start-up.
#
# Exit status: 0 when Redis answers (or the tests can start a private one) and PostgreSQL answers.
# A missing PostgreSQL is only a warning outside CI (the PostgreSQL tests then skip); with CI set it fails.
set -euo pipefail

REDIS_HOST=127.0.0.1
REDIS_PORT=${ENSURE_REDIS_PORT:-6379}  # overridable only to exercise this script
PG_HOST=127.0.0.1
PG_PORT=5432

say() { printf 'ensure-services: %s\n' "$*"; }

# Serialise concurrent `make test` runs so two of them do not both try to start a service.
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/refundwatch-ensure-services.lock"
  flock -w 60 9 || true
fi

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

redis_answers() {
  # shellcheck disable=SC2016  # $reply belongs to the inner shell
  # Plain RESP over bash's /dev/tcp, so redis-cli is not required.
  timeout 3 bash -c '
    exec 3<>/dev/tcp/'"$REDIS_HOST/$REDIS_PORT"' || exit 1
    printf "PING\r\n" >&3
    IFS= read -r reply <&3
    [[ $reply == "+PONG"* ]]' 2>/dev/null
}

pg_answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2
  else
    port_open "$PG_HOST" "$PG_PORT"
  fi
}

wait_until() { # wait_until SECONDS CHECK...
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

status=0

# --- Redis -----------------------------------------------------------------------------------------
if redis_answers; then
  say "redis $REDIS_HOST:$REDIS_PORT answers"
elif port_open "$REDIS_HOST" "$REDIS_PORT"; then
  # Something else (or a password-protected Redis) holds the port: the tests start a private one.
  say "port $REDIS_PORT is taken by something that does not answer PING; tests will start a private redis-server"
elif command -v redis-server >/dev/null 2>&1; then
  # No persistence: this Redis only carries jobs, sessions and test data. Run from /tmp so it writes nothing here.
  (cd "${TMPDIR:-/tmp}" && redis-server --daemonize yes --port "$REDIS_PORT" --bind "$REDIS_HOST" \
    --save '' --appendonly no >/dev/null)
  if wait_until 10 redis_answers; then
    say "redis $REDIS_HOST:$REDIS_PORT started"
  else
    say "redis-server did not answer on $REDIS_PORT within 10s; tests will try a private redis-server"
  fi
else
  say "no Redis on $REDIS_HOST:$REDIS_PORT and no redis-server binary: apt-get install -y redis-server"
  status=1
fi

# --- PostgreSQL ------------------------------------------------------------------------------------
pg_missing() {
  if [[ -n "${CI:-}" ]]; then
    say "ERROR: $*"
    status=1
  else
    say "warning: $* (PostgreSQL tests will be skipped)"
  fi
}

if pg_answers; then
  say "postgresql $PG_HOST:$PG_PORT answers"
elif ! command -v pg_ctlcluster >/dev/null 2>&1; then
  pg_missing "no PostgreSQL on $PG_HOST:$PG_PORT and no pg_ctlcluster: apt-get install -y postgresql"
else
  # Newest Debian cluster called "main" (e.g. /etc/postgresql/15/main).
  version=$(find /etc/postgresql -mindepth 2 -maxdepth 2 -name main -type d 2>/dev/null \
    | awk -F/ '{print $4}' | sort -V | tail -n 1)
  if [[ -z "$version" ]]; then
    pg_missing "no PostgreSQL cluster under /etc/postgresql/*/main (pg_createcluster <version> main)"
  else
    # Exit code 2 means "already running" (e.g. on another port); the wait below tells the truth.
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
    if wait_until 30 pg_answers; then
      say "postgresql $version/main started on $PG_HOST:$PG_PORT"
    else
      pg_missing "postgresql $version/main did not answer on $PG_HOST:$PG_PORT within 30s (see /var/log/postgresql/)"
    fi
  fi
fi

exit "$status"
