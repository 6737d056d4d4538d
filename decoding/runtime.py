"""ONNX Runtime sessions: execution providers and threads."""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from typing import Literal

import onnxruntime as ort

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def cuda_device_present() -> bool:
    """True when the NVIDIA driver loads and reports a device. onnxruntime-gpu lists the CUDA
    provider whether or not there is a GPU, and logs a failure at every session it cannot
    start, so a CPU machine must not ask for it."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


@dataclass(frozen=True)
class RuntimeConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when a GPU is present
    intra_op_threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    inter_op_threads: int = 1
    # ORT's worker threads spin while waiting for work by default, which starves the other
    # threads of a server (gRPC, batching) on a machine with few cores.
    spin_wait: bool = True
    # CUDA memory: grow the arena by what is asked, not by powers of two, so memory use tracks
    # the largest batch instead of doubling past it.
    cuda_arena_extend_strategy: Literal["kNextPowerOfTwo", "kSameAsRequested"] = "kSameAsRequested"
    cuda_memory_limit_bytes: int = 0  # 0: no limit
    # ONNX Runtime's own profiler: a JSON trace per session, named with this prefix
    # (InferenceSession.end_profiling() writes it); empty: off.
    profile_prefix: str = ""
    # Capture each IOBinding's run as a CUDA graph and replay it (only for graphs whose every
    # input and output is bound at a fixed address: the fixed-shape decoder step).
    cuda_graph: bool = False


def choose_providers(config: RuntimeConfig) -> list[str | tuple[str, dict[str, str]]]:
    wants_cuda = config.device in ("auto", "cuda")
    has_cuda = CUDA in ort.get_available_providers() and cuda_device_present()
    if config.device == "cuda" and not has_cuda:
        raise RuntimeError("device 'cuda' was asked for, but no CUDA device or CUDA-enabled onnxruntime is present")
    if wants_cuda and has_cuda:
        options = {"arena_extend_strategy": config.cuda_arena_extend_strategy}
        if config.cuda_graph:
            options["enable_cuda_graph"] = "1"
        if config.cuda_memory_limit_bytes:
            options["gpu_mem_limit"] = str(config.cuda_memory_limit_bytes)
        return [(CUDA, options), CPU]
    return [CPU]


def uses_cuda(config: RuntimeConfig) -> bool:
    return choose_providers(config)[0] != CPU


def create_session(path: str, config: RuntimeConfig) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = config.inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.spin_wait else "0")
    if config.profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = config.profile_prefix
    session = ort.InferenceSession(path, options, providers=choose_providers(config))
    log.info("loaded %s on %s", path, session.get_providers()[0])
    return session
