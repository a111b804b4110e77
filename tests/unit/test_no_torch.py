"""The unit tier does not import torch: collecting it (conftests, plugins, every test module and what they import)
in a fresh interpreter leaves torch out of sys.modules.

A subprocess, so the answer does not depend on what else runs in this session (under `make test` the integration
tier imports torch legitimately). Imports made while a unit test runs are caught by the fixture in conftest.py.
"""

import json
import subprocess
import sys
from pathlib import Path

UNIT_DIR = Path(__file__).resolve().parent
ROOT = UNIT_DIR.parents[1]
MARK = "NO-TORCH-VERDICT "

CHILD = f"""
import sys
torch_at_start = "torch" in sys.modules
import importlib.util, json
spec = importlib.util.spec_from_file_location("_unit_conftest_trap", {str(UNIT_DIR / "conftest.py")!r})
conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conftest)
trap = conftest.TorchImportTrap()
sys.meta_path.insert(0, trap)
import pytest
rc = pytest.main(["--collect-only", "-qq", "-p", "no:cacheprovider", {str(UNIT_DIR)!r}])
print({MARK!r} + json.dumps({{"rc": int(rc), "torch_at_start": torch_at_start, "torch": "torch" in sys.modules,
                              "stack": trap.stack}}))
"""


def test_collecting_the_unit_tier_does_not_import_torch():
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    assert lines, f"collection subprocess failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    verdict = json.loads(lines[-1][len(MARK):])
    assert not verdict["torch_at_start"], "torch is imported at interpreter start-up (a .pth file or sitecustomize?)"
    assert not verdict["torch"], (
        "collecting tests/unit imports torch; move the test module to tests/integration, or make the selfreward module "
        "import torch lazily. First import:\n" + "".join(verdict["stack"] or ["(no stack recorded)\n"])
        + (f"\ncollection output (rc {verdict['rc']}):\n{proc.stdout[-4000:]}" if verdict["rc"] else "")
    )
