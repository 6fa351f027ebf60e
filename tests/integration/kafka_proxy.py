"""A loopback TCP proxy in front of the real Kafka broker that can make the broker slow.

Clients bootstrap through the proxy; the broker's address in Metadata and FindCoordinator
responses is rewritten to the proxy's, so every later connection goes through it too. ``hold_next_produce``
delays the broker's next Produce response (the write itself already landed), the way a slow or
overloaded broker answers after the producer stopped waiting.
"""

from __future__ import annotations

import asyncio
import struct
import threading

PRODUCE_API_KEY = 0
ADDRESS_API_KEYS = frozenset({3, 10})  # Metadata, FindCoordinator: the responses naming brokers


class SlowKafkaProxy:
    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.broker_host, self.broker_port = host, int(port)
        self.port = 0
        self.held_produce_responses = 0
        self._hold_s = 0.0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-kafka-proxy", daemon=True)

    @property
    def bootstrap(self) -> str:
        return f"{self.broker_host}:{self.port}"

    def start(self) -> "SlowKafkaProxy":
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def hold_next_produce(self, seconds: float) -> None:
        self._hold_s = seconds

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, self.broker_host, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection(self.broker_host, self.broker_port)
        api_keys: dict[int, int] = {}  # correlation id -> api key of this connection's requests
        try:
            await asyncio.gather(self._requests(client_r, broker_w, api_keys),
                                 self._responses(broker_r, client_w, api_keys))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            client_w.close()
            broker_w.close()

    @staticmethod
    async def _frame(reader: asyncio.StreamReader) -> bytes:
        size = await reader.readexactly(4)
        return size + await reader.readexactly(struct.unpack(">i", size)[0])

    async def _requests(self, reader, writer, api_keys: dict[int, int]) -> None:
        while True:
            frame = await self._frame(reader)
            api_key, _version, correlation = struct.unpack(">hhi", frame[4:12])
            api_keys[correlation] = api_key
            writer.write(frame)
            await writer.drain()

    async def _responses(self, reader, writer, api_keys: dict[int, int]) -> None:
        broker_address = self.broker_host.encode() + struct.pack(">i", self.broker_port)
        proxy_address = self.broker_host.encode() + struct.pack(">i", self.port)
        while True:
            frame = await self._frame(reader)
            api_key = api_keys.pop(struct.unpack(">i", frame[4:8])[0], None)
            if api_key == PRODUCE_API_KEY and self._hold_s:
                hold, self._hold_s = self._hold_s, 0.0
                self.held_produce_responses += 1
                await asyncio.sleep(hold)
            if api_key in ADDRESS_API_KEYS:
                frame = frame.replace(broker_address, proxy_address)  # same length: the framing holds
            writer.write(frame)
            await writer.drain()
