"""`python -m wavediff ...` behaves like `wavediff ...` (and so works under torchrun)."""

import sys

from .cli import main

sys.exit(main())
