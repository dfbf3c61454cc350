"""Content-addressed store of model responses, safe with many writers.

The key is the SHA-256 of everything that decides a response: provider, model, base URL, the
full request (system prompt with the skill block, user message, parameters) and the run index.
Never a key or a header: a spec holds only the *name* of its key variable, and that name is
left out too. One response is one file, ``DIR/ab/abcdef....json``, written to a temporary file
in the same folder and renamed into place, so a reader sees a whole entry or none, and a writer
killed mid-write leaves only a stray temporary file. Each entry repeats its key and a checksum
of its content: a truncated, corrupted or misplaced entry is reported, ignored and re-fetched.

A cache restored from another job is untrusted input: every field of an entry is checked as a
fresh reply is (types, whole token counts in range), so a tampered entry cannot crash the run. The
checksum only finds accidents: anyone who can write the cache can write an entry whose answer
passes (the function is in this package). Where ``$UPSKILL_CACHE_SECRET`` is set, every entry is
signed with it (HMAC-SHA256 of its key and checksum) and entries without a valid signature are
refused: a CI that restores caches across trust boundaries (a pull request's job writing the
cache main's job reads) keeps the secret where only trusted jobs have it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from pytest_upskill.files import write_atomic
from pytest_upskill.models import ModelSpec
from pytest_upskill.results.report import first_problem
from pytest_upskill.types import MAX_TOKENS, CacheMode, Completion, Request, ToolCall

MODES = tuple(CacheMode)
FORMAT = 1
SECRET_ENV = "UPSKILL_CACHE_SECRET"  # where set, entries are signed (HMAC-SHA256) and unsigned ones refused
_Count = Annotated[StrictInt, Field(ge=0, le=MAX_TOKENS)]


class _CachedCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: StrictStr
    name: StrictStr
    arguments_json: StrictStr


class _CachedCompletion(BaseModel):
    """An entry's answer, checked like a fresh reply from a provider: a cache written by another
    job is as untrusted as a server (counts are whole numbers in range, the cached part of the
    prompt is not more than the prompt, nothing of another type)."""

    model_config = ConfigDict(extra="forbid")
    text: StrictStr
    input_tokens: _Count
    output_tokens: _Count
    tool_calls: list[_CachedCall] = []
    truncated: StrictBool = False
    cache_read_tokens: _Count = 0
    cache_write_tokens: _Count = 0

    @model_validator(mode="after")
    def _cached_part(self) -> _CachedCompletion:
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError("more cached tokens than input tokens")
        return self


class _Entry(BaseModel):
    key: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
    completion: _CachedCompletion
    checksum: StrictStr
    signature: StrictStr | None = None
    seconds: Annotated[float, Field(ge=0, lt=1e6, allow_inf_nan=False)] | None = None


def cache_key(spec: ModelSpec, request: Request, run: int, salt: str | None = None) -> str:
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
    if salt:  # only where given: every other key stays what it was
        material["salt"] = salt
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
    def __init__(self, root: Path, secret: str | None = None):
        """``secret`` (default: ``$UPSKILL_CACHE_SECRET``): entries are signed with it, and entries
        without its signature are refused (a cache restored from a job that does not hold it)."""
        self.root = Path(root)
        secret = os.environ.get(SECRET_ENV) if secret is None else secret
        self.secret = secret.encode() if secret else None
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
            entry = _Entry.model_validate_json(raw)
            if entry.key != key:
                raise ValueError("entry belongs to another key")
            data = entry.completion.model_dump(exclude_unset=True)
            if entry.checksum != _checksum(data):
                raise ValueError("checksum mismatch")
            if self.secret is not None and not hmac.compare_digest(entry.signature or "", self._sign(key, data)):
                raise ValueError(f"not signed with ${SECRET_ENV}")
            c = entry.completion
            return Completion(
                c.text,
                c.input_tokens,
                c.output_tokens,
                seconds=entry.seconds,
                tool_calls=tuple(ToolCall(t.id, t.name, t.arguments_json) for t in c.tool_calls),
                truncated=c.truncated,
                cache_read_tokens=c.cache_read_tokens,
                cache_write_tokens=c.cache_write_tokens,
            )
        except (ValidationError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if not isinstance(exc, ValidationError) else first_problem(exc, top=None)
            self.problems.append(CacheProblem(path, f"corrupt entry ignored and re-fetched ({reason})"))
            return None

    def _sign(self, key: str, data: dict[str, Any]) -> str:
        assert self.secret is not None
        return hmac.new(self.secret, f"{key}:{_checksum(data)}".encode(), hashlib.sha256).hexdigest()

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
        if self.secret is not None:
            entry["signature"] = self._sign(key, data)
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
            checked = _Entry.model_validate(entry)
            data = checked.completion.model_dump(exclude_unset=True)
            valid = checked.checksum == _checksum(data) and (
                self.secret is None or hmac.compare_digest(checked.signature or "", self._sign(checked.key, data))
            )
        except (ValidationError, ValueError):
            valid = False
        if not valid:
            return False
        key = checked.key
        path = self.path(key)
        if not path.exists():
            if not self.root.exists():
                self._create()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write(path, entry)
        return True

    def _write(self, path: Path, entry: dict[str, Any]) -> None:
        write_atomic(path, json.dumps(entry, ensure_ascii=False))

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
