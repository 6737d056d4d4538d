"""The benchmark command runs end to end on a handful of sentences (it measures nothing here:
speed is never asserted in a test, only that every engine produced the same translations)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.engines import MODEL_DEFAULT, Layout, ServerProcess, free_port
from nmt_spec.manifest import latest_version

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_smoke_run_writes_its_table_and_plots() -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--threads", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    written = Path(re.search(r"wrote (\S+BENCHMARKS\.md)", result.stderr).group(1))
    report = written.read_text()
    for engine in ("pytorch", "ctranslate2", "onnx", "server"):
        assert f"| {engine} |" in report
    assert (written.parent / "bench-transformer-en-de.png").stat().st_size > 10_000
    assert "fraction of peak" in report
    # the host's time per decoder step, today's loop against the fixed-shape form, same outputs
    assert re.search(r"\| step loop \| \d+ \| \d+\.\d us \| .* \| 100\.0% \|", report) and re.search(r"\| fixed \| \d+ \| \d+\.\d us \| .* \| 100\.0% \|", report)
    assert re.search(r"Host time per step, step loop / fixed-shape form: \d+\.\dx", report)
    # both thread layouts: one batch on both threads, and two batches at once (two workers)
    for layout in ("1x2", "2x1"):
        assert f"| server | transformer-en-de | dynamic | {layout} |" in report
        assert f"| ctranslate2 | transformer-en-de | float32 | {layout} |" in report
    # clients sending several sentences per request get each sentence's own translation back
    assert "| server | transformer-en-de | dynamic, 2 sentences per request | 2x1 | 2 x 2 sentences |" in report
    assert re.search(r"\| transformer-en-de \| server at its best: 2 sentences per request / one \| \d+\.\d+x \|", report)
    # the server's CPU per request besides its decode workers (gRPC, protobuf, tokenization), read
    # from /proc where the decode workers are single threads (2x1)
    one_thread = [line for line in report.splitlines() if line.startswith("| server |") and "| 2x1 |" in line]
    assert one_thread and all(re.search(r"of a core \| \d+\.\d\d ms \|", line) for line in one_thread), one_thread
    # CTranslate2 runs our converted weights: greedy float32 gives our fp32 translations
    ctranslate2_row = next(line for line in report.splitlines() if line.startswith("| ctranslate2 | transformer-en-de | float32"))
    assert ctranslate2_row.rstrip().endswith("| 100.0% |")
    rows = report.splitlines()
    for line in rows:
        if (line.startswith(("| server |", "| pytorch |")) or "| onnx | transformer-en-de | fp32" in line) and MODEL_DEFAULT not in line and "int8" not in line:
            assert line.rstrip().endswith("| 100.0% |"), line
    # the int8 server answers as int8 in-process (batch-invariant: its batches are not the same):
    # the same share of fp32's translations
    same_as_fp32 = {line.split("|")[3].strip(): line.rstrip().rsplit("|", 2)[1] for line in rows if line.startswith(("| server | transformer-en-de | dynamic, int8 |", "| onnx | transformer-en-de | int8 |"))}
    assert same_as_fp32["dynamic, int8"] == same_as_fp32["int8"], same_as_fp32
    # throughput at the model's default decoding too, and int8 against CTranslate2's int8
    for variant in ("fp32", "int8"):
        assert f"| onnx | transformer-en-de | {variant}, {MODEL_DEFAULT} (beam " in report
    for layout in ("1x2", "2x1"):  # where CTranslate2 int8 is at its best too
        assert re.search(rf"\| transformer-en-de \| ONNX in-process int8 / CTranslate2 int8, both {layout} .*\| \d+\.\d+x \|", report)


def test_the_invariance_check_counts_changed_translations_per_variant() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.invariance", "--sentences", "3", "--trials", "1", "--models", "rnn-en-de"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^\| rnn-en-de \| \d+ \| (fp32|int8) \| (True|False) \| (\d+) of 3 \|$", result.stdout, re.MULTILINE)
    assert [row[0] for row in rows] == ["fp32", "int8"]
    assert all(int(changed) == 0 for variant, invariant, changed in rows if invariant == "True")


def test_profile_reports_operators_and_the_server_threads() -> None:
    command = [sys.executable, "-m", "bench.profile", "--sentences", "40", "--clients", "8", "--layout", "2x1"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.stdout
    assert re.search(r"\| decoder step \| MatMul \| \d+\.\d+ \|", report) and "| encoder | MultiHeadAttention |" in report
    # the two decode workers carry their own names, and the event loop is told apart from them
    for thread in ("nmt-decode-0", "nmt-decode-1", "main thread (asyncio event loop"):
        assert f"| {thread}" in report, report
    # The FLOPs read off the kernels' shapes are the model's arithmetic plus padding, not a
    # multiple of it, and CTranslate2 was timed for the budget.
    model = float(re.search(r"\| the model's arithmetic for these translations .*?\| (\d+\.\d+) GFLOP \|", report).group(1))
    kernels = float(re.search(r"\| matrix products \(MatMul, Gemm\) .*?\| (\d+\.\d+) GFLOP \|", report).group(1))
    assert 0.9 * model <= kernels <= 1.6 * model, (model, kernels)
    assert re.search(r"\| CTranslate2 float32 translate_batch, 2x1, .*\| \d+\.\d+ core-seconds \|", report), report


def test_gpu_benchmark_runs_its_measurements_on_the_cpu() -> None:
    """The GPU benchmark's code path (batch sizes, PyTorch, the server with --device) without a
    GPU, the fixed-shape step (the GPU form) in-process and in the server included: every engine
    gives the reference's translations."""
    result = subprocess.run([sys.executable, "-m", "bench.gpu", "--device", "cpu", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    written = Path(re.search(r"wrote (\S+BENCHMARKS-GPU\.md)", result.stderr).group(1))
    report = written.read_text()
    for row in (
        "| onnx | transformer-en-de | fp32 | CPU, batches of 4 |",
        "| onnx | transformer-en-de | fp32, fixed-shape step | CPU, batches of 4 |",
        "| onnx | transformer-en-de | fp32, fixed-shape step, in arrival order | CPU, batches of 4 |",
        "| pytorch | transformer-en-de | fp32 eager | CPU, batches of 4 |",
        "| server | transformer-en-de | inflight |",
        "| server | transformer-en-de | dynamic, 2 sentences per request |",
    ):
        assert row in report
    rows = [line for line in report.splitlines() if line.startswith(("| onnx |", "| pytorch |", "| server |"))]
    assert len(rows) == 13 and all(line.rstrip().endswith("| 100.0% |") for line in rows), rows
    assert "| transformer-en-de | ONNX fp32, batches of 4: fixed-shape step / step loop |" in report
    assert (written.parent / "bench-gpu.png").stat().st_size > 10_000


def test_the_gpu_benchmark_refuses_variants_the_repository_lacks_before_measuring() -> None:
    """The shipped repository has no fp16 graphs: asking for them is refused at once, by name."""
    result = subprocess.run([sys.executable, "-m", "bench.gpu", "--device", "cpu", "--variants", "fp32", "--server-variants", "fp16"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "lacks transformer-en-de" in result.stderr and "fp16" in result.stderr


def test_a_benchmark_server_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    """A server that cannot start (here: no such model) fails the benchmark at once with the
    server's own words, instead of a wait for it to serve."""
    log = tmp_path / "server.log"
    server = ServerProcess("no-such-model", "dynamic", Layout(1, 1), free_port(), log, [])
    with pytest.raises(RuntimeError, match="exited with status") as raised:
        server.__enter__()
    assert "no-such-model" in str(raised.value)
    assert server.process.poll() is not None


def test_the_segmenter_comparison_counts_every_segmenter_on_real_paragraphs(tmp_path: Path) -> None:
    out = tmp_path / "SEGMENTATION.md"
    result = subprocess.run([sys.executable, "-m", "bench.segmentation", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\| (\S+) \| (\d+) / 534 \|", out.read_text(), re.MULTILINE)}
    assert set(rows) == {"sentencex", "pysbd", "sentence-splitter"}
    assert rows["sentencex"] >= 530, "the server's segmenter no longer recovers Multi30k paragraphs"


def test_the_attention_cost_benchmark_compares_the_graph_with_and_without_its_branch(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS-ATTENTION.md"
    command = [sys.executable, "-m", "bench.attention", "--sentences", "16", "--rounds", "1", "--threads", "1", "--out", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text()
    for row in ("transformer-en-de | graph without the attention branch", "transformer-en-de | attention asked", "rnn-en-de | attention asked"):
        assert re.search(rf"\| {re.escape(row)} \| \d+ \| \d+\.\d+x \| 16 / 16 \|", report), row


def test_two_versions_are_set_side_by_side(tmp_path: Path) -> None:
    version = str(latest_version(ROOT / "models" / "rnn-en-de"))
    result = subprocess.run([sys.executable, "-m", "bench.versions", version, version, "--sentences", "8", "--rounds", "1", "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith(f"| {version} |")]
    assert len(rows) == 8 and all(re.search(r"\| \d+\.\d+M \| \d\.\d{4} \| (fp32|int8) \|", row) for row in rows)
