from pathlib import Path

import pytest
import torch

REF = Path(__file__).parent / "data" / "reference"
FIXTURES = REF / "fixtures"


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # The reference outputs were produced with 2 threads; keep runs comparable.
    torch.set_num_threads(2)
    yield
