"""A minimal Hugging Face Hub server on 127.0.0.1 for offline tests of push and download.

It speaks the small part of the Hub HTTP API that ``huggingface_hub`` uses for ``create_repo``,
``upload_folder`` (regular, non-LFS uploads) and ``hf_hub_download`` (HEAD + GET on
``/{repo}/resolve/{revision}/{path}``), keeping repos, branches and commits in memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class HubState:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}  # repo_id -> {"branches": {name: sha}, "commits": {sha: {path: bytes}}}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    state: HubState

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    # -- helpers --------------------------------------------------------------------------------------
    def _send(self, code: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, code: int, obj, headers: dict | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, code: int, error_code: str, message: str, head: bool = False) -> None:
        self._send(code, json.dumps({"error": message}).encode(),
                   {"Content-Type": "application/json", "X-Error-Code": error_code, "X-Error-Message": message},
                   head=head)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # -- routes ---------------------------------------------------------------------------------------
    def do_POST(self) -> None:
        path = unquote(urlparse(self.path).path)
        self.state.requests.append(("POST", path))
        body = self._body()
        if path == "/api/repos/create":
            req = json.loads(body)
            repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            with self.state.lock:
                if repo_id in self.state.repos:  # the Hub answers 409 with the repo's url
                    return self._json(409, {"error": "You already created this model repo",
                                            "url": f"http://{self.headers['Host']}/{repo_id}"},
                                      {"X-Error-Code": "RepoExists"})
                self.state.repos[repo_id] = {"branches": {"main": None}, "commits": {}}
            return self._json(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})
        if path == "/api/validate-yaml":  # README.md front matter check before a commit
            content = json.loads(body).get("content", "")
            if not content.startswith("---\n"):
                return self._json(400, {"errors": [{"message": "README.md has no YAML front matter"}]})
            return self._json(200, {"errors": [], "warnings": []})
        parts = path.split("/")  # /api/models/{owner}/{name}/{preupload|commit}/{revision}
        if len(parts) >= 7 and parts[1] == "api" and parts[2] == "models":
            repo_id, action, revision = f"{parts[3]}/{parts[4]}", parts[5], "/".join(parts[6:])
            repo = self.state.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                  for f in files]})
            if action == "commit":
                return self._commit(repo_id, repo, revision, body)
        return self._error(404, "NotFound", f"no route POST {path}")

    def _commit(self, repo_id: str, repo: dict, revision: str, body: bytes) -> None:
        with self.state.lock:
            parent = repo["branches"].get(revision)
            files = dict(repo["commits"].get(parent, {})) if parent else {}
            for line in body.decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    files.pop(item["value"]["path"], None)
            sha = hashlib.sha1(repr((parent, sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())))
                               .encode()).hexdigest()
            repo["commits"][sha] = files
            repo["branches"][revision] = sha
        host = self.headers["Host"]
        return self._json(200, {"commitUrl": f"http://{host}/{repo_id}/commit/{sha}", "commitOid": sha,
                                "success": True})

    def _resolve(self, head: bool) -> None:
        path = unquote(urlparse(self.path).path)
        self.state.requests.append(("HEAD" if head else "GET", path))
        parts = path.strip("/").split("/")  # {owner}/{name}/resolve/{revision}/{file...}
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(404, "NotFound", f"no route {path}", head=head)
        repo_id, revision, filename = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
        repo = self.state.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head=head)
        sha = repo["branches"].get(revision) or (revision if revision in repo["commits"] else None)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
        content = repo["commits"][sha].get(filename)
        if content is None:
            return self._send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha,
                                         "X-Error-Message": "Entry not found"}, head=head)
        etag = hashlib.sha256(content).hexdigest()
        self._send(200, content, {"X-Repo-Commit": sha, "ETag": f'"{etag}"',
                                  "Content-Type": "application/octet-stream"}, head=head)

    def do_HEAD(self) -> None:
        self._resolve(head=True)

    def do_GET(self) -> None:
        self._resolve(head=False)


class LocalHub:
    """``with LocalHub() as hub: hub.endpoint`` -> "http://127.0.0.1:PORT"."""

    def __init__(self) -> None:
        self.state = HubState()
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
