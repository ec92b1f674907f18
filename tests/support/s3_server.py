"""The local S3 server of the tests: moto's server app, with S3's atomic conditional writes.

moto checks `If-None-Match: *` and then stores the object without a lock, so two
concurrent conditional PUTs of one key can both succeed; S3 itself answers one of them
412. Serialising the mutating requests restores that guarantee (reads stay concurrent), so
the compare-and-swap tests exercise lbdask's logic and not moto's race.
Run as `python tests/support/s3_server.py PORT`.
"""
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

MUTATING = frozenset({"PUT", "POST", "DELETE"})


def atomic_writes(app):
    """WSGI middleware: one mutating request at a time, its response produced under the lock."""
    lock = threading.Lock()

    def serve(environ, start_response):
        if environ.get("REQUEST_METHOD") not in MUTATING:
            return app(environ, start_response)
        with lock:
            return list(app(environ, start_response))

    return serve


if __name__ == "__main__":
    run_simple("127.0.0.1", int(sys.argv[1]), atomic_writes(DomainDispatcherApplication(create_backend_app)),
               threaded=True, request_handler=MotoRequestHandler)
