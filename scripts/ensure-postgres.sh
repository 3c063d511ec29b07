#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries (initdb, postgres) are on this
# machine, for the private servers that tests and `make run` start
# (storage/pgtest). Installs them with apt when missing and running as root.
# Idempotent and quick when they are already there. Never starts a server.
set -euo pipefail

if [ -n "${PGTEST_DATABASE_URL:-}${DATABASE_URL:-}" ]; then
  echo "ensure-postgres: DATABASE_URL is set; tests use that server"
  exit 0
fi

have() {
  if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/initdb" ] && [ -x "$PG_BINDIR/postgres" ]; then return 0; fi
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then return 0; fi
  done
  command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1
}

if have; then
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "ensure-postgres: PostgreSQL server binaries are missing and this is not root:" >&2
  echo "  install them (Debian/Ubuntu: apt-get install postgresql), set PG_BINDIR, or set DATABASE_URL" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-postgres: no apt-get here; install PostgreSQL (>= 15) server binaries, or set PG_BINDIR" >&2
  exit 1
fi

echo "ensure-postgres: installing PostgreSQL server binaries with apt"
# The distribution's own cluster is not wanted (tests start private ones):
# tell postgresql-common not to create and start it.
mkdir -p /etc/postgresql-common
if [ ! -f /etc/postgresql-common/createcluster.conf ]; then
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold postgresql >/dev/null

if ! have; then
  echo "ensure-postgres: apt installed postgresql but no initdb was found" >&2
  exit 1
fi
# The private server runs as "postgres" when tests run as root.
if ! id postgres >/dev/null 2>&1; then
  echo "ensure-postgres: warning: no 'postgres' user; the server will run as 'nobody'" >&2
fi
echo "ensure-postgres: ok ($(ls -d /usr/lib/postgresql/*/bin | tail -1))"
