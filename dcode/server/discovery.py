"""Where running servers are: one record per server, so several can run side by side.

Each `dcode serve` writes `$XDG_RUNTIME_DIR/dcode/servers/<pid>-<port>.json` (0600, in a 0700
directory) and removes only that file when it stops; clients take the newest record whose process
lives and whose /health answers. Stdlib only: `dcode complete` reads this before anything heavy.
"""

from __future__ import annotations

import http.client
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HEALTH_TIMEOUT_S = 0.5
RECORDS_DIR = "servers"


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    host: str
    port: int
    token_required: bool
    model: str | None  # absolute model directory the server loads

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def runtime_dir() -> Path:
    """`$XDG_RUNTIME_DIR/dcode`, else `$XDG_CACHE_HOME/dcode/run` (default ~/.cache/dcode/run)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "dcode"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "dcode" / "run"


def records_dir(create: bool = False) -> Path:
    directory = runtime_dir() / RECORDS_DIR
    if create:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode does not apply to existing directories; the records say where a model runs.
        os.chmod(directory.parent, 0o700)
        os.chmod(directory, 0o700)
    return directory


def record_path(pid: int, port: int, create: bool = False) -> Path:
    return records_dir(create) / f"{pid}-{port}.json"


def write_record(info: ServerInfo) -> Path:
    """Atomically write this server's 0600 record, so a reader never sees half of one."""
    path = record_path(info.pid, info.port, create=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".server-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(info)) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_record(path: Path, pid: int, port: int) -> None:
    """Remove our record; a file another server wrote there (same pid and port after a restart
    cannot both be live) is left alone."""
    info = read_record(path)
    if info is not None and (info.pid, info.port) == (pid, port):
        path.unlink(missing_ok=True)


def read_record(path: Path) -> ServerInfo | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        info = ServerInfo(
            pid=record["pid"], host=record["host"], port=record["port"],
            token_required=bool(record.get("token_required", False)), model=record.get("model"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    valid = (
        isinstance(info.pid, int) and info.pid > 0 and isinstance(info.host, str)
        and isinstance(info.port, int) and 0 < info.port < 65536
        and (info.model is None or isinstance(info.model, str))
    )
    return info if valid else None


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0, ...) would address our whole process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, just not ours to signal
    return True


def request(info: ServerInfo, method: str, path: str, body: bytes | None, headers: dict[str, str],
            timeout: float) -> tuple[int, Any] | None:
    """(status, parsed JSON) or None when the server cannot be reached or answers non-JSON."""
    conn = http.client.HTTPConnection(info.host, info.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read().decode("utf-8"))
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def healthy(info: ServerInfo, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    result = request(info, "GET", "/health", None, {}, timeout)
    return result is not None and result[0] == 200 and isinstance(result[1], dict) and result[1].get("status") == "ok"


def live_servers(timeout: float = HEALTH_TIMEOUT_S) -> Iterator[ServerInfo]:
    """Servers whose process lives and whose /health answers, newest record first."""
    try:
        paths = sorted(records_dir().glob("*.json"), key=_mtime, reverse=True)
    except OSError:
        return
    for path in paths:
        info = read_record(path)
        if info is not None and pid_alive(info.pid) and healthy(info, timeout):
            yield info


def find_server(timeout: float = HEALTH_TIMEOUT_S) -> ServerInfo | None:
    return next(live_servers(timeout), None)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
