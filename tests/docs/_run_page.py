"""Run one page's Python blocks in this fresh process, in one namespace, as a reader would.

Usage: ``python _run_page.py BLOCKS.json``, the JSON a list of ``{"page", "line", "code"}``; a block
with ``"fresh": true`` starts a new namespace (the docstring examples of another module). Network
connections other than loopback are refused. Each block is compiled under its page's file name with
its own line numbers, so a traceback points at the Markdown line. Exit status 0: every block ran.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX and friends
    host = str(address[0])
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_network() -> None:
    connect = socket.socket.connect
    connect_ex = socket.socket.connect_ex
    create_connection = socket.create_connection

    def guarded_connect(self: socket.socket, address: object) -> None:
        if not _is_loopback(address):
            raise OSError(f"network access is disabled while the docs run (tried {address!r})")
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: object) -> int:
        return connect_ex(self, address) if _is_loopback(address) else 111

    def guarded_create_connection(address: tuple, *args: object, **kwargs: object) -> socket.socket:
        if not _is_loopback(address):
            raise OSError(f"network access is disabled while the docs run (tried {address!r})")
        return create_connection(address, *args, **kwargs)  # type: ignore[arg-type]

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
    socket.create_connection = guarded_create_connection  # type: ignore[assignment]


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as file:
        blocks = json.load(file)
    _refuse_network()
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in blocks:
        if block.get("fresh"):
            namespace = {"__name__": "__main__"}
        print(f"--- {block['page']}:{block['line']}", flush=True)
        # Blank lines in front keep the block's own line numbers: tracebacks name the Markdown line.
        source = "\n" * (block["line"] - 1) + block["code"]
        exec(compile(source, block["page"], "exec"), namespace)  # noqa: S102
    print("--- all blocks ran", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
