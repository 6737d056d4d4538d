"""The row operations a bound decoder runs on its device, against the numpy ones the host
decoder uses (graph_io.HostRows), on ONNX Runtime values bound to CPU memory and, with a GPU,
to GPU memory."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from decoding.device_rows import DeviceRows
from decoding.runtime import cuda_device_present
from decoding.graph_io import HostRows, Padding

PADDINGS = [Padding(axis=2, at_start=True), Padding(axis=1, at_start=False), None]
DTYPES = [np.float32, np.float16, np.int32]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not cuda_device_present(), reason="no CUDA device on this machine"))]


def binder(device: str):
    return lambda array: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device, 0)


def tensor(rng: np.random.Generator, rows: int, length: int, dtype: type, padding: Padding | None) -> np.ndarray:
    """(rows, 3, 4, 4) with `length` along the padded axis."""
    shape = [rows, 3, 4, 4]
    if padding is not None:
        shape[padding.axis] = length
    return (rng.standard_normal(shape) * 100).astype(dtype)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", DEVICES)
def test_each_operation_gives_the_host_decoders_result(padding: Padding | None, dtype: type, where: str) -> None:
    rng = np.random.default_rng(0)
    device, bound, host = DeviceRows(where), binder(where), HostRows()
    running, newcomers = tensor(rng, 5, 6, dtype, padding), tensor(rng, 2, 3, dtype, padding)
    rows = np.array([4, 0, 0, 2])
    np.testing.assert_array_equal(device.select(bound(running), rows).numpy(), host.select(running, rows))
    np.testing.assert_array_equal(device.concat(bound(running), bound(newcomers), padding).numpy(), host.concat(running, newcomers, padding))
    np.testing.assert_array_equal(device.concat(bound(newcomers), bound(running), padding).numpy(), host.concat(newcomers, running, padding))
    dead = np.array([3, 1])
    np.testing.assert_array_equal(device.place(bound(running), dead, bound(newcomers), padding).numpy(), host.place(running.copy(), dead, newcomers, padding))
    for start, end in ((2, None), (0, 3), (1, 2)):
        np.testing.assert_array_equal(device.slice(bound(running), 2, start, end).numpy(), host.slice(running, 2, start, end))
    if padding is not None:
        grown = Padding(padding.axis, at_start=False)
        np.testing.assert_array_equal(device.pad_to(bound(newcomers), grown, 9).numpy(), host.pad_to(newcomers, grown, 9))
        assert device.shape(device.pad_to(bound(newcomers), grown, 9))[padding.axis] == 9


def test_a_longer_newcomer_pads_the_running_rows() -> None:
    """Newcomers whose source is longer than every running row's widen the encoder outputs."""
    rng = np.random.default_rng(1)
    padding = Padding(axis=1, at_start=False)
    running, newcomer = tensor(rng, 3, 2, np.float32, padding), tensor(rng, 1, 5, np.float32, padding)
    bound = binder("cpu")
    placed = DeviceRows("cpu").place(bound(running), np.array([1]), bound(newcomer), padding).numpy()
    assert placed.shape == (3, 5, 4, 4)
    np.testing.assert_array_equal(placed, HostRows().place(running.copy(), np.array([1]), newcomer, padding))


@pytest.mark.parametrize("dtype", [*DTYPES, np.int64, np.bool_])
@pytest.mark.parametrize("where", DEVICES)
def test_rows_are_overwritten_in_place_at_the_same_address(dtype: type, where: str) -> None:
    """What the fixed-shape slots rely on: the other rows kept, the tensor where it was (a
    captured CUDA graph reads that memory), incoming rows from the device or from the host."""
    rng = np.random.default_rng(2)
    running, incoming = (rng.standard_normal((6, 3, 4)) * 100).astype(dtype), (rng.standard_normal((2, 3, 4)) * 100).astype(dtype)
    target = binder(where)(running)
    address = target.data_ptr()
    rows = np.array([4, 1])
    device = DeviceRows(where)
    device.overwrite(target, rows, binder(where)(incoming))
    expected = running.copy()
    expected[rows] = incoming
    np.testing.assert_array_equal(target.numpy(), expected)
    device.overwrite(target, np.array([0]), running[5:6])  # from the host
    expected[0] = running[5]
    np.testing.assert_array_equal(target.numpy(), expected)
    assert target.data_ptr() == address
