# The two commands a newcomer needs: `make demo` (install, train a small model end to end,
# translate with it) and `make test`. Everything runs inside .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test train-transformer train-rnn evaluate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The pipeline end to end in seconds (a tiny model on 2,000 pairs: tokenizer, training,
# checkpoint, curves, BLEU), then a real translation by the trained Transformer.
demo: install
	$(BIN)/python -m training train --config configs/tiny.yaml --out runs/demo
	$(BIN)/python -m training evaluate --checkpoint runs/demo/best.pt --split test2016
	$(BIN)/python -m training translate --checkpoint checkpoints/transformer-en-de/model.pt --beam-size 4 "A man is riding a bike." "Two dogs are playing in the snow."

test: install
	$(BIN)/python -m pytest -q

# The full models of docs/RESULTS.md (about an hour each on 2 CPU cores, minutes on a GPU).
train-transformer: install
	$(BIN)/python -m training train --config configs/transformer.yaml --out runs/transformer

train-rnn: install
	$(BIN)/python -m training train --config configs/rnn.yaml --out runs/rnn

clean:
	rm -rf runs/demo .pytest_cache
