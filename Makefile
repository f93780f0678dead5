# sagabridge: the two commands a new machine needs are `make demo` and `make test`.
GO       ?= go
BIN      := $(CURDIR)/bin
TEMPORAL := $(BIN)/temporal
# v1.5.1 is the newest Temporal CLI that `go install` builds (later tags use replace directives).
TEMPORAL_VERSION := v1.5.1
# The stamp names the version installed: bumping TEMPORAL_VERSION, or a
# bin/temporal of another version, installs it again.
TEMPORAL_STAMP := $(BIN)/.temporal-$(TEMPORAL_VERSION)

.PHONY: tools kcat build demo dev test bench membench vet fmt-check clean FORCE
FORCE:

## tools: install the Temporal CLI into ./bin (once; about 6 minutes on a cold cache) and kcat
tools: $(TEMPORAL_STAMP) kcat

## kcat: the independent Kafka client (librdkafka) the eos tests read with; a Debian package
kcat:
	@command -v kcat >/dev/null 2>&1 || { \
	  echo "installing kcat (Debian package) for the exactly-once tests"; \
	  sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq kcat >/dev/null; }
	@kcat -V >/dev/null && kcat -V | head -n 1

# Installed into a directory beside it, then renamed over it: a second make
# never runs a half-written binary. The version check runs every time (it
# is cheap), so a bin/temporal deleted or replaced after the stamp was
# written is installed again.
$(TEMPORAL_STAMP): FORCE
	@mkdir -p $(BIN)
	@if $(GO) version -m $(TEMPORAL) 2>/dev/null | grep -q 'mod[[:space:]]*github.com/temporalio/cli[[:space:]]*$(TEMPORAL_VERSION)[[:space:]]'; then \
	  echo "$(TEMPORAL) is the Temporal CLI $(TEMPORAL_VERSION)"; \
	else \
	  tmp=$$(mktemp -d $(BIN)/.install.XXXXXX) && \
	  echo "installing the Temporal CLI $(TEMPORAL_VERSION) into $(BIN)" && \
	  GOBIN=$$tmp $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_VERSION) && \
	  mv $$tmp/temporal $(TEMPORAL) && rmdir $$tmp || { rm -rf $$tmp; exit 1; }; \
	fi
	@rm -f $(BIN)/.temporal-v*
	@touch $@

## build: build bridge, worker and devstack into ./bin
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## demo: run the order saga end to end on the embedded stack (ARGS=-keep keeps it up)
demo: $(TEMPORAL_STAMP) build
	$(GO) run ./examples/saga/demo $(ARGS)

## dev: start Kafka and Temporal for local development until Ctrl-C
dev: $(TEMPORAL_STAMP) build
	$(BIN)/devstack -ui

## test: vet, format check, and every test with the race detector on the real stack.
## The caller's SAGABRIDGE_* and TEMPORAL_* variables are left out (but for
## SAGABRIDGE_SEED and SAGABRIDGE_TEMPORAL, which steer the tests): they would
## configure the tests' bridges and CLI calls, or make the doc checks rewrite.
test: tools vet fmt-check
	@for v in $$(env | sed -n 's/^\(SAGABRIDGE_[A-Za-z0-9_]*\|TEMPORAL_[A-Za-z0-9_]*\)=.*/\1/p' | grep -vx 'SAGABRIDGE_SEED\|SAGABRIDGE_TEMPORAL'); do \
	  echo "make test: ignoring $$v from the environment"; unset $$v; done; \
	$(GO) test -race -count=1 -timeout 25m ./...

## bench: naive vs engine vs Temporal's ceiling, then steady-stream latency (warm entities, new sagas; engine vs fixed windows), 3 alternating rounds, a fresh server per run (about 2 h 40 min here: 16 minutes of throughput, 72 minutes per shape)
bench: tools
	$(GO) run ./cmd/benchmark $(ARGS)

## membench: the bridge's RSS and lag with 1,000,000 records of 1 KB and Temporal down for 60 s (about 4 minutes)
membench: tools
	$(GO) run ./cmd/membench $(ARGS)

# vet: also for macOS, which builds the embedded stack without Linux's Pdeathsig.
vet:
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')) || { echo "gofmt failed: $$out"; exit 1; }; \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

clean:
	rm -rf $(BIN) .demo
