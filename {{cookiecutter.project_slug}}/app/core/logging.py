"""Logging that never writes on the event loop: a log call only queues its record.

A handler that writes to a file or a pipe blocks while it writes; on the event loop that stalls
every request. While the app runs, the records of the root logger and of the server's loggers go
through a queue to their handlers, which one thread runs.
"""

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from logging.handlers import QueueHandler, QueueListener
from queue import SimpleQueue

from app.core.concurrency import run_in_thread

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# uvicorn configures these before it imports the app; their formatters read each record's args.
SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access")


class _Enqueue(QueueHandler):
    """Hands the record over as it is: one process, so nothing needs pickling or pre-formatting."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


@asynccontextmanager
async def _behind_queue(logger: logging.Logger, *handlers: logging.Handler) -> AsyncIterator[None]:
    """Give `logger` these handlers, run by a thread of their own, while the block runs."""
    queue: SimpleQueue[logging.LogRecord] = SimpleQueue()  # its put() takes no lock
    listener = QueueListener(queue, *handlers, respect_handler_level=True)
    enqueue = _Enqueue(queue)
    logger.addHandler(enqueue)
    listener.start()
    try:
        yield
    finally:
        logger.removeHandler(enqueue)
        await run_in_thread(listener.stop)  # waits for what is still queued to be written


def _add_handlers(logger: logging.Logger, handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        logger.addHandler(handler)


@asynccontextmanager
async def logging_off_the_loop(*handlers: logging.Handler) -> AsyncIterator[None]:
    """Give the root logger these handlers (default: stderr) and the server's loggers their
    own, all behind queues. Handlers already on the root logger (a test runner's) stay."""
    if not handlers:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(logging.Formatter(FORMAT))
        handlers = (stderr,)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(_behind_queue(logging.getLogger(), *handlers))
        for name in SERVER_LOGGERS:
            server = logging.getLogger(name)
            own = list(server.handlers)
            for handler in own:
                server.removeHandler(handler)
            stack.callback(_add_handlers, server, own)
            if own:
                await stack.enter_async_context(_behind_queue(server, *own))
        yield
