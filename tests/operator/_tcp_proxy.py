"""A TCP proxy in front of the apiserver that a test can pause: while paused it accepts and
holds connections but moves no byte either way, as a network that silently drops everything."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import yaml


class PausableProxy:
    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._paused = threading.Event()
        self._closed = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def close(self) -> None:
        self._closed.set()
        for s in [self.listener, *self._socks]:
            try:
                s.close()
            except OSError:
                pass

    def _wait_while_paused(self) -> bool:
        while self._paused.is_set() and not self._closed.is_set():
            time.sleep(0.02)
        return not self._closed.is_set()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if not self._wait_while_paused():
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self._socks += [client, upstream]
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.1)
        while self._wait_while_paused():
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            while self._paused.is_set() and not self._closed.is_set():  # read just before a pause
                time.sleep(0.02)
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxied_kubeconfig(kubeconfig: Path, out: Path) -> tuple[PausableProxy, Path]:
    """A proxy in front of `kubeconfig`'s apiserver and a copy of the kubeconfig that goes through
    it (same host name, so the server certificate still matches)."""
    cfg = yaml.safe_load(Path(kubeconfig).read_text())
    server = urlsplit(cfg["clusters"][0]["cluster"]["server"])
    proxy = PausableProxy(server.hostname, server.port or 443)
    cfg["clusters"][0]["cluster"]["server"] = f"{server.scheme}://{server.hostname}:{proxy.port}"
    out.write_text(yaml.safe_dump(cfg))
    return proxy, out
