"""``python -m orderflow_operator``: the same as ``orderflow operator``."""

import sys

from orderflow_operator.cli import main

sys.exit(main())
