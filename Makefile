# The two commands a new user needs: `make run` and `make test`. Each does all the set-up itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test lint bench system-deps venv clean agent

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "sipbridge needs Python 3.11 or newer (found: $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

run: $(STAMP)
	$(BIN)/sipbridge serve $(ARGS)

agent: $(STAMP)
	$(BIN)/sipbridge agent --listen 127.0.0.1:8080 --mode echo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench testbed
	$(BIN)/ruff format --check src tests bench testbed

# Load benchmark: N concurrent calls through the bridge, figures into bench/RESULTS.md (see bench/README.md).
bench: $(STAMP) system-deps
	$(BIN)/python -m bench $(ARGS)

# The suite runs its bridges with one media worker; these tests run a second time with two (the
# call placed on either worker, see docs/testing.md). `make test TWO_WORKERS=` skips that pass.
TWO_WORKERS ?= tests/integration/test_call_flow.py tests/integration/test_dtmf_call.py \
	tests/integration/test_agent_resume.py tests/integration/test_operations.py tests/integration/test_soak.py
test: $(STAMP) system-deps
	$(BIN)/ruff check src tests bench testbed
	$(BIN)/pytest $(ARGS)
	$(if $(strip $(TWO_WORKERS)),SIPBRIDGE_TEST_WORKERS=2 $(BIN)/pytest -ra -p no:cacheprovider $(TWO_WORKERS))

# Long fuzz run of the parsers (tests/fuzz, see README "Fuzzing"): FUZZ_EXAMPLES examples per target.
FUZZ_EXAMPLES ?= 6000
.PHONY: fuzz
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/fuzz -p no:cacheprovider -o timeout=0 --hypothesis-show-statistics $(ARGS)

# Long soak (tests/integration/test_soak.py, see README "Measured"): SOAK_CALLS calls through the
# bridge, half one after another and half in waves of SOAK_WAVE; then fds, tasks, threads, RTP ports
# and RSS must be back at their baseline. `make test` runs the same test with 100 calls.
SOAK_CALLS ?= 1000
SOAK_WAVE ?= 25
.PHONY: soak
soak: $(STAMP) system-deps
	SOAK_CALLS=$(SOAK_CALLS) SOAK_WAVE=$(SOAK_WAVE) $(BIN)/pytest tests/integration/test_soak.py -p no:cacheprovider -o timeout=0 -s $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
