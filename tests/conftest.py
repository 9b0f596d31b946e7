"""Fixtures shared by several test files."""
import functools
import http.server
import threading

import pytest

import fastnn
from fake_cuda import FakeCuda
from fastnn import _device
from helpers import QuietHandler


def _use_cuda_backend(kind: str, monkeypatch) -> None:
    """"fake": tests/fake_cuda.py poses as the GPU; "cuda": the real kernels, or a skip with
    "no CUDA device" where there is no GPU."""
    monkeypatch.setattr(_device, "cuda_used", _device.cuda_used)  # restored after the test
    if kind == "fake":
        monkeypatch.setattr(_device, "backend", FakeCuda())
    elif not fastnn.cuda.is_available():
        pytest.skip("no CUDA device")


@pytest.fixture(params=["fake", pytest.param("cuda", marks=pytest.mark.cuda)])
def backend(request, monkeypatch):
    """The CUDA backend a device test runs on, twice: tests/fake_cuda.py (numpy posing as a GPU, so
    the Python side is tested everywhere) and the real kernels (skipped with "no CUDA device"
    where there is no GPU)."""
    _use_cuda_backend(request.param, monkeypatch)
    return _device.backend


@pytest.fixture(params=["cpu", "fake", pytest.param("cuda", marks=pytest.mark.cuda)],
                ids=["cpu", "fake-cuda", "cuda"])
def device(request, monkeypatch):
    """The device a test of the CPU suite runs on: "cpu", then "cuda" twice, as with `backend`."""
    if request.param == "cpu":
        return "cpu"
    _use_cuda_backend(request.param, monkeypatch)
    return "cuda"


@pytest.fixture(params=fastnn.config()["isa_supported"])
def isa(request):
    """Each kernel level this CPU supports forced in turn (what FASTNN_ISA does at import)."""
    previous = fastnn._C.get_isa()
    fastnn._C.set_isa(request.param)
    yield request.param
    fastnn._C.set_isa(previous)


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 (ephemeral port) serving tmp_path/www; yields (base URL, root)."""
    root = tmp_path / "www"
    root.mkdir()
    QuietHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)

