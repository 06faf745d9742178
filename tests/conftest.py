import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see wavediff.runtime)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_flush_denormal(True)

REF = Path(__file__).parent / "data" / "reference"
FIXTURES = REF / "fixtures"


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # The reference outputs were produced with 2 threads; keep runs comparable.
    torch.set_num_threads(2)
    yield
