"""Serve the Iris page on this machine only: the page and its script from this folder,
onnxruntime-web from ``node_modules`` (``npm ci``), the exported step from ``build/``. Nothing is
fetched from anywhere else.

    python examples/onnx_web/serve.py [--port 8000] [--build FOLDER]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import posixpath
import threading
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = ("index.html", "train.js")


class Handler(http.server.SimpleHTTPRequestHandler):
    """``/`` and :data:`PAGE` from this folder, ``/ort/...`` from onnxruntime-web's ``dist``,
    ``/build/...`` from the export folder; anything else is 404."""

    def __init__(self, *args, build: str, **kwargs):
        self.build = build
        super().__init__(*args, directory=HERE, **kwargs)

    def translate_path(self, path: str) -> str:
        path = posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(path).path))
        parts = [p for p in path.split("/") if p and p not in (".", "..")]
        if not parts:
            return os.path.join(HERE, "index.html")
        if len(parts) == 1 and parts[0] in PAGE:
            return os.path.join(HERE, parts[0])
        roots = {"ort": os.path.join(HERE, "node_modules", "onnxruntime-web", "dist"), "build": self.build}
        if parts[0] in roots and len(parts) > 1:
            return os.path.join(roots[parts[0]], *parts[1:])
        return os.path.join(HERE, "\0missing")  # not a file: 404

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


Handler.extensions_map = {**Handler.extensions_map, ".mjs": "text/javascript", ".js": "text/javascript",
                          ".wasm": "application/wasm"}


def serve(build: str = os.path.join(HERE, "build"), port: int = 0) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start the server on 127.0.0.1 in a thread; returns it and its URL (``port=0``: any free port)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Handler, build=build))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--build", default=os.path.join(HERE, "build"))
    a = ap.parse_args()
    httpd, url = serve(a.build, a.port)
    print(f"serving {url} (Ctrl-C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        httpd.shutdown()
