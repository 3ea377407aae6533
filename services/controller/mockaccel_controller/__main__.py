"""``python -m mockaccel_controller --help``: the service's entry point (also the pex's)."""

import sys

from mockaccel_common.runner import main

if __name__ == "__main__":
    sys.exit(main("mockaccel_controller", kubernetes=True))
