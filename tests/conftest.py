"""Deprecations are errors: a transformers rename is caught while it is still a warning (issue: compat).

Python `FutureWarning`/`DeprecationWarning` are turned into errors by `filterwarnings` in `pyproject.toml`; this
fixture does the same for the deprecations transformers reports through its logger (`logger.warning_once`).
"""

import logging

import pytest


class _DeprecationRecords(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "deprecat" in message.lower():
            self.messages.append(f"{record.name}: {message}")


@pytest.fixture(autouse=True)
def no_transformers_deprecation_logged():
    handler = _DeprecationRecords()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    messages = "\n".join(handler.messages)
    assert not handler.messages, f"transformers logged a deprecation about our use of it:\n{messages}"
