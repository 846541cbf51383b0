# The two commands of the README: `make run` runs the whole pipeline on the embedded
# defaults, `make test` runs the checks and tests. Both install what is missing first.

CARGO ?= cargo

.PHONY: setup build run test bench

setup:
	bash scripts/setup.sh

build: setup
	$(CARGO) build --release --locked

run: build
	./target/release/placewise run

test: setup
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings
	$(CARGO) test --release --locked

bench: build
	$(CARGO) bench --locked --bench generate
