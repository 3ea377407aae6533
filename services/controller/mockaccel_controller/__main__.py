import sys

from mockaccel_common import lean_kubernetes
from mockaccel_common.logging import configure_logging
from mockaccel_common.runner import run_main


def main() -> int:
    lean_kubernetes.install()  # before the first kubernetes_asyncio import
    from mockaccel_controller import app
    from mockaccel_controller.settings import Settings

    settings = Settings.load()
    configure_logging(settings.log_level, settings.log_format)
    return run_main("mockaccel_controller", app.run(settings))


sys.exit(main())
