# The two commands a newcomer needs: `make demo` (install, serve the default models over gRPC,
# translate with the client) and `make test`. Everything runs inside .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo serve proto bench bench-gpu test train-tiny train-transformer train-rnn evaluate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The main job: serve the default models (models/) over gRPC, translate with the client, stop.
DEMO_PORT ?= 50051
demo: install
	@$(BIN)/python -m server --port $(DEMO_PORT) --metrics-port 0 --http-port 0 & server=$$!; \
	trap "kill $$server 2>/dev/null" EXIT; \
	$(BIN)/python -m server.client --target localhost:$(DEMO_PORT) --wait 120 --list-models && \
	$(BIN)/python -m server.client --target localhost:$(DEMO_PORT) "A man is riding a bike." "Two dogs are playing in the snow." && \
	$(BIN)/python -m server.client --target localhost:$(DEMO_PORT) --model rnn-en-de --beam-size 4 --n-best 2 "A little girl is climbing the stairs."

# The server in the foreground (Ctrl-C drains and stops it); every flag: .venv/bin/python -m server --help
serve: install
	$(BIN)/python -m server

# Regenerate nmt/v1/ from protos/ (committed; tests/server checks it is current).
proto: install
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. protos/nmt/v1/translator.proto

# Every engine on the same weights (minutes): docs/BENCHMARKS.md and plots.
bench: install
	$(BIN)/python -m bench

# The same on a GPU (a CUDA build of onnxruntime): both models exported with fp16 graphs into
# models-gpu/ (every variant's greedy output held to the CPU's fp32 on the GPU, the step loop and
# the fixed-shape step that CUDA graphs replay), then docs/BENCHMARKS-GPU.md and its plot.
# bench/gpu_session.sh runs the same, with the CUDA tests and bench.host_time.
bench-gpu: install
	for model in transformer-en-de rnn-en-de; do \
		$(BIN)/python -m export --checkpoint checkpoints/$$model/model.pt --name $$model --version 2 --variants fp32 fp16 --out models-gpu --overwrite --decoding-split none || exit 1; \
	done
	$(BIN)/python -m bench.gpu --repository models-gpu

test: install
	$(BIN)/python -m pytest -q

# The training pipeline end to end in seconds: a tiny model on 2,000 pairs (tokenizer, training,
# checkpoint, curves, BLEU).
train-tiny: install
	$(BIN)/python -m training train --config configs/tiny.yaml --out runs/demo
	$(BIN)/python -m training evaluate --checkpoint runs/demo/best.pt --split test2016

# The default models of docs/RESULTS.md (about two hours each on one CPU core, minutes on a GPU).
train-transformer: install
	$(BIN)/python -m training train --config configs/transformer-small.yaml --out runs/transformer

train-rnn: install
	$(BIN)/python -m training train --config configs/rnn-small.yaml --out runs/rnn

clean:
	rm -rf runs/demo .pytest_cache
