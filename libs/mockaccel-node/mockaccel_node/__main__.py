"""``python -m mockaccel_node up --topology FILE --node NAME`` (see cli.py)."""

import sys

from mockaccel_node.cli import main

sys.exit(main())
