"""`python -m orderflow_dev.kafka start|stop|status`: the same as `orderflow kafka ...`."""

import sys

from orderflow_dev.kafka import main

raise SystemExit(main(sys.argv[1:]))
