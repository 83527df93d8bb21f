"""A stdlib WSGI backend (wsgiref) for the proxy's identity-header tests.

Prints "serving on PORT" once listening on 127.0.0.1, then answers every request with the
WSGI environ's HTTP_* variables, one "NAME=VALUE" line each, sorted. A WSGI (or CGI) server
hands headers to the application with "-" mapped to "_", so "x-spiffe-id" and "x_spiffe_id"
arrive as the same HTTP_X_SPIFFE_ID: what this backend shows is what such an application sees.
"""
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server


def app(environ, start_response):
    lines = [f"{k}={v}" for k, v in sorted(environ.items()) if k.startswith("HTTP_")]
    lines.append(f"PATH_INFO={environ.get('PATH_INFO', '')}")
    body = ("\n".join(lines) + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
print(f"serving on {server.server_port}", flush=True)
sys.stdout.flush()
server.serve_forever()
