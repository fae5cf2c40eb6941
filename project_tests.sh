#!/usr/bin/env bash
# The test command: installs what the tests need, starts the services, runs everything.
#   ./project_tests.sh                 # lint, types + every test, in two phases (below)
#   ./project_tests.sh --fast          # lint, types + the fast tier (pytest -m fast): no service, under a minute
#   ./project_tests.sh tests/unit -x   # arguments go to pytest (to both phases)
#
# Phase 1 runs every test but the exclusive ones (tests/faults, which restart PostgreSQL
# and RabbitMQ) on FLOW_TEST_WORKERS pytest-xdist workers (4), each test file on one
# worker (--dist loadfile), the heaviest files first (tests/weights.json, kept in the
# collection's order by --no-loadscope-reorder); phase 2 runs the exclusive ones alone,
# one at a time. Tiers (markers fast, services, exclusive) are given in tests/conftest.py.
# Arguments with their own -m run once, as given.
set -euo pipefail
cd "$(dirname "$0")"

FAST=0
if [ "${1:-}" = "--fast" ]; then
  FAST=1
  shift
fi

VENV=${FLOW_VENV:-.venv}
PYTHON=${PYTHON:-python3}

log() { printf '\033[1m== %s\033[0m\n' "$*"; }

# -- Python environment: a venv with the project and its test extras, from setup.py.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
log "installing the project with its test extras"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e '.[test]'

# -- Services: PostgreSQL and RabbitMQ, started when they are installed but down.
apt_install() {
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing $*"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}

port_open() { "$VENV/bin/python" - "$1" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

wait_port() {  # wait_port PORT NAME SECONDS
  for _ in $(seq 1 "$3"); do port_open "$1" && return 0; sleep 1; done
  echo "warning: $2 is still not listening on port $1" >&2
  return 1
}

ensure_postgres() {
  port_open 5432 && return 0
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    log "starting PostgreSQL"
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_port 5432 PostgreSQL 30 || true
  fi
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  if command -v rabbitmq-server >/dev/null 2>&1; then
    log "starting RabbitMQ"
    rabbitmq-server -detached || true
    wait_port 5672 RabbitMQ 60 || true
  fi
}

if [ "$FAST" = 1 ]; then
  log "ruff"
  "$VENV/bin/ruff" check .
  "$VENV/bin/ruff" format --check .
  log "mypy"
  "$VENV/bin/mypy"
  log "pytest: the fast tier"
  # The tier lives in tests/unit: collect only that folder (importing the other folders'
  # modules cost half the tier's time) unless the arguments name their own paths.
  paths=(tests/unit)
  for arg in "$@"; do
    if [ -e "${arg%%::*}" ]; then paths=(); break; fi
  done
  exec "$VENV/bin/python" -m pytest -m fast "${paths[@]}" "$@"
fi

ensure_postgres
ensure_rabbitmq

# docker-compose (v1, from Debian) validates docker-compose.yml without a Docker engine;
# Debian's Chromium runs the web page's tests (Playwright's own browser download cannot work here).
missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}" || true

# -- Lint, then the tests. Service tests fail (not skip) when CI is set and a service is down.
log "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .

log "mypy"
"$VENV/bin/mypy"

for arg in "$@"; do
  case "$arg" in
    -m | -m*) log "pytest"; exec "$VENV/bin/python" -m pytest "$@" ;;
  esac
done

log "pytest, phase 1: everything but the exclusive tests, on ${FLOW_TEST_WORKERS:-4} workers"
status=0
"$VENV/bin/python" -m pytest -m "not exclusive" -n "${FLOW_TEST_WORKERS:-4}" --dist loadfile --no-loadscope-reorder "$@" || status=$?
[ "$status" = 5 ] && status=0  # no test selected by the arguments in this phase
log "pytest, phase 2: the exclusive tests (they restart the services), alone"
exclusive=0
"$VENV/bin/python" -m pytest -m exclusive "$@" || exclusive=$?
[ "$exclusive" = 5 ] && exclusive=0
[ "$status" != 0 ] && exit "$status"
exit "$exclusive"
