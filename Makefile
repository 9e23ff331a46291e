# lastmile — `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
GOBIN := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

# Pinned code generators and linters, installed by `make tools`.
BUF_VERSION           := v1.75.0
PROTOC_GEN_GO         := v1.36.12
PROTOC_GEN_GO_GRPC    := v1.6.2
GRPC_GATEWAY_VERSION  := v2.33.0
GOLANGCI_LINT_VERSION := v2.15.0

# Tests run with the race detector; CI=true makes missing dependencies fatal.
TEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build lastmile and lmctl into ./bin.
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: run
run: ## Run the platform on the embedded store in ./data.
	$(GO) run ./cmd/lastmile serve --data-dir ./data

.PHONY: test-deps
test-deps: ## Install what the tests need (redis-server, mosquitto clients, snmpd).
	@scripts/test-deps.sh

.PHONY: test
test: test-deps ## Run every test with the race detector (real redis-server, mosquitto clients).
	$(GO) test $(TEST_FLAGS) ./...
	# What the race detector hides: goroutine stack sizes and allocations.
	$(GO) test -count=1 -run 'TestIdleConnectionsHoldNoGoroutineStack|TestServerExpirySweepsAllocateNothingForIdleClients' ./broker ./third_party/mochi

BENCH_FLAGS ?= -runs 3
.PHONY: bench
bench: ## Load harness: lastmile vs mosquitto and bare mochi, alternating, medians (docs/performance.md).
	$(GO) build -o $(BIN)/ ./cmd/lastmile ./cmd/lmbench
	$(BIN)/lmbench suite -lastmile-bin $(BIN)/lastmile -json $(BIN)/bench.json $(BENCH_FLAGS)

FUZZTIME ?= 20s
.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 20s).
	@set -e; for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h '^func Fuzz' $$t/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "fuzz $$t $$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$t; \
		done; done

.PHONY: tools
tools: ## Install the pinned code generators and linter into $(GOBIN).
	@command -v buf >/dev/null && buf --version | grep -q $(BUF_VERSION:v%=%) || $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@command -v protoc-gen-go >/dev/null || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO)
	@command -v protoc-gen-go-grpc >/dev/null || $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC)
	@command -v protoc-gen-grpc-gateway >/dev/null || $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)
	@command -v protoc-gen-openapiv2 >/dev/null || $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
	@command -v golangci-lint >/dev/null || $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: generate
generate: tools ## Regenerate protobuf Go code and OpenAPI (offline).
	buf generate

.PHONY: lint
lint: tools ## buf lint, go vet, golangci-lint.
	buf lint
	$(GO) vet ./...
	golangci-lint run ./...

.PHONY: check
check: generate lint ## Fail on generated-code drift, lint or vet findings, untidy go.mod.
	$(GO) mod tidy -diff
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
		echo "generated code is out of date; run 'make generate' and commit:"; git status --porcelain -- proto; exit 1; fi
	@if [ -n "$$(gofmt -l $$(git ls-files '*.go'))" ]; then echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; fi

.PHONY: clean
clean: ## Remove build output.
	rm -rf $(BIN)
