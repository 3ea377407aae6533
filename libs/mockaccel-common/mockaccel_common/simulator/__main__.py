import sys

from mockaccel_common.simulator.cli import main

sys.exit(main())
