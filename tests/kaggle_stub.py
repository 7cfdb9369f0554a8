"""A small HTTP server on 127.0.0.1 that answers like Kaggle's API, for tests of the real `kaggle` client.

The client talks JSON over POST to /api/v1/<Service>/<Method>; with KAGGLE_API_ENVIRONMENT=LOCALHOST its base is
http://localhost, and an HTTP proxy setting pointing here brings every request (uploads and downloads included) to
this server. It records each request, answers from a little state (datasets, kernels, submissions), and stops by
itself after `max_requests` requests or `max_seconds` seconds, whichever comes first.
"""

import http.server
import json
import threading
import time
import urllib.parse

HOST = "127.0.0.1"


class KaggleStub:
    """Recorded requests in `requests`; `fail[method] = (status, body)` forces an answer ("*" for every call)."""

    def __init__(self, user="someone", max_requests=200, max_seconds=120.0):
        self.user = user
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.requests = []
        self.fail = {}
        self.datasets = {}  # "owner/slug" -> status name
        self.kernels = {}  # "owner/slug" -> KernelWorkerStatus name
        self.outputs = {}  # "owner/slug" -> {file name: bytes}
        self.uploads = {}  # upload path -> bytes received by PUT
        self.submissions = []
        self.scores = {}  # submission ref -> public score text, shown by ListSubmissions
        self.gpu_used_s, self.gpu_total_s = 36000.0, 108000.0  # this week's GPU quota: 10 h used of 30 h
        self._server = None
        self._thread = None
        self._stopped = threading.Event()

    @property
    def url(self):
        """The proxy URL to give the client: http://127.0.0.1:<port>."""
        return f"http://{HOST}:{self._server.server_address[1]}"

    def calls(self, method=None):
        """The recorded API calls (method name and JSON body), optionally only those of one method."""
        return [r for r in self.requests if r["method"] and (method is None or r["method"] == method)]

    def start(self):
        """Bind a free loopback port and serve in a background thread until stopped or a limit is reached."""
        stub = self

        class Handler(_Handler):
            owner = stub

        self._server = http.server.HTTPServer((HOST, 0), Handler)
        self._server.timeout = 0.05
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self):
        deadline = time.monotonic() + self.max_seconds
        while not self._stopped.is_set() and time.monotonic() < deadline and len(self.requests) < self.max_requests:
            self._server.handle_request()
        self._server.server_close()

    def wait(self, timeout):
        """Wait up to `timeout` seconds for the server to stop; True when it has."""
        self._thread.join(timeout=timeout)
        return not self._thread.is_alive()

    def stop(self):
        """Stop serving and close the port."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- answers, one per API method: (status, JSON-able body) ----

    def answer(self, method, body):
        """The stub's answer to one API call."""
        forced = self.fail.get(method) or self.fail.get("*")
        if forced:
            return forced
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            return 404, {"code": 404, "message": f"stub has no {method}"}
        return handler(body)

    def _IntrospectToken(self, body):
        return 200, {"active": True, "username": self.user}

    def _GetDatasetStatus(self, body):
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        if ref not in self.datasets:
            return 404, {"code": 404, "message": f"dataset {ref} not found"}
        return 200, {"status": self.datasets[ref]}

    def _StartBlobUpload(self, body):
        n = len(self.uploads) + 1
        return 200, {"token": f"blob-token-{n}", "createUrl": f"http://localhost/upload/blob-{n}"}

    def _CreateDataset(self, body):
        ref = f"{body['ownerSlug']}/{body['slug']}"
        self.datasets[ref] = "READY"
        return 200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok"}

    def _CreateDatasetVersion(self, body):
        ref = f"{body['ownerSlug']}/{body['datasetSlug']}"
        return 200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok"}

    def _SaveKernel(self, body):
        ref = body["slug"]
        self.kernels.setdefault(ref, "QUEUED")
        version = sum(1 for r in self.calls("SaveKernel") if r["body"].get("slug") == ref)
        return 200, {"ref": f"/code/{ref}", "url": f"https://www.kaggle.com/code/{ref}", "versionNumber": version}

    def _GetKernelSessionStatus(self, body):
        ref = f"{body['userName']}/{body['kernelSlug']}"
        if ref not in self.kernels:
            return 404, {"code": 404, "message": f"kernel {ref} not found"}
        return 200, {"status": self.kernels[ref]}

    def _ListKernelSessionOutput(self, body):
        ref = f"{body['userName']}/{body['kernelSlug']}"
        names = self.outputs.get(ref, {})
        files = [{"fileName": name, "url": f"http://localhost/output/{ref}/{name}"} for name in names]
        return 200, {"files": files, "log": "[]"}

    def _GetAcceleratorQuotaStatistics(self, body):
        return 200, {"quotaRefreshTime": "2026-12-05T00:00:00Z",
                     "gpuQuota": {"timeUsed": f"{self.gpu_used_s}s", "totalTimeAllowed": f"{self.gpu_total_s}s"},
                     "tpuQuota": {"timeUsed": "0s", "totalTimeAllowed": "72000s"}}

    def _StartSubmissionUpload(self, body):
        n = len(self.uploads) + 1
        return 200, {"token": f"submission-token-{n}", "createUrl": f"http://localhost/upload/submission-{n}"}

    def _CreateSubmission(self, body):
        ref = 50000 + len(self.submissions) + 1
        self.submissions.append({"ref": ref, "description": body.get("submissionDescription", ""),
                                 "token": body.get("blobFileTokens")})
        return 200, {"message": "Successfully submitted to Paddy Doctor", "ref": ref}

    def _ListSubmissions(self, body):
        listed = [{"ref": s["ref"], "description": s["description"], "fileName": "submission.csv",
                   "status": "COMPLETE" if s["ref"] in self.scores else "PENDING",
                   "publicScore": self.scores.get(s["ref"], "")} for s in reversed(self.submissions)]
        return 200, {"submissions": listed}


class _Handler(http.server.BaseHTTPRequestHandler):
    owner = None  # set on a subclass per stub

    def log_message(self, *args):  # keep test output clean
        pass

    def _record(self, method=""):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urllib.parse.urlsplit(self.path).path
        body = {}
        if method:
            body = json.loads(raw or b"{}")
        self.owner.requests.append({"verb": self.command, "path": path, "method": method, "body": body, "raw": raw,
                                    "authorization": self.headers.get("Authorization", "")})
        return path, body, raw

    def _send(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        method = path.rstrip("/").rsplit("/", 1)[-1] if path.startswith("/api/v1/") else ""
        _, body, _ = self._record(method or "?")
        self._send(*self.owner.answer(method, body))

    def do_PUT(self):
        path, _, raw = self._record()
        self.owner.uploads[path] = raw
        self._send(200, {})

    def do_GET(self):
        path, _, _ = self._record()
        prefix = "/output/"
        if path.startswith(prefix):
            owner, slug, name = path[len(prefix):].split("/", 2)
            data = self.owner.outputs.get(f"{owner}/{slug}", {}).get(name)
            if data is not None:
                self._send(200, data, "application/octet-stream")
                return
        self._send(404, {"code": 404, "message": "no such file"})

    def do_CONNECT(self):  # an https request through the proxy: never go on to the internet
        self._record()
        self._send(403, {"code": 403, "message": "the stub refuses CONNECT"})
