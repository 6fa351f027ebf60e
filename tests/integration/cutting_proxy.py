"""A loopback TCP proxy that cuts one HTTP insert mid-body, for the partial-insert tests."""

from __future__ import annotations

import socket
import threading


class CuttingProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``; the first request whose opening bytes contain
    every one of ``markers`` is cut (both sides closed) once ``cut_after`` bytes of it have been
    forwarded. With ``cut_response`` the request goes through whole and the connection is cut
    before its response comes back (the insert is stored, the client cannot know)."""

    def __init__(self, upstream: tuple[str, int], markers: tuple[bytes, ...], cut_after: int,
                 cut_response: bool = False) -> None:
        self.upstream = upstream
        self.cut_response = cut_response
        self._cut_responses: set[socket.socket] = set()
        self.markers = markers
        self.cut_after = cut_after
        self.cuts = 0
        self._armed = True
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump_request, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump_response, args=(server, client), daemon=True).start()

    def _pump_request(self, source: socket.socket, sink: socket.socket) -> None:
        """Connections are kept alive, so any chunk may open the request to cut."""
        forwarded, cutting = 0, False
        try:
            while data := source.recv(65536):
                if not cutting:
                    with self._lock:
                        cutting = self._armed and all(m in data for m in self.markers)
                        self._armed = self._armed and not cutting
                if cutting and self.cut_response:
                    self._cut_responses.add(sink)
                elif cutting and forwarded + len(data) >= self.cut_after:
                    sink.sendall(data[: self.cut_after - forwarded])
                    self.cuts += 1
                    break
                sink.sendall(data)
                if cutting:
                    forwarded += len(data)
        except OSError:
            pass
        _close(source, sink)

    def _pump_response(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if source in self._cut_responses:
                    self.cuts += 1
                    break
                sink.sendall(data)
        except OSError:
            pass
        _close(source, sink)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
