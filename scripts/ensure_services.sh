#!/usr/bin/env bash
# Make sure the Debian servers the tests start themselves are installed: PostgreSQL (the service
# database tests). Idempotent. Never fails: when it cannot install, it says why in one line and
# exits 0 (the tests then skip, except under CI=true where they fail).
set -u

have_postgres() { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }

if have_postgres; then
    echo "ensure_services: PostgreSQL already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_services: no apt-get on this system; install PostgreSQL yourself to run the database tests"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "ensure_services: not root and no password-less sudo; run 'sudo apt-get install postgresql' to enable the database tests"
    exit 0
fi
echo "ensure_services: installing Debian's postgresql package"
if $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; then
    echo "ensure_services: installed PostgreSQL"
else
    echo "ensure_services: apt-get could not install postgresql; the database tests will skip (or fail under CI=true)"
fi
exit 0
