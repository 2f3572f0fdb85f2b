#!/usr/bin/env bash
# Make sure a Debian package the tests need is installed:  ensure_debian.sh PACKAGE CHECK [WHAT]
#   PACKAGE  the apt package (chromium, postgresql, …)
#   CHECK    a shell test that is true once it is installed (e.g. "[ -x /usr/bin/chromium ]")
#   WHAT     which tests need it, for the messages
# Idempotent. Never fails: when it cannot install, it says why in one line and exits 0 (the tests
# then skip, except under CI=true where they fail).
set -u
PACKAGE=$1
CHECK=$2
WHAT=${3:-the tests that need it}

if eval "$CHECK"; then
    echo "ensure_debian: $PACKAGE already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_debian: no apt-get on this system; install $PACKAGE yourself to run $WHAT"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "ensure_debian: not root and no password-less sudo; run 'sudo apt-get install $PACKAGE' to enable $WHAT"
    exit 0
fi
echo "ensure_debian: installing Debian's $PACKAGE package"
if $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$PACKAGE" >/dev/null \
        && eval "$CHECK"; then
    echo "ensure_debian: installed $PACKAGE"
else
    echo "ensure_debian: apt-get could not install $PACKAGE; $WHAT will skip (or fail under CI=true)"
fi
exit 0
