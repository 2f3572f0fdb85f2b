#!/usr/bin/env bash
# Make sure Debian's Chromium is installed at /usr/bin/chromium for the browser tests.
# Idempotent. Never fails: when it cannot install, it says why in one line and exits 0
# (the browser tests then skip, except under CI=true where they fail).
set -u
CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    echo "ensure_chromium: $CHROMIUM already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: no apt-get on this system; install Chromium at $CHROMIUM yourself to run the browser tests"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "ensure_chromium: not root and no password-less sudo; run 'sudo apt-get install chromium' to enable the browser tests"
    exit 0
fi

echo "ensure_chromium: installing Debian's chromium package"
if $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
    echo "ensure_chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
else
    echo "ensure_chromium: apt-get could not install chromium; the browser tests will skip (or fail under CI=true)"
fi
exit 0
