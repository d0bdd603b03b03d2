import sys

from orderflow_dev.rabbitmq.cli import main

sys.exit(main(sys.argv[1:]))
