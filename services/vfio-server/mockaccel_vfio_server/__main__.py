"""``python -m mockaccel_vfio_server [-v] [-u UUID] [-m SIZE] [--total-vfs N] SOCKET``."""

import sys

from mockaccel_common.logging import configure_logging
from mockaccel_common.runner import run_main
from mockaccel_vfio_server import app
from mockaccel_vfio_server.settings import Settings

settings = Settings.from_command_line()
configure_logging(settings.log_level, settings.log_format)
sys.exit(run_main("mockaccel_vfio_server", app.run(settings)))
