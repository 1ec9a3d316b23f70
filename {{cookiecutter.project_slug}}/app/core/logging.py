"""Logging: one configuration for the app and the server, and never a write on the event loop.

While the app runs, every record (the app's, its access log, the server's, Python's warnings)
goes to one handler on stderr, formatted as LOG_FORMAT says: `text` for people, `json` (one
object a line) for a log collector. Each record logged while a request is served carries its id.

A log call only queues its record; one thread writes them, a batch at a time. A handler that
writes to a file or a pipe blocks while it writes, and on the event loop that would stall every
request.
"""

import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from contextvars import ContextVar
from logging.handlers import QueueHandler
from queue import Empty, SimpleQueue
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

from app.core.concurrency import run_in_thread

LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

# The id of the request being served (set by app.core.middleware.request_context), in this context:
# tasks and worker threads started for the request inherit it.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "{asctime}{levelname}{name}{request_id}{message}"
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
# Servers' loggers with handlers of their own: granian's (production), uvicorn's (`fastapi dev`).
SERVER_LOGGERS = ("_granian", "granian.access", "uvicorn", "uvicorn.access")


def escaped(text: str) -> str:
    """`text` with what is not printable written as escapes: a client's decoded %0a would forge a
    log line, a %1b send terminal escapes."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(JSON_FIELDS, style="{", rename_fields=JSON_NAMES)
    return logging.Formatter(TEXT_FORMAT)


class _Enqueue(QueueHandler):
    """Hands the record over as it is: one process, so nothing needs pickling or pre-formatting."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _BatchWriter:
    """A thread that writes what `queue` holds every `interval` seconds, in one write a batch.

    A QueueListener wakes once a record: under load, that wake-up on each log call costs the
    loop more than the formatting it saved. Here a log call only appends to the queue.
    """

    def __init__(
        self,
        queue: SimpleQueue[logging.LogRecord],
        handler: logging.StreamHandler[Any],
        interval: float,
    ) -> None:
        self._queue = queue
        self._handler = handler
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write what is still queued, then end the thread."""
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self._write_queued()
        self._write_queued()

    def _write_queued(self) -> None:
        handler = self._handler
        lines, written = [], None
        while True:
            try:
                record = self._queue.get_nowait()
            except Empty:
                break
            if record.levelno < handler.level or not handler.filter(record):
                continue
            try:
                lines.append(handler.format(record) + handler.terminator)
                written = record
            except Exception:  # as Handler.emit does: report it, and lose only this record
                handler.handleError(record)
        if written is None:
            return
        try:
            with handler.lock or nullcontext():
                handler.stream.write("".join(lines))
                handler.flush()
        except Exception:  # a closed or broken stream: reported, and the thread goes on
            handler.handleError(written)


def _with_request_id(
    make_record: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    """A record factory that stamps each record with the request id, on the thread that logs."""

    def make_record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.request_id = REQUEST_ID.get() or "-"
        return record

    return make_record_with_request_id


@asynccontextmanager
async def behind_queue(
    logger: logging.Logger, handler: logging.StreamHandler[Any], interval: float = 0.05
) -> AsyncIterator[None]:
    """Give `logger` this handler, written by a thread of its own in batches `interval` seconds
    apart, while the block runs."""
    queue: SimpleQueue[logging.LogRecord] = SimpleQueue()  # its put() takes no lock
    writer = _BatchWriter(queue, handler, interval)
    enqueue = _Enqueue(queue)
    logger.addHandler(enqueue)
    writer.start()
    try:
        yield
    finally:
        logger.removeHandler(enqueue)
        await run_in_thread(writer.stop)  # waits for what is still queued to be written


def _restore(logger: logging.Logger, handlers: list[logging.Handler], propagate: bool) -> None:
    for handler in handlers:
        logger.addHandler(handler)
    logger.propagate = propagate


@asynccontextmanager
async def logging_off_the_loop(
    level: LogLevel = "INFO", log_format: LogFormat = "text"
) -> AsyncIterator[None]:
    """Log at `level` and above to stderr, in `log_format`, the server's records too, all behind
    a queue. Handlers already on the root logger (a test runner's) stay."""
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter(log_format))
    root = logging.getLogger()
    async with AsyncExitStack() as stack:
        stack.callback(root.setLevel, root.level)
        root.setLevel(level)
        stack.callback(logging.setLogRecordFactory, logging.getLogRecordFactory())
        logging.setLogRecordFactory(_with_request_id(logging.getLogRecordFactory()))
        await stack.enter_async_context(behind_queue(root, stderr))
        stack.callback(logging.captureWarnings, False)
        logging.captureWarnings(True)  # warnings.warn() as records ("py.warnings"), not raw text
        for name in SERVER_LOGGERS:
            server = logging.getLogger(name)
            own = list(server.handlers)
            for handler in own:
                server.removeHandler(handler)
            stack.callback(_restore, server, own, server.propagate)
            server.propagate = True  # to the root logger's handler, in the same format
        yield
