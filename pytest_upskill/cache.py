"""Content-addressed store of model responses, safe with many writers.

The key is the SHA-256 of everything that decides a response: provider, model, base URL, the
full request (system prompt with the skill block, user message, parameters) and the run index.
Never a key or a header: a spec holds only the *name* of its key variable, and that name is
left out too. One response is one file, ``DIR/ab/abcdef....json``, written to a temporary file
in the same folder and renamed into place, so a reader sees a whole entry or none, and a writer
killed mid-write leaves only a stray temporary file. Each entry repeats its key and a checksum
of its content: a truncated, corrupted or misplaced entry is reported, ignored and re-fetched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import ModelSpec
from .core import Completion, Request, ToolCall

MODES = ("rw", "off", "replay")
FORMAT = 1


def cache_key(spec: ModelSpec, request: Request, run: int) -> str:
    material = {
        "format": FORMAT,
        "provider": spec.provider,
        "model": spec.model,
        "base_url": spec.base_url,
        "request": _request_material(request),
        "run": run,
    }
    if spec.chat_template:  # it decides what a local model sees
        material["chat_template"] = spec.chat_template
    return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _request_material(request: Request) -> dict[str, Any]:
    """The request as data; the conversation fields only when used, so that the keys of plain
    requests stay those of earlier versions (a committed cache keeps working)."""
    material = asdict(request)
    for name in ("tools", "history", "tool_choice", "output"):
        if not material.get(name):
            material.pop(name, None)
    return material


def _checksum(completion: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(completion, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class CacheProblem:
    path: Path
    reason: str


class ResponseCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.problems: list[CacheProblem] = []
        # the entries this process wrote, kept to hand to xdist's controller where its cache is
        # another folder (a remote worker: --tx socket=/ssh=); None: not kept
        self.written: list[dict[str, Any]] | None = None

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        path = self.path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.problems.append(CacheProblem(path, f"unreadable: {exc.strerror or exc}"))
            return None
        try:
            entry = json.loads(raw)
            completion = entry["completion"]
            if entry.get("key") != key:
                raise ValueError("entry belongs to another key")
            if entry.get("checksum") != _checksum(completion):
                raise ValueError("checksum mismatch")
            calls = tuple(
                ToolCall(str(c["id"]), str(c["name"]), str(c["arguments_json"]))
                for c in completion.get("tool_calls") or ()
            )
            seconds = entry.get("seconds")
            return Completion(
                str(completion["text"]),
                int(completion["input_tokens"]),
                int(completion["output_tokens"]),
                seconds=float(seconds) if isinstance(seconds, (int, float)) and 0 <= seconds < 1e6 else None,
                tool_calls=calls,
                truncated=completion.get("truncated") is True,
                cache_read_tokens=int(completion.get("cache_read_tokens") or 0),
                cache_write_tokens=int(completion.get("cache_write_tokens") or 0),
            )
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            self.problems.append(CacheProblem(path, f"corrupt entry ignored and re-fetched ({exc})"))
            return None

    def put(self, key: str, completion: Completion) -> None:
        if not self.root.exists():
            self._create()
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in asdict(completion).items() if k != "seconds"}  # timing is not part of the answer
        for optional in ("tool_calls", "truncated", "cache_read_tokens", "cache_write_tokens"):
            if not data[optional]:
                del data[optional]  # entries of plain, complete answers stay as they were
        entry: dict[str, Any] = {"key": key, "completion": data, "checksum": _checksum(data)}
        if completion.seconds is not None:
            entry["seconds"] = round(
                completion.seconds, 4
            )  # the model's time when the answer was made, shown for cached trials
        if self.written is not None:
            self.written.append(entry)
        self._write(path, entry)

    def add_entry(self, entry: Any) -> bool:
        """An entry another process wrote (a remote xdist worker's), written here unless this cache
        has the key already; False for one that is not an entry (its checksum does not match)."""
        try:
            key, data = str(entry["key"]), entry["completion"]
            valid = re.fullmatch(r"[0-9a-f]{64}", key) is not None and entry.get("checksum") == _checksum(data)
        except (TypeError, KeyError, ValueError):
            valid = False
        if not valid:
            return False
        path = self.path(key)
        if not path.exists():
            if not self.root.exists():
                self._create()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write(path, entry)
        return True

    def _write(self, path: Path, entry: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def create(self) -> None:
        """Make the folder now, before the first request (see _create); OSError when it cannot be."""
        self._create()

    def _create(self) -> None:
        """Make the folder. The process that creates it writes a .gitignore (as .pytest_cache
        has), which a user who commits the cache as a CI fixture deletes: it is not written again."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.root.mkdir()
        except FileExistsError:
            return
        (self.root / ".gitignore").write_text(
            "# pytest-upskill response cache: delete this file to commit the cache\n*\n"
        )
