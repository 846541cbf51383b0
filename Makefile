# The two commands of the README: `make run` runs the whole pipeline on the embedded
# defaults, `make test` runs the checks and tests. Both install what is missing first.

CARGO ?= cargo
# scripts/setup.sh installs a cmake new enough for LightGBM here when the system's is older.
export PATH := $(CURDIR)/.tools/venv/bin:$(PATH)

.PHONY: setup setup-browser build run test bench bench-latency bench-run

setup:
	bash scripts/setup.sh

# The tests also drive the dashboard in Debian's headless Chromium.
setup-browser:
	bash scripts/setup.sh --browser

build: setup
	$(CARGO) build --release --locked

run: build
	./target/release/placewise run

test: setup-browser
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings
	$(CARGO) test --release --locked

bench: build
	$(CARGO) bench --locked --bench generate

# Needs the Python packages of scripts/reference/requirements.txt.
bench-latency: build
	bash scripts/bench_latency_fit.sh

# placewise run beside its four stages run as separate commands.
bench-run: build
	bash scripts/bench_run.sh
