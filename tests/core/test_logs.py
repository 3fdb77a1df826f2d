"""The library's logs under the configurations applications use: none, the standard library's, structlog's."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _stderr(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return done.stderr


def test_an_unconfigured_application_sees_nothing_from_the_library():
    assert _stderr("""
        from modalbag.logs import get_logger
        get_logger("modalbag.engine").warning("learner.failed", bag=1)
    """) == ""


def test_under_basic_config_each_event_is_formatted_once():
    err = _stderr("""
        import logging
        logging.basicConfig(format="%(levelname)s|%(name)s|%(message)s")
        from modalbag.logs import get_logger
        get_logger("modalbag.engine").warning("learner.failed", bag=1, error="boom")
    """)
    assert err.strip() == "WARNING|modalbag.engine|learner.failed bag=1 error='boom'"


def test_an_exception_reaches_the_standard_handler_with_its_traceback():
    err = _stderr("""
        import logging
        logging.basicConfig(format="%(levelname)s %(message)s")
        from modalbag.logs import get_logger
        try:
            raise ValueError("inner")
        except ValueError:
            get_logger("modalbag.engine").exception("run.crashed")
    """)
    assert err.startswith("ERROR run.crashed") and "ValueError: inner" in err and "Traceback" in err
