"""``python -m mockaccel_node_agent --help``: the service's entry point (also the pex's)."""

import sys

from mockaccel_common.runner import main

if __name__ == "__main__":
    sys.exit(main("mockaccel_node_agent", kubernetes=True))
