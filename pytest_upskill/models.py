"""Model names -> :class:`ModelSpec`: built-in aliases, ``[tool.upskill.models.NAME]`` in
pyproject.toml, and inline specs ``PROVIDER:MODEL[@BASE_URL]``.

A spec never holds a secret: only the *name* of the environment variable with the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pytest_upskill.errors import ConfigError

Provider = Literal["anthropic", "openai", "local"]
PROVIDERS: tuple[str, ...] = ("anthropic", "openai", "local")
DEFAULT_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
OFFICIAL_HOSTS = {"anthropic": "api.anthropic.com", "openai": "api.openai.com"}  # where DEFAULT_KEY_ENV's keys go


NO_MODEL = (
    "no model named: pass --upskill-models NAME (e.g. --upskill-models smollm2, the bundled local model) every "
    'time, or name them once in pyproject.toml: [tool.pytest.ini_options] upskill_models = ["smollm2"]'
)


class Prices(NamedTuple):
    """A model's prices in USD per million tokens (None: not given). Cached input is billed at
    ``cache_read`` / ``cache_write`` where given, else at the input price: no discount is assumed."""

    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None

    @property
    def known(self) -> bool:
        return self.input is not None or self.output is not None

    def cost(self, input_tokens: float, output_tokens: float, cache_read: float = 0, cache_write: float = 0) -> float:
        """USD for a request's tokens; ``input_tokens`` is the whole prompt, cached parts included."""
        price_in = self.input or 0.0
        read = price_in if self.cache_read is None else self.cache_read
        write = price_in if self.cache_write is None else self.cache_write
        fresh = max(0.0, input_tokens - cache_read - cache_write)
        return (fresh * price_in + cache_read * read + cache_write * write + output_tokens * (self.output or 0.0)) / 1e6


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the name as the user gave it")
    provider: Provider
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    max_tokens: int = Field(default=1024, ge=1)
    input_price: float | None = Field(default=None, ge=0, description="USD per million input tokens")
    output_price: float | None = Field(default=None, ge=0, description="USD per million output tokens")
    cache_read_price: float | None = Field(
        default=None, ge=0, description="USD per million input tokens read from the prompt cache (default: input_price)"
    )
    cache_write_price: float | None = Field(
        default=None,
        ge=0,
        description="USD per million input tokens written to the prompt cache (default: input_price)",
    )
    seed: int | None = 0
    note: str | None = Field(default=None, description="shown under the model's results")
    chat_template: str | None = Field(
        default=None, description="local models: a Jinja chat template (or a path to one) used instead of the GGUF's"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            hint = f"http://{url}" if "://" not in url else "http://HOST:PORT/v1"
            raise ValueError(f"the base URL {url!r} must start with http:// or https:// and name a host: e.g. {hint}")
        return url

    @property
    def repeats_answers(self) -> bool:
        """At temperature 0 the model gives the same answer to the same request: runs after the
        first repeat it (the plan says so; --upskill-runs auto gives it one run)."""
        return self.temperature == 0

    @property
    def prices(self) -> Prices:
        return Prices(self.input_price, self.output_price, self.cache_read_price, self.cache_write_price)

    @property
    def list_priced(self) -> bool:
        """Its prices are the dated list prices shipped here (not the user's own)."""
        listed = list_prices(self.provider, self.model)
        return bool(listed) and self.official_endpoint and all(getattr(self, k) == v for k, v in listed.items())

    @property
    def key_env(self) -> str | None:
        """The variable whose value is sent as the key: the one the alias names; else the provider's
        own (``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``) only where the requests go to the provider's
        own endpoint. A hosted key never goes to a self-hosted base URL (a teammate's server, a
        shared box, a third party) unless the user named its variable for that model."""
        if self.api_key_env:
            return self.api_key_env
        return DEFAULT_KEY_ENV.get(self.provider) if self.official_endpoint else None

    @property
    def official_endpoint(self) -> bool:
        """The requests go to the provider's own API: no base URL, or ``https://`` to its own host."""
        if self.base_url is None:
            return True
        parts = urlsplit(self.base_url)
        return parts.scheme == "https" and parts.hostname == OFFICIAL_HOSTS.get(self.provider)

    def api_key(self) -> str | None:
        env = self.key_env
        return os.environ.get(env) if env else None

    @property
    def self_hosted(self) -> bool:
        """Served by the user's own machine (an in-process model, or a server at a base URL), which
        may queue requests it cannot serve yet rather than serve them side by side."""
        return self.provider == "local" or self.base_url is not None

    @property
    def needs_key(self) -> bool:
        """A hosted API needs a key; a self-hosted base URL needs one only if the user named its variable."""
        if self.provider == "local":
            return False
        return self.key_env is not None


_ANTHROPIC = {"haiku": "claude-haiku-5-5", "sonnet": "claude-sonnet-5-5", "opus": "claude-opus-5-5"}
_OPENAI = ["gpt-5.5", "gpt-5.4-mini", "gpt-5.4-nano", "gpt-4.1-mini"]

LIST_PRICES_AS_OF = "2026-12-06"
# The providers' standard (not batch) list prices in USD per million tokens, as published on
# platform.claude.com/docs/en/models/*/overview and developers.openai.com/api/docs/pricing on the
# date above: input, output, cache read, cache write (Anthropic's 5-minute write; OpenAI writes free).
# claude-haiku-5-5 is priced for prompts up to 100,000 tokens (5x above). Override any of them in
# [tool.upskill.models.NAME]; a price that changed is a one-line edit here.
LIST_PRICES: dict[tuple[str, str], tuple[float, float, float, float]] = {
    ("anthropic", "claude-opus-5-5"): (4.00, 20.00, 0.20, 5.00),
    ("anthropic", "claude-sonnet-5-5"): (2.00, 10.00, 0.10, 2.50),
    ("anthropic", "claude-haiku-5-5"): (0.10, 0.50, 0.01, 0.125),
    ("openai", "gpt-5.5"): (5.00, 30.00, 0.50, 0.0),
    ("openai", "gpt-5.4-mini"): (0.75, 4.50, 0.075, 0.0),
    ("openai", "gpt-5.4-nano"): (0.20, 1.25, 0.02, 0.0),
    ("openai", "gpt-4.1-mini"): (0.40, 1.60, 0.10, 0.0),
}
_PRICE_FIELDS = ("input_price", "output_price", "cache_read_price", "cache_write_price")


def list_prices(provider: object, model: object) -> dict[str, Any]:
    """The dated list prices of a model on its provider's own API (``{}`` for one not listed).

    Called on a user's table before it is validated, so a provider or model that is not a string
    (``provider = 0``, ``model = []``) is simply not listed; validation then names the bad field.
    """
    if not isinstance(provider, str) or not isinstance(model, str):
        return {}
    return dict(zip(_PRICE_FIELDS, LIST_PRICES.get((provider, model), ()), strict=False))


def price_source(specs: list[ModelSpec]) -> str | None:
    """One line saying which models are costed at the shipped list prices, and how to amend them."""
    listed = [s.name for s in specs if s.list_priced]
    if not listed:
        return None
    return (
        f"prices: the providers' list prices of {LIST_PRICES_AS_OF} for {', '.join(listed)}; to use yours, set "
        "input_price / output_price / cache_read_price / cache_write_price in [tool.upskill.models.NAME]"
    )


BUILTIN_ALIASES: dict[str, dict[str, Any]] = {
    **{alias: {"provider": "anthropic", "model": model} for alias, model in _ANTHROPIC.items()},
    # Current Anthropic and OpenAI reasoning models take no temperature, so none is sent.
    **{model: {"provider": "openai", "model": model, "temperature": None, "seed": None} for model in _OPENAI},
    # In-process GGUF models shipped by PyPI packages (the [local] extra); no key, no server, no download.
    "smollm2": {"provider": "local", "model": "smollm2", "temperature": 0.0, "max_tokens": 256},
    "gemma-270m": {
        "provider": "local",
        "model": "gemma-270m",
        "temperature": 0.0,
        "max_tokens": 256,
        "note": "gemma-270m is a base model with no chat template: it gets a plain-text System/User/Assistant prompt "
        "and follows instructions poorly",
    },
}

_INLINE = re.compile(r"^(?P<provider>[a-z]+):(?P<model>[^@]+?)(?:@(?P<base_url>\S+))?$")
_FIELDS = {
    "provider",
    "model",
    "base_url",
    "api_key_env",
    "temperature",
    "max_tokens",
    "input_price",
    "output_price",
    "cache_read_price",
    "cache_write_price",
    "seed",
    "note",
    "chat_template",
}


def load_user_aliases(pyproject: Path | None) -> dict[str, dict[str, Any]]:
    """``[tool.upskill.models.NAME]`` tables of pyproject.toml (``{}`` when there are none)."""
    if pyproject is None or not pyproject.is_file():
        return {}
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{pyproject}: cannot read [tool.upskill.models]: {exc}") from None
    models: Any = data
    for level in ("tool", "upskill", "models"):
        if not isinstance(models, dict):
            raise ConfigError(
                f"{pyproject}: [tool.upskill.models] must hold one table per alias, e.g. [tool.upskill.models.glm]"
            )
        models = models.get(level, {})
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise ConfigError(
            f"{pyproject}: [tool.upskill.models] must hold one table per alias, e.g. [tool.upskill.models.glm]"
        )
    return models


def split_names(values: list[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``, keeping order and dropping repeats."""
    names: list[str] = []
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if name and name not in names:
                names.append(name)
    return names


def resolve(name: str, user_aliases: dict[str, dict[str, Any]], source: str = "pyproject.toml") -> ModelSpec:
    """One model name -> spec, or :class:`ConfigError` naming what is known."""
    if name in user_aliases:
        fields = dict(user_aliases[name])
        builtin = BUILTIN_ALIASES.get(name, {})
        if all(fields.get(key, builtin.get(key)) == builtin.get(key) for key in ("provider", "model")):
            fields = {**builtin, **fields}  # a table named after a built-in alias amends it (e.g. its prices)
        unknown = set(fields) - _FIELDS
        if unknown:
            raise ConfigError(
                f"[tool.upskill.models.{name}] in {source}: unknown key(s) {sorted(unknown)}; known: {sorted(_FIELDS)}"
            )
        if fields.get("provider") in ("openai", "local"):
            fields.setdefault("temperature", 0.0)
        if fields.get("base_url") is None and "provider" in fields and "model" in fields:
            fields = {**list_prices(fields["provider"], fields["model"]), **fields}
        try:
            return ModelSpec(name=name, **fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = err["ctx"]["error"] if err["type"] == "value_error" else err["msg"]
            raise ConfigError(
                f"[tool.upskill.models.{name}] in {source}: {'.'.join(map(str, err['loc']))}: {msg}"
            ) from None
    if name in BUILTIN_ALIASES:
        fields = BUILTIN_ALIASES[name]
        return ModelSpec(name=name, **list_prices(fields["provider"], fields["model"]), **fields)
    match = _INLINE.match(name)
    if match and match["provider"] in PROVIDERS:
        provider = match["provider"]
        temperature = None if provider == "anthropic" else 0.0
        listed = list_prices(provider, match["model"]) if match["base_url"] is None else {}
        try:
            return ModelSpec(
                name=name,
                provider=provider,  # type: ignore[arg-type]  # the pattern allows only the known providers
                model=match["model"],
                base_url=match["base_url"],
                temperature=temperature,
                **listed,
            )
        except ValidationError as exc:
            raise ConfigError(f"model {name!r}: {exc.errors()[0]['ctx']['error']}") from None
    known = sorted(set(BUILTIN_ALIASES) | set(user_aliases))
    raise ConfigError(
        f"unknown model {name!r}. Known names: {', '.join(known)}. "
        f"Or give a spec PROVIDER:MODEL[@BASE_URL] with PROVIDER one of {', '.join(PROVIDERS)} "
        f"(e.g. openai:my-model@http://127.0.0.1:8080/v1), or define [tool.upskill.models.{name}] in {source}."
    )


def resolve_all(
    names: list[str],
    pyproject: Path | None,
    check_keys: bool = True,
    check_runtime: Callable[[ModelSpec], None] | None = None,
) -> list[ModelSpec]:
    """Resolve every name. With ``check_keys`` (not for --collect-only), check that each model can
    run: ``check_runtime(spec)`` raises ConfigError for a model whose runtime or file is missing
    (providers.check_available: config knows no provider); one error lists every missing API key."""
    aliases = load_user_aliases(pyproject) if names else {}
    specs = [resolve(name, aliases, str(pyproject or "pyproject.toml")) for name in names]
    if check_keys and check_runtime is not None:
        for spec in specs:
            check_runtime(spec)
    missing = [s for s in specs if check_keys and s.needs_key and not s.api_key()]
    if missing:
        lines = [f"  {s.name} ({s.provider}:{s.model}) needs ${s.key_env}" for s in missing]
        raise ConfigError(
            "missing API key(s) for the named model(s):\n"
            + "\n".join(lines)
            + "\nExport the variable(s), or leave those models out of --upskill-models / upskill_models."
        )
    return specs


def node_ids(specs: list[ModelSpec]) -> dict[str, str]:
    """A short, node-id-safe label per model name, unique across the run."""
    labels: dict[str, str] = {}
    for spec in specs:
        base = (
            spec.name
            if spec.name in BUILTIN_ALIASES or _INLINE.match(spec.name) is None
            else f"{spec.provider}-{spec.model}"
        )
        label = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-") or "model"
        candidate, n = label, 2
        while candidate in labels.values():
            candidate, n = f"{label}-{n}", n + 1
        labels[spec.name] = candidate
    return labels
