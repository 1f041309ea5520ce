"""A stand-in for a Consul agent's HTTP API, limited to what cloudnet uses and answering in the
documented shapes: the health of a service (`?passing`, blocking queries with `index` and
`wait`, the `X-Consul-Index` header) and service register/deregister. Runs on 127.0.0.1 in a
thread. Docs: https://developer.hashicorp.com/consul/api-docs/health,
https://developer.hashicorp.com/consul/api-docs/agent/service,
https://developer.hashicorp.com/consul/api-docs/features/blocking
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

NODE = {
    "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
    "Node": "node-1",
    "Address": "10.1.10.12",
    "Datacenter": "dc1",
    "TaggedAddresses": {"lan": "10.1.10.12", "wan": "10.1.10.12"},
    "Meta": {},
}
GO_DURATION = re.compile(r"([\d.]+)(ms|s|m|h)")
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None


@dataclass
class Instance:
    """A registered service instance and the status of its check."""

    registration: dict[str, Any]
    status: str = "critical"  # documented default of a new check

    def health_entry(self) -> dict[str, Any]:
        reg = self.registration
        service_id = reg.get("ID") or reg["Name"]
        return {
            "Node": NODE,
            "Service": {
                "ID": service_id,
                "Service": reg["Name"],
                "Tags": reg.get("Tags") or [],
                "Address": reg.get("Address", ""),
                "Meta": reg.get("Meta") or {},
                "Port": reg.get("Port", 0),
                "Weights": {"Passing": 1, "Warning": 1},
            },
            "Checks": [
                {"Node": "node-1", "CheckID": "serfHealth", "Name": "Serf Health Status",
                 "Status": "passing", "ServiceID": "", "ServiceName": ""},
                {"Node": "node-1", "CheckID": f"service:{service_id}", "Name": "Service check",
                 "Status": self.status, "ServiceID": service_id, "ServiceName": reg["Name"]},
            ],
        }  # fmt: skip


@dataclass
class FakeConsul:
    instances: dict[str, Instance] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    index: int = 1
    changed: threading.Condition = field(default_factory=threading.Condition)

    address: str = ""

    def start(self) -> str:
        """Listen on a free 127.0.0.1 port; answers `host:port`, as CONSUL_HTTP_ADDR spells it."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.answer(self, "GET")

            def do_PUT(self) -> None:
                fake.answer(self, "PUT")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        return self.address

    def stop(self) -> None:
        if self.address:
            self.server.shutdown()
            self.server.server_close()
            self.address = ""
            self.touch()  # wake blocked queries

    def touch(self, index: int | None = None) -> None:
        """A catalog change: a new (or, given, a lower) raft index; wakes blocking queries."""
        with self.changed:
            self.index = self.index + 1 if index is None else index
            self.changed.notify_all()

    def put(self, service: str, urls: list[str], status: str = "passing") -> None:
        """Replace every instance of `service` by one per `http://host:port` URL."""
        for key in [k for k, i in self.instances.items() if i.registration["Name"] == service]:
            del self.instances[key]
        for number, url in enumerate(urls):
            parts = urlsplit(url)
            registration = {"ID": f"{service}-{number}", "Name": service,
                            "Address": parts.hostname, "Port": parts.port}  # fmt: skip
            self.instances[registration["ID"]] = Instance(registration, status)
        self.touch()

    def set_status(self, service_id: str, status: str) -> None:
        self.instances[service_id].status = status
        self.touch()

    def queries(self, service: str) -> list[Request]:
        return [r for r in self.requests if r.path == f"/v1/health/service/{service}"]

    def answer(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        self.requests.append(Request(method, unquote(parts.path), query, body))
        route = (method, *unquote(parts.path).split("/")[1:])
        match route:
            case ("GET", "v1", "health", "service", name):
                status, payload = 200, self.health(name, query)
            case ("PUT", "v1", "agent", "service", "register") if body and body.get("Name"):
                self.instances[body.get("ID") or body["Name"]] = Instance(body)
                status, payload = 200, None
                self.touch()
            case ("PUT", "v1", "agent", "service", "deregister", service_id):
                found = self.instances.pop(service_id, None)
                status, payload = (200, None) if found else (404, "Unknown service ID")
                self.touch()
            case _:
                status, payload = 400, "Bad request"
        data = b"" if payload is None else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("X-Consul-Index", str(self.index))
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def health(self, name: str, query: dict[str, str]) -> list[dict[str, Any]]:
        if "index" in query:  # a blocking query: hang until the index moves or `wait` is over
            wait = sum(float(n) * UNIT_SECONDS[u] for n, u in GO_DURATION.findall(query["wait"]))
            deadline = time.monotonic() + (wait or 300.0)
            with self.changed:
                while self.index <= int(query["index"]) and time.monotonic() < deadline:
                    self.changed.wait(deadline - time.monotonic())
        passing_only = query.get("passing", "false") not in {"false", "0"}
        return [
            instance.health_entry()
            for instance in list(self.instances.values())
            if instance.registration["Name"] == name
            and (instance.status == "passing" or not passing_only)
        ]
