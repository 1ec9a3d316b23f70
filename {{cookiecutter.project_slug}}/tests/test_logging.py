"""The log writer: records reach the stream in order, a batch a write, and none is lost."""

import io
import logging
import threading
import time

from app.core.concurrency import run_in_thread
from app.core.logging import behind_queue

INTERVAL = 0.05


class CountedWrites(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.written = threading.Event()

    def write(self, text: str) -> int:
        self.writes += 1
        self.written.set()
        return super().write(text)


def quiet_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # only to the handler under test
    return logger


def handler_of(
    stream: io.StringIO, level: int = logging.NOTSET
) -> logging.StreamHandler[io.StringIO]:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.setLevel(level)
    return handler


async def test_records_are_written_in_order_a_batch_a_write() -> None:
    stream = CountedWrites()
    logger = quiet_logger("tests.logging.batches")
    started = time.monotonic()
    async with behind_queue(logger, handler_of(stream), INTERVAL):
        for n in range(200):
            logger.info("record %d", n)
    elapsed = time.monotonic() - started
    assert stream.getvalue().splitlines() == [f"INFO record {n}" for n in range(200)]
    # At most one write a wake-up, and one when the writer stops: not one a record.
    assert stream.writes <= elapsed / INTERVAL + 1
    assert stream.writes < 200


async def test_a_record_is_written_while_the_app_runs_not_only_at_its_end() -> None:
    stream = CountedWrites()
    logger = quiet_logger("tests.logging.prompt")
    async with behind_queue(logger, handler_of(stream), INTERVAL):
        logger.warning("soon")
        assert await run_in_thread(stream.written.wait, 100 * INTERVAL)
        assert stream.getvalue() == "WARNING soon\n"


async def test_the_handlers_level_and_filters_hold() -> None:
    stream = CountedWrites()
    logger = quiet_logger("tests.logging.levels")
    handler = handler_of(stream, logging.INFO)
    handler.addFilter(lambda record: "secret" not in record.getMessage())
    async with behind_queue(logger, handler, INTERVAL):
        logger.debug("too low")
        logger.info("kept")
        logger.error("a secret")
    assert stream.getvalue() == "INFO kept\n"
