# Frost. `make demo` builds and starts a server with a demo app; `make test`
# installs what the tests need (pinned, cached) and runs every test.
GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/frostdev/frost/internal/cli.version=$(VERSION)
DEMO_DATA ?= $(HOME)/.local/share/frost

.PHONY: demo build dist test check bench fuzz soak proto clean

build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/frost ./cmd/frost

# The systems frost is built for (make dist: dist/frost-OS-ARCH). The
# server's agent sandboxes need Linux (runsc); elsewhere it runs
# WebAssembly apps, and the CLI and the Go client (./api) work everywhere.
# cmd/frost's TestBuildsForEveryPlatform builds each of them.
PLATFORMS := linux/amd64 linux/arm64 darwin/arm64 darwin/amd64 windows/amd64

dist:
	@for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		echo "dist/frost-$$os-$$arch$$ext"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/frost-$$os-$$arch$$ext ./cmd/frost || exit 1; \
	done

$(BIN)/hello-go.wasm: $(wildcard examples/hello-go/*.go)
	GOOS=wasip1 GOARCH=wasm $(GO) build -o $@ ./examples/hello-go

demo: build $(BIN)/hello-go.wasm
	$(BIN)/frost server --data $(DEMO_DATA) --deploy hello=$(BIN)/hello-go.wasm

test:
	bash scripts/deps.sh
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -race -count=1 -timeout 30m $(RACE_PKGS)
	bash scripts/fuzz.sh $(FUZZTIME)

# Each fuzz target explores for FUZZTIME in make test (make fuzz: 60s).
FUZZTIME ?= 3s

# The packages with shared state, run again under the race detector.
RACE_PKGS := ./internal/node/ ./internal/front/ ./internal/runtime/... ./internal/api/ ./internal/guestfs/ ./internal/registry/... ./internal/blob/... ./internal/snapshot/ ./internal/sandbox/ ./internal/agent/ ./internal/e2b/ ./internal/gateway/ ./internal/hop/ ./internal/rawio/ ./internal/replica/ ./internal/flight/

check:
	test -z "$$(gofmt -l .)" || (gofmt -l .; exit 1)
	$(GO) vet ./...
	$(GO) mod tidy
	git diff --exit-code -- go.mod go.sum

bench:
	bash scripts/bench.sh

fuzz:
	bash scripts/fuzz.sh 60s

# Minutes of mixed load with freeze/thaw cycles: RSS, goroutines and open
# files must stay flat (docs/RELIABILITY.md records the last run).
SOAK ?= 3m
soak: build
	bash scripts/deps.sh >/dev/null
	bash scripts/build-guests.sh build/guests >/dev/null
	$(GO) run ./bench/soak -frost $(BIN)/frost -guests build/guests -duration $(SOAK)

# Regenerate the Go code for proto/ (envd's API) at pinned tool versions.
proto:
	bash scripts/proto.sh

clean:
	rm -rf $(BIN) dist
