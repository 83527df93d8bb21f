"""A keep-alive HTTP/1.1 backend (http.server) that, like many, never reads a GET's body.

Prints "serving on PORT" once listening on 127.0.0.1, then answers each GET with
"path=<path> id=<x-spiffe-id>" on a connection it keeps open. A body sent with a GET stays in
the connection, where this server reads it as the next request: what a proxy in front must
never let one client do to another, or to a route check.
"""
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"path={self.path} id={self.headers.get('x-spiffe-id')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
print(f"serving on {server.server_port}", flush=True)
server.serve_forever()
