import sys

from mockaccel_common.logging import configure_logging
from mockaccel_common.runner import run_main
from mockaccel_controller import app
from mockaccel_controller.settings import Settings

settings = Settings.load()
configure_logging(settings.log_level, settings.log_format)
sys.exit(run_main("mockaccel_controller", app.run(settings)))
