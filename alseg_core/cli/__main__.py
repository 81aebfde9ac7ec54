"""``python -m alseg_core.cli``."""

import sys

from alseg_core.cli import main

sys.exit(main())
