from __future__ import annotations

import io
import json
import logging

import structlog

from mockaccel_common.logging import configure_logging, get_logger


def test_json_lines_carry_bound_context_and_stdlib_records() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    try:
        with structlog.contextvars.bound_contextvars(claim_uid="c-1", node="n1"):
            get_logger("test").info("claim_prepared", devices=2)
        logging.getLogger("grpclib").warning("library says %s", "hi")
        get_logger("test").debug("hidden")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["claim_prepared", "library says hi"]
    assert lines[0]["claim_uid"] == "c-1"
    assert lines[0]["devices"] == 2
    assert lines[0]["level"] == "info"
    assert lines[1]["logger"] == "grpclib"
