"""Streams cannot starve a server: a cap on concurrent streams and an idle timeout.

Every streaming call (request, response or both directions) holds a handler thread for as long
as it is open. Without a cap, 16 clients that open a stream and send nothing take all 16
threads and even the health check times out. So:

- at most `max_streams` streaming calls run at once (default 4 of 16 handler threads: unary
  calls, Stats and health always have threads). One more is refused at once with
  RESOURCE_EXHAUSTED, reason TOO_MANY_STREAMS, metadata {"limit": N}.
- a request stream that sends no message for `idle_timeout` seconds while the server waits
  for one is ended with CANCELLED, reason STREAM_IDLE, metadata {"idle_timeout_seconds": T}.
  CANCELLED, not DEADLINE_EXCEEDED: the caller set no deadline and the server did not run out
  of time; the server cancelled a call its client left silent (and clients report
  DEADLINE_EXCEEDED as "the server did not answer in time", which would blame the wrong side).

- streams a caller may open without a key (the health Watch: load balancers need no key)
  have a pool of their own, `max_health_watches` (default 2), refused beyond it the same way,
  and never take the `max_streams` slots: keyless callers cannot deny streams to callers with
  a key. Each held Watch takes a handler thread, so the settings keep max_streams +
  max_health_watches below the thread count. A Watch ends with OK after
  `health_watch_lifetime` seconds (the client watches again), so none is held forever.

- a response stream whose client stops reading (a response handed to gRPC is still not sent
  after `idle_timeout` seconds: flow control has stopped it) is cancelled by a watchdog
  thread. The client gets a plain CANCELLED: it is not reading anyway.

gRPC Python's request iterator blocks without a timeout and a watchdog's `context.cancel()`
would end the call without a status the client can read, so each guarded request stream gets a
reader thread that hands messages over a one-slot queue (flow control is kept: the reader
reads one message ahead). The handler's wait on that queue is what times out; it then ends the
call from its own thread with the rich status.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from imagesim.errors import Reason
from imagesim.security import OPEN, required_role
from imagesim.serving.errors import abort, rich_status
from imagesim.serving.handlers import Behavior, wrap_handler
from imagesim.serving.settings import StreamLimits

log = logging.getLogger(__name__)

_END = object()


class IdleTimeoutRequests(Iterator[Any]):
    """A request iterator whose `next()` ends the call after `idle_timeout` s without a
    message (from the thread that called it, so the status reaches the client)."""

    def __init__(self, requests: Iterator[Any], context: grpc.ServicerContext, timeout: float):
        self._requests = requests
        self._context = context
        self._timeout = timeout
        self._queue: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=1)
        self._closed = threading.Event()
        self._done = False
        threading.Thread(target=self._pump, name="stream-reader", daemon=True).start()

    def _pump(self) -> None:
        try:
            for request in self._requests:
                if not self._put((request, None)):
                    return
        except BaseException as exc:  # the client cancelled or the call ended
            self._put((None, exc))
            return
        self._put((_END, None))

    def _put(self, item: tuple[Any, BaseException | None]) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        """The handler is done: let the reader thread go (it also ends with the call)."""
        self._closed.set()

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            request, error = self._queue.get(timeout=self._timeout)
        except queue.Empty:
            self._done = True
            abort(
                self._context,
                rich_status(
                    grpc.StatusCode.CANCELLED,
                    f"stream closed: no message from the client for {self._timeout:g} s",
                    Reason.STREAM_IDLE,
                    {"idle_timeout_seconds": f"{self._timeout:g}"},
                ),
            )
        if error is not None:
            self._done = True
            raise error
        if request is _END:
            self._done = True
            raise StopIteration
        return request


class SendWatchdog:
    """Cancels response streams whose last response has waited `timeout` s to be sent."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._handed: dict[object, tuple[float, grpc.ServicerContext]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def handed(self, call: object, context: grpc.ServicerContext) -> None:
        """A response of `call` went to gRPC for sending."""
        with self._lock:
            self._handed[call] = (time.monotonic(), context)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="send-watchdog", daemon=True)
                self._thread.start()

    def sent(self, call: object) -> None:
        """gRPC came back for the next response (or the call ended)."""
        with self._lock:
            self._handed.pop(call, None)

    def _run(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            now = time.monotonic()
            with self._lock:
                stalled = [c for c, (t, _) in self._handed.items() if now - t > self.timeout]
                contexts = [self._handed.pop(c)[1] for c in stalled]
            for context in contexts:
                log.info("cancelling a stream whose client stopped reading for %g s", self.timeout)
                context.cancel()


class StreamPool:
    """At most `limit` streams at once; one more is refused at once with RESOURCE_EXHAUSTED,
    reason TOO_MANY_STREAMS, metadata {"limit": N}."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what  # "streams", "health watches": for the refusal's message
        self._slots = threading.BoundedSemaphore(limit) if limit > 0 else None
        self._active = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return self._active

    def acquire(self, context: grpc.ServicerContext) -> None:
        if self._slots is None or not self._slots.acquire(blocking=False):
            abort(
                context,
                rich_status(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"too many {self.what}: this server runs at most {self.limit} at once; "
                    "retry later",
                    Reason.TOO_MANY_STREAMS,
                    {"limit": str(self.limit)},
                ),
            )
        with self._lock:
            self._active += 1

    def release(self) -> None:
        with self._lock:
            self._active -= 1
        assert self._slots is not None
        self._slots.release()


class CallbackStreams:
    """Non-blocking response streams (gRPC's `experimental_non_blocking` behaviours, called
    with a send callback, None ending the stream: the health Watch) run as generators in the
    handler thread, so the wrappers here apply to them. The callback only queues: a client that
    does not read never blocks the health status setter."""

    def __init__(self) -> None:
        self._open: set[queue.Queue[Any]] = set()
        self._lock = threading.Lock()
        self._ended = False

    def run(
        self,
        behavior: Callable[..., Any],
        request: Any,
        context: grpc.ServicerContext,
        lifetime: float,
    ) -> Iterator[Any]:
        """The stream's responses; it ends with OK after `lifetime` seconds (0: never), the
        client then watches again, or at once after `end_all`."""
        responses: queue.Queue[Any] = queue.Queue()
        with self._lock:
            self._open.add(responses)
            if self._ended:
                responses.put(None)  # still sends the current status first
        try:
            behavior(request, context, responses.put)
            deadline = time.monotonic() + lifetime if lifetime > 0 else None
            while True:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    response = responses.get(timeout=timeout)
                except queue.Empty:
                    return
                if response is None:
                    return
                yield response
        finally:
            with self._lock:
                self._open.discard(responses)

    def end_all(self) -> None:
        """End every such stream once it has sent what is queued, and any opened later (on
        shutdown, after health NOT_SERVING: a Watch must not hold the server for its grace)."""
        with self._lock:
            self._ended = True
            for responses in self._open:
                responses.put(None)


class StreamGuard(grpc.ServerInterceptor):
    """Applies StreamLimits to every streaming method of a server (services need no code).

    Streams a caller may open without a key (health Watch, see imagesim.security.roles) have
    their own small pool and lifetime: they never take the slots of authenticated work."""

    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self.streams = StreamPool(limits.max_streams, "streams")
        self.open_streams = StreamPool(limits.max_health_watches, "health watches")
        self._watchdog = SendWatchdog(limits.idle_timeout) if limits.idle_timeout > 0 else None
        self.callback_streams = CallbackStreams()

    @property
    def active(self) -> int:
        """Streaming calls running now in the --max-streams slots (health watches apart)."""
        return self.streams.active

    def _requests(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        if self.limits.idle_timeout > 0:
            return IdleTimeoutRequests(requests, context, self.limits.idle_timeout)
        return requests

    def _wrap(
        self, pool: StreamPool, lifetime: float, behavior: Behavior, requests: bool, responses: bool
    ) -> Behavior:
        def unary_response(request: Any, context: grpc.ServicerContext) -> Any:
            pool.acquire(context)
            guarded = self._requests(request, context)
            try:
                return behavior(guarded, context)
            finally:
                if isinstance(guarded, IdleTimeoutRequests):
                    guarded.close()
                pool.release()

        def streaming_response(request: Any, context: grpc.ServicerContext) -> Any:
            pool.acquire(context)
            guarded = self._requests(request, context) if requests else request
            watchdog, call = self._watchdog, object()
            try:
                if getattr(behavior, "experimental_non_blocking", False):
                    stream = self.callback_streams.run(behavior, guarded, context, lifetime)
                else:
                    stream = behavior(guarded, context)
                for response in stream:
                    if watchdog is not None:
                        watchdog.handed(call, context)
                    yield response
                    if watchdog is not None:
                        watchdog.sent(call)
            finally:
                if watchdog is not None:
                    watchdog.sent(call)
                if isinstance(guarded, IdleTimeoutRequests):
                    guarded.close()
                pool.release()

        return streaming_response if responses else unary_response

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        if required_role(handler_call_details.method) == OPEN:
            pool, lifetime = self.open_streams, self.limits.health_watch_lifetime
        else:
            pool, lifetime = self.streams, 0.0
        return wrap_handler(handler, functools.partial(self._wrap, pool, lifetime))
