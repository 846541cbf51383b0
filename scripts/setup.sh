#!/usr/bin/env bash
# Installs what building and testing placewise needs, and only what is missing:
#   - a C and C++ compiler, for the bundled SQLite and for LightGBM and HiGHS, which the
#     build compiles from source;
#   - libclang, which generates LightGBM's Rust bindings;
#   - cmake 3.28 or newer, which LightGBM's build requires. Debian's cmake is older, so a
#     newer one comes from PyPI into .tools/venv, which the Makefile puts first on PATH;
#   - the sqlite3 client, the reference reader of the databases in the tests;
#   - with --browser, Debian's chromium and chromium-driver, which the dashboard's browser
#     test drives (CI passes it; without them that test is skipped outside CI).
# Run as root on Debian. It calls apt-get and pip only when something is absent, so a
# prepared machine makes no network request.
set -euo pipefail
cd "$(dirname "$0")/.."

tools="$PWD/.tools/venv"
export PATH="$tools/bin:$PATH"

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is missing; install Rust (1.89 or newer) first" >&2
    exit 1
fi

browser=0
if [ "${1:-}" = "--browser" ]; then
    browser=1
fi

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v make >/dev/null 2>&1 || missing+=(make)
if [ $browser -eq 1 ]; then
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fi
# bindgen loads libclang.so or libclang-N.so; libclang-cpp.so, which other packages bring,
# is a different library and does not count. One match in any of these places is enough.
libclang=0
for pattern in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
    /usr/lib/*-linux-gnu/libclang.so* /usr/lib/*-linux-gnu/libclang-[0-9]*.so*; do
    if compgen -G "$pattern" >/dev/null; then
        libclang=1
    fi
done
[ $libclang -eq 1 ] || missing+=(libclang-dev)

# Returns success when `cmake` on PATH is 3.28 or newer.
cmake_is_new_enough() {
    local version
    version=$(cmake --version 2>/dev/null | sed -n 's/^cmake version \([0-9]*\.[0-9]*\).*/\1/p')
    [ -n "$version" ] || return 1
    local major=${version%%.*} minor=${version#*.}
    [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 28 ]; }
}
need_cmake=0
cmake_is_new_enough || need_cmake=1
# Debian ships the venv module without ensurepip, which `python3 -m venv` needs; the
# python3-venv package brings it.
if [ $need_cmake -eq 1 ] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi

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

if [ $need_cmake -eq 1 ]; then
    echo "setup: installing cmake 3.28 or newer from PyPI into .tools/venv" >&2
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet "cmake>=3.28,<5"
    cmake_is_new_enough || { echo "setup: cmake is still older than 3.28" >&2; exit 1; }
fi

