import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from tests.server.running_server import RunningServer, start_server  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The server as shipped: default flags, the default models."""
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    running.stop()
