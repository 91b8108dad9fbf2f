"""A TCP proxy between Kafka clients and the embedded broker, for broker faults on demand.

The broker advertises the proxy's port, so every connection (metadata included) goes through
it. ``cut()`` closes every connection and refuses new ones (a broker lost); ``stall()`` keeps
connections open but forwards nothing (a broker or network that hangs); ``throttle(rate)``
forwards at most ``rate`` bytes per second per direction of a connection (a slow link);
``heal()`` goes back to forwarding at full speed. It runs on an event loop of its own, in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class Proxy:
    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self.mode = "forward"
        self.rate: float | None = None  # bytes/s per direction of a connection while throttled

    # -- control, from any thread --------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def cut(self) -> None:
        self._call(self._cut())

    def stall(self) -> None:
        self._call(self._set("stall"))

    def throttle(self, bytes_per_second: float) -> None:
        self.rate = bytes_per_second

    def heal(self) -> None:
        self.rate = None
        self._call(self._heal())

    def close(self) -> None:
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    # -- the proxy itself ---------------------------------------------------------------
    async def _start(self) -> None:
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)

    async def _set(self, mode: str) -> None:
        self.mode = mode
        if mode == "forward":
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _cut(self) -> None:
        await self._set("cut")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _heal(self) -> None:
        if self._server is None:
            await self._listen()
        await self._set("forward")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()  # a stall holds the bytes back
                if writer.is_closing():
                    break
                writer.write(data)
                await writer.drain()
                if self.rate is not None:
                    await asyncio.sleep(len(data) / self.rate)
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()


@contextlib.contextmanager
def running_proxy(listen_port: int, target_port: int) -> Iterator[Proxy]:
    proxy = Proxy(listen_port, target_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
