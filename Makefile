# The README's two commands are `go run ./cmd/autoinvite serve` and `go test ./...`;
# these targets are shortcuts for contributors.
.PHONY: test bench ci

test:
	go test ./...

# All benchmarks (docs/performance.md), about 4 minutes on 2 cores; needs redis-server.
bench:
	go run ./bench

ci:
	bash .ci/run
