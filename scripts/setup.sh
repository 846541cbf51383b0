#!/usr/bin/env bash
# Installs what building and testing placewise needs, and only what is missing: a C
# compiler for the bundled SQLite, and the sqlite3 client that the tests use as the
# reference reader of the databases. Run as root on Debian; it calls apt-get only when a
# tool is absent, so a prepared machine makes no network request.
set -euo pipefail

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v make >/dev/null 2>&1 || missing+=(make)

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: run as root, or install these Debian packages: ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is missing; install Rust (1.89 or newer) first" >&2
    exit 1
fi
