# Legiond build. Every tool is pinned and installed into .tools/bin by this
# Makefile itself, so a fresh machine needs only Go and make.

SHELL := /bin/bash
GO ?= go
TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)

BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1
GOLANGCI_LINT_VERSION := v2.15.0

FUZZTIME ?= 10s
DEV_DIR ?= $(CURDIR)/.dev

.DEFAULT_GOAL := help

.PHONY: help
help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: run
run: ## the whole system on one machine with a simulated Clip'R fleet
	bash scripts/ensure-postgres.sh
	$(GO) build -o $(TOOLS)/legiond ./cmd/legiond
	$(TOOLS)/legiond dev --data-dir $(DEV_DIR)

.PHONY: test
test: ## the whole test suite (starts its own PostgreSQL and Kafka)
	bash scripts/ensure-postgres.sh
	$(GO) test -count=1 ./...

.PHONY: fuzz
fuzz: ## run every fuzz target briefly (FUZZTIME=10s)
	bash scripts/fuzz.sh $(FUZZTIME)

.PHONY: bench
bench: ## hot-path benchmarks (figures go to docs/benchmarks.md)
	$(GO) test -run='^$$' -bench=. -benchmem ./devicetwin/... ./loadtest/... ./storage/pebblestore/ ./streams/... ./actors/

LOADTEST_OUT ?= $(CURDIR)/loadtest-out
# LOADTEST_BROKER_FLAGS=--no-sync runs the development broker with Kafka's
# default flush policy (no fsync per write) instead of fsyncing every write.
LOADTEST_BROKER_FLAGS ?=
.PHONY: loadtest
loadtest: ## full capacity runs against a local broker + node (reports in loadtest-out/)
	$(GO) build -o $(TOOLS)/legiond ./cmd/legiond
	rm -rf $(LOADTEST_OUT)/data && mkdir -p $(LOADTEST_OUT)
	$(TOOLS)/legiond broker --data-dir $(LOADTEST_OUT)/data/kafka --addr 127.0.0.1:19092 $(LOADTEST_BROKER_FLAGS) & B=$$!; \
	$(TOOLS)/legiond run --data-dir $(LOADTEST_OUT)/data/node --kafka-brokers 127.0.0.1:19092 --metrics-addr 127.0.0.1:19464 --api-addr 127.0.0.1:19443 --log-level warn & N=$$!; \
	trap 'kill $$N; sleep 2; kill $$B' EXIT; \
	until curl -sf 127.0.0.1:19464/healthz >/dev/null && [ -f $(LOADTEST_OUT)/data/node/auth/dev-issuer-es256-key.pem ]; do sleep 1; done; \
	T=$$($(TOOLS)/legiond token issue --role platform_admin --ttl 2h --data-dir $(LOADTEST_OUT)/data/node --issuer https://127.0.0.1:19443); \
	C="--kafka-brokers 127.0.0.1:19092 --node-data-dir $(LOADTEST_OUT)/data/node --metrics 127.0.0.1:19464 --pids $$N,$$B --quiet \
	   --api https://127.0.0.1:19443 --ca $(LOADTEST_OUT)/data/node/tls/ca.pem --token $$T"; \
	$(TOOLS)/legiond loadtest $$C --scenario steady --sensors 5000 --rate 5000 --duration 30s --out $(LOADTEST_OUT)/steady-5000 && \
	$(TOOLS)/legiond loadtest $$C --scenario steady --sensors 100000 --rate 9000 --duration 30s --out $(LOADTEST_OUT)/thingsboard-100k && \
	$(TOOLS)/legiond loadtest $$C --scenario gateway-backlog --sensors 10000 --backlog 6h --out $(LOADTEST_OUT)/backlog-10k && \
	$(TOOLS)/legiond loadtest $$C --scenario morning-flush-storm --sensors 10000 --speed 120 --duration 30s --out $(LOADTEST_OUT)/flush-storm && \
	$(TOOLS)/legiond loadtest $$C --scenario alarm-storm --sensors 10000 --speed 240 --duration 40s --alarm-sites 2 --out $(LOADTEST_OUT)/alarm-storm && \
	$(TOOLS)/legiond loadtest $$C --scenario ramp --sensors 10000 --ramp-start 5000 --ramp-step 15s --duration 3m --out $(LOADTEST_OUT)/ramp && \
	$(TOOLS)/legiond loadtest $$C --scenario ramp --sensors 10000 --ramp-start 10000 --ramp-step 15s --ramp-max-p99 30s --duration 3m --out $(LOADTEST_OUT)/ramp-throughput

.PHONY: lint
lint: $(TOOLS)/golangci-lint $(TOOLS)/buf ## gofmt, go vet, golangci-lint, buf lint
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS)/golangci-lint run ./...
	cd proto && $(TOOLS)/buf lint

.PHONY: proto
proto: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-connect-go ## regenerate Go and Connect code
	cd proto && $(TOOLS)/buf generate

.PHONY: proto-check
proto-check: proto ## fail when regeneration changes any committed file
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
	  echo "generated code is stale; run make proto and commit:"; git status --porcelain -- proto; exit 1; fi

.PHONY: tools
tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-connect-go $(TOOLS)/golangci-lint ## install pinned tools

$(TOOLS)/buf:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-connect-go:
	GOBIN=$(TOOLS) $(GO) install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_GO_VERSION)
$(TOOLS)/golangci-lint:
	GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: clean
clean: ## remove build outputs and the development data folder
	rm -rf $(DEV_DIR) $(TOOLS)/legiond
