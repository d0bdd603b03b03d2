"""`python -m services.devtools.kafka start|stop|status`: the same as `orderflow kafka ...`."""

import sys

from services.devtools.kafka import main

raise SystemExit(main(sys.argv[1:]))
