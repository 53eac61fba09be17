from __future__ import annotations

import json
import logging

import pytest

from gendetect.logs import configure_logging, request_id_var


@pytest.fixture
def restore_root_logging():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_lines(restore_root_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    log = logging.getLogger("gendetect.test")
    log.info("outside a request")
    token = request_id_var.set("req-1")
    try:
        log.warning("scored %d", 3, extra={"route": "/v1/score"})
    finally:
        request_id_var.reset(token)
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["message"] == "outside a request" and "request_id" not in first
    assert second["message"] == "scored 3"
    assert (second["level"], second["logger"]) == ("WARNING", "gendetect.test")
    assert (second["request_id"], second["route"]) == ("req-1", "/v1/score")
    assert second["time"].endswith("+00:00")


def test_text_lines_name_the_request(restore_root_logging: None,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")
    token = request_id_var.set("req-2")
    try:
        logging.getLogger("gendetect.test").info("hello")
    finally:
        request_id_var.reset(token)
    assert capsys.readouterr().err.rstrip().endswith("gendetect.test: hello [request req-2]")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="json"):
        configure_logging("INFO", "yaml")  # type: ignore[arg-type]
