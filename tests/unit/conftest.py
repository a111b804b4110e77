"""The unit tier: pure functions, milliseconds. The scripts folder is importable (seed_targets).

The tier must not import torch (seconds of start-up, and a sign that a test needs the integration tier). Two guards:
test_no_torch.py collects the tier in a fresh interpreter and fails if collection imports torch; the fixture below
fails a unit test that imports torch while it runs. The fixture can only see an import that happens while torch is
not yet loaded, so when other tiers run in the same session the unit tests are moved to the front.
"""

import sys
import traceback
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
UNIT_DIR = Path(__file__).resolve().parent
NOISE = {"_pytest", "pluggy"}


class TorchImportTrap:
    """A meta path finder that finds nothing: it records the stack of the first `import torch` it sees."""

    def __init__(self):
        self.stack: list[str] | None = None

    def find_spec(self, name, path=None, target=None):
        if name == "torch" and self.stack is None:
            frames = [f for f in traceback.extract_stack()[:-1]  # without importlib's, pytest's and pluggy's frames
                      if not f.filename.startswith("<") and NOISE.isdisjoint(Path(f.filename).parts)]
            self.stack = traceback.format_list(frames)
        return None


def pytest_collection_modifyitems(session, config, items):
    """Unit tests first (stable), so the torch guard below still sees a torch-free process under `make test`."""
    items.sort(key=lambda item: not item.path.is_relative_to(UNIT_DIR))


@pytest.fixture(autouse=True)
def _no_torch_import(request):
    if "torch" in sys.modules:  # loaded by another tier's test or collection: nothing can be told from here
        yield
        return
    trap = TorchImportTrap()
    sys.meta_path.insert(0, trap)
    try:
        yield
    finally:
        sys.meta_path.remove(trap)
    if "torch" in sys.modules:
        where = "".join(trap.stack or ["(no stack recorded)\n"])
        pytest.fail(f"{request.node.nodeid} imported torch; the unit tier must not (move the test to "
                    f"tests/integration, or import torch lazily in the module it calls). First import:\n{where}",
                    pytrace=False)
