"""End-to-end check: the official `openai` and `anthropic` Python SDKs talking to Causeway,
which talks to fake upstreams (`mock-provider`).

Everything runs on ephemeral loopback ports in a temporary directory. Processes are
synchronised on the "listening on http://..." line they print, never on sleeps.

Upstreams (one mock-provider process each):
  openai    -> mock answering OPENAI_TEXT
  anthropic -> mock answering ANTHROPIC_TEXT (distinct text, so we can tell who answered)
  groq, anthropic-ratelimited (custom, Anthropic family) -> mock answering every call with 429
  mistral   -> mock answering every call with 500
  deepseek, anthropic-streambreak (custom, Anthropic family)
            -> mock whose streams break after BROKEN_AFTER content chunks

Binaries come from $CAUSEWAY_BIN / $MOCK_PROVIDER_BIN, defaulting to
${CARGO_TARGET_DIR:-~/.cache/causeway-target}/debug/{causeway,mock-provider}.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import anthropic
import openai
import pytest

# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "causeway-target")
CAUSEWAY_BIN = os.environ.get("CAUSEWAY_BIN") or str(TARGET_DIR / "debug" / "causeway")
MOCK_PROVIDER_BIN = os.environ.get("MOCK_PROVIDER_BIN") or str(TARGET_DIR / "debug" / "mock-provider")
START_TIMEOUT = float(os.environ.get("E2E_START_TIMEOUT", "60"))
REQUEST_TIMEOUT = float(os.environ.get("E2E_REQUEST_TIMEOUT", "30"))

OPENAI_TEXT = "Hello from the OpenAI mock, via Causeway"
ANTHROPIC_TEXT = "Greetings from the Anthropic mock, relayed intact"
BROKEN_TEXT = "This stream is going to break part way through, sorry"
STREAM_CHUNKS = 5
BROKEN_CHUNKS = 6
BROKEN_AFTER = 2

OPENAI_MODEL = "openai/gpt-4o-mini"
ANTHROPIC_MODEL = "anthropic/claude-3-5-haiku-latest"
RATE_LIMITED_MODEL = "groq/llama-3.1-8b-instant"
RATE_LIMITED_ANTHROPIC_MODEL = "anthropic-ratelimited/claude-3-5-haiku-latest"
SERVER_ERROR_MODEL = "mistral/mistral-small-latest"
BROKEN_STREAM_MODEL = "deepseek/deepseek-chat"
BROKEN_STREAM_ANTHROPIC_MODEL = "anthropic-streambreak/claude-3-5-haiku-latest"
BROKEN_STREAM_MODELS = [BROKEN_STREAM_MODEL, BROKEN_STREAM_ANTHROPIC_MODEL]

# Text each routable model answers with, and the mock's token count (whitespace words).
EXPECTED_TEXT = {OPENAI_MODEL: OPENAI_TEXT, ANTHROPIC_MODEL: ANTHROPIC_TEXT}


def words(text: str) -> int:
    return len(text.split())


WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
# What mock-provider "calls" every tool with.
MOCK_TOOL_INPUT = {"mock": True}

USER_HI = [{"role": "user", "content": "Say hello in one short sentence."}]

# --------------------------------------------------------------------------------------------
# Process management
# --------------------------------------------------------------------------------------------

LISTENING = re.compile(r"listening on (http://\S+)")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """On Linux, have the child get SIGTERM if the test process dies without cleaning up."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


class Proc:
    """A child process whose stdout is drained by a thread; stderr goes to a log file."""

    def __init__(self, name: str, argv: list[str], log_dir: Path):
        self.name = name
        self.argv = argv
        self.stderr_path = log_dir / f"{name}.stderr.log"
        self._stderr = open(self.stderr_path, "wb")
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stdout_lines: list[str] = []
        try:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                bufsize=1,
                preexec_fn=_die_with_parent if os.name == "posix" else None,
            )
        except OSError as e:
            self._stderr.close()
            raise RuntimeError(f"cannot start {name} ({argv[0]}): {e}") from e
        threading.Thread(target=self._drain, name=f"{name}-stdout", daemon=True).start()

    def _drain(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.stdout_lines.append(line.rstrip("\n"))
            self._lines.put(line)
        self._lines.put(None)  # EOF

    def wait_listening(self, timeout: float = START_TIMEOUT) -> str:
        """Blocks until the process prints its "listening on URL" line; returns URL."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise RuntimeError(f"{self.name} did not report listening within {timeout}s\n{self.diagnostics()}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.popen.wait(timeout=5)
                raise RuntimeError(
                    f"{self.name} exited (code {self.popen.returncode}) before listening\n{self.diagnostics()}"
                )
            m = LISTENING.search(line)
            if m:
                return m.group(1).rstrip("/")

    def diagnostics(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        try:
            err = self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            err = ""
        return f"--- {self.name} argv: {self.argv}\n--- stdout:\n" + "\n".join(self.stdout_lines[-20:]) + f"\n--- stderr (tail):\n{err}"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._stderr.close()


class Stack:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="causeway-e2e-"))
        self.procs: list[Proc] = []
        self.url = ""

    def start_mock(self, name: str, *flags: str) -> str:
        proc = Proc(f"mock-{name}", [MOCK_PROVIDER_BIN, "--host", "127.0.0.1", "--port", "0", *flags], self.tmp)
        self.procs.append(proc)
        return proc.wait_listening()

    def start(self) -> None:
        for binary in (CAUSEWAY_BIN, MOCK_PROVIDER_BIN):
            if not os.access(binary, os.X_OK):
                raise RuntimeError(f"binary not found or not executable: {binary} (set CAUSEWAY_BIN / MOCK_PROVIDER_BIN)")
        chunks = ["--stream-chunks", str(STREAM_CHUNKS)]
        openai_url = self.start_mock("openai", "--content", OPENAI_TEXT, *chunks)
        anthropic_url = self.start_mock("anthropic", "--content", ANTHROPIC_TEXT, *chunks)
        limited_url = self.start_mock("ratelimited", "--failure-rate", "1", "--failure-status", "429")
        broken_url = self.start_mock("servererror", "--failure-rate", "1", "--failure-status", "500")
        streambreak_url = self.start_mock(
            "streambreak",
            "--content", BROKEN_TEXT,
            "--stream-chunks", str(BROKEN_CHUNKS),
            "--stream-fail-after", str(BROKEN_AFTER),
        )

        def provider(base_url: str, key: str, **extra: object) -> dict:
            return {
                "keys": [{"name": f"{key}-key", "value": key, "models": ["*"], "weight": 1}],
                "network_config": {"base_url": base_url, "max_retries": 0},
                **extra,
            }

        config = {
            "providers": {
                "openai": provider(openai_url, "sk-test-openai-aaaaaaaaaaaa"),
                "anthropic": provider(anthropic_url, "sk-ant-test-aaaaaaaaaaaa"),
                "groq": provider(limited_url, "gsk-test-aaaaaaaaaaaa"),
                "anthropic-ratelimited": provider(
                    limited_url,
                    "sk-ant-test-limited-aaaaaaaa",
                    custom_provider_config={"base_provider_type": "anthropic"},
                ),
                "mistral": provider(broken_url, "mistral-test-aaaaaaaaaaaa"),
                "deepseek": provider(streambreak_url, "sk-deepseek-test-aaaaaaaa"),
                "anthropic-streambreak": provider(
                    streambreak_url,
                    "sk-ant-test-streambreak-aaaa",
                    custom_provider_config={"base_provider_type": "anthropic"},
                ),
            }
        }
        config_path = self.tmp / "config.json"
        config_path.write_text(json.dumps(config, indent=2))
        gateway = Proc(
            "causeway",
            [
                CAUSEWAY_BIN,
                "--app-dir", str(self.tmp / "app"),
                "--port", "0",
                "--config", str(config_path),
                "--log-level", "warn",
            ],
            self.tmp,
        )
        self.procs.append(gateway)
        self.url = gateway.wait_listening()

    def diagnostics(self) -> str:
        return "\n".join(p.diagnostics() for p in self.procs)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if os.environ.get("E2E_KEEP_TMP"):
            print(f"\nkept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(request):
    s = Stack()
    try:
        s.start()
    except BaseException:
        s.stop()
        raise
    yield s
    if request.session.testsfailed:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("-", "process logs (tails)")
            reporter.write_line(s.diagnostics())
    s.stop()


@pytest.fixture(scope="session")
def oai(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="sk-e2e-client", max_retries=0, timeout=REQUEST_TIMEOUT)


@pytest.fixture(scope="session", params=["/v1", "/openai/v1"])
def oai_any(stack, request) -> openai.OpenAI:
    """The OpenAI SDK pointed at each of the gateway's OpenAI mounts."""
    return openai.OpenAI(
        base_url=f"{stack.url}{request.param}", api_key="sk-e2e-client", max_retries=0, timeout=REQUEST_TIMEOUT
    )


@pytest.fixture(scope="session")
def ant(stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{stack.url}/anthropic", api_key="sk-ant-e2e-client", max_retries=0, timeout=REQUEST_TIMEOUT
    )


# --------------------------------------------------------------------------------------------
# OpenAI SDK
# --------------------------------------------------------------------------------------------


def assert_usage(usage, completion_tokens: int) -> None:
    assert usage is not None, "usage missing"
    assert usage.prompt_tokens >= 1
    assert usage.completion_tokens == completion_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def collect_chat_stream(stream) -> tuple[str, list]:
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


@pytest.mark.parametrize("model", [OPENAI_MODEL, ANTHROPIC_MODEL])
def test_openai_chat(oai_any, model):
    r = oai_any.chat.completions.create(model=model, messages=USER_HI)
    expected = EXPECTED_TEXT[model]
    assert r.object == "chat.completion"
    assert len(r.choices) == 1
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == expected
    assert r.choices[0].finish_reason == "stop"
    assert_usage(r.usage, words(expected))


@pytest.mark.parametrize("model", [OPENAI_MODEL, ANTHROPIC_MODEL])
def test_openai_chat_stream(oai_any, model):
    expected = EXPECTED_TEXT[model]
    text, chunks = collect_chat_stream(oai_any.chat.completions.create(model=model, messages=USER_HI, stream=True))
    assert text == expected
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= 2, f"expected several content chunks, got {len(content_chunks)}"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


@pytest.mark.parametrize("model", [OPENAI_MODEL, ANTHROPIC_MODEL])
def test_openai_chat_stream_include_usage(oai_any, model):
    expected = EXPECTED_TEXT[model]
    text, chunks = collect_chat_stream(
        oai_any.chat.completions.create(
            model=model, messages=USER_HI, stream=True, stream_options={"include_usage": True}
        )
    )
    assert text == expected
    last = chunks[-1]
    assert last.choices == [], f"usage chunk should have no choices: {last}"
    assert_usage(last.usage, words(expected))
    assert all(c.usage is None for c in chunks[:-1]), "only the last chunk should carry usage"


def test_openai_text_completion(oai_any):
    r = oai_any.completions.create(model="openai/gpt-3.5-turbo-instruct", prompt="Say hello", max_tokens=20)
    assert r.object == "text_completion"
    assert r.choices[0].text == OPENAI_TEXT
    assert r.choices[0].finish_reason == "stop"
    assert_usage(r.usage, words(OPENAI_TEXT))


def test_openai_text_completion_stream(oai):
    stream = oai.completions.create(model="openai/gpt-3.5-turbo-instruct", prompt="Say hello", stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == OPENAI_TEXT
    assert sum(1 for c in chunks if c.choices and c.choices[0].text) >= 2


@pytest.mark.parametrize("encoding_format", ["float", None])
def test_openai_embeddings(oai_any, encoding_format):
    kwargs = {"encoding_format": encoding_format} if encoding_format else {}
    r = oai_any.embeddings.create(
        model="openai/text-embedding-3-small", input=["first input text", "second"], **kwargs
    )
    assert [d.index for d in r.data] == [0, 1]
    for d in r.data:
        assert len(d.embedding) == 8
        assert all(isinstance(x, float) for x in d.embedding)
    assert r.data[0].embedding != r.data[1].embedding
    assert r.usage.prompt_tokens == 4


def test_openai_models_list(oai_any):
    ids = [m.id for m in oai_any.models.list()]
    assert OPENAI_MODEL in ids, ids
    assert any(i.startswith("openai/") for i in ids), ids
    assert any(i.startswith("anthropic/") for i in ids), ids
    assert all("/" in i for i in ids), ids


@pytest.mark.parametrize("model", [OPENAI_MODEL, ANTHROPIC_MODEL])
def test_openai_tools(oai, model):
    r = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tools=[WEATHER_TOOL_OPENAI],
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1, choice.message
    assert calls[0].type == "function"
    assert calls[0].id
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == MOCK_TOOL_INPUT

    # Second leg: hand the tool result back; without tools the mock answers with text.
    follow = oai.chat.completions.create(
        model=model,
        messages=[
            {"role": "user", "content": "What's the weather in Paris?"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp_c": 21}'},
        ],
    )
    assert follow.choices[0].message.content == EXPECTED_TEXT[model]


@pytest.mark.parametrize("model", [OPENAI_MODEL, ANTHROPIC_MODEL])
def test_openai_tools_stream(oai, model):
    stream = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tools=[WEATHER_TOOL_OPENAI],
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for tc in delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert list(calls) == [0], calls
    assert calls[0]["id"]
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == MOCK_TOOL_INPUT
    assert finish == "tool_calls"


@pytest.mark.parametrize(
    "primary,fallback",
    [
        (SERVER_ERROR_MODEL, OPENAI_MODEL),
        (RATE_LIMITED_MODEL, ANTHROPIC_MODEL),
    ],
)
def test_openai_fallbacks(oai, primary, fallback):
    r = oai.chat.completions.create(model=primary, messages=USER_HI, extra_body={"fallbacks": [fallback]})
    assert r.choices[0].message.content == EXPECTED_TEXT[fallback]


def test_openai_fallbacks_chain_stream(oai):
    """Two failing targets, then a working one; streamed."""
    stream = oai.chat.completions.create(
        model=SERVER_ERROR_MODEL,
        messages=USER_HI,
        stream=True,
        extra_body={"fallbacks": [RATE_LIMITED_MODEL, ANTHROPIC_MODEL]},
    )
    text, _ = collect_chat_stream(stream)
    assert text == ANTHROPIC_TEXT


@pytest.mark.parametrize("model", ["gpt-4o-mini", "nosuchprovider/gpt-4o-mini"])
def test_openai_bad_model(oai, model):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=model, messages=USER_HI)
    assert info.value.status_code == 400
    assert isinstance(info.value.body, dict) and info.value.body.get("message"), info.value.body


@pytest.mark.parametrize("stream", [False, True])
def test_openai_upstream_429(oai, stream):
    with pytest.raises(openai.RateLimitError) as info:
        r = oai.chat.completions.create(model=RATE_LIMITED_MODEL, messages=USER_HI, stream=stream)
        if stream:
            list(r)
    assert info.value.status_code == 429


@pytest.mark.parametrize("stream", [False, True])
def test_openai_upstream_500(oai, stream):
    with pytest.raises(openai.APIStatusError) as info:
        r = oai.chat.completions.create(model=SERVER_ERROR_MODEL, messages=USER_HI, stream=stream)
        if stream:
            list(r)
    assert info.value.status_code >= 500
    assert isinstance(info.value, openai.InternalServerError)
    assert "injected failure" in str(info.value.message), "upstream's error message should be surfaced"


@pytest.mark.parametrize("model", BROKEN_STREAM_MODELS)
def test_openai_stream_breaks_midway(oai, model):
    stream = oai.chat.completions.create(model=model, messages=USER_HI, stream=True)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    text = "".join(received)
    # The content chunks sent before the break reached the client...
    assert received, "no content arrived before the break"
    assert BROKEN_TEXT.startswith(text) and text != BROKEN_TEXT, text
    # ...and the break arrived as the gateway's SSE error event, not as a dropped connection.
    assert not isinstance(info.value, openai.APIConnectionError), f"connection dropped instead of error event: {info.value!r}"
    assert info.value.message and info.value.message != "An error occurred during streaming", info.value.body


# --------------------------------------------------------------------------------------------
# Anthropic SDK
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [ANTHROPIC_MODEL, OPENAI_MODEL])
def test_anthropic_messages_create(ant, model):
    expected = EXPECTED_TEXT[model]
    m = ant.messages.create(model=model, max_tokens=64, messages=USER_HI)
    assert m.type == "message"
    assert m.role == "assistant"
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == expected
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens >= 1
    assert m.usage.output_tokens == words(expected)


@pytest.mark.parametrize("model", [ANTHROPIC_MODEL, OPENAI_MODEL])
def test_anthropic_messages_system_prompt(ant, model):
    m = ant.messages.create(model=model, max_tokens=64, system="You are terse.", messages=USER_HI)
    assert m.content[0].text == EXPECTED_TEXT[model]


@pytest.mark.parametrize("model", [ANTHROPIC_MODEL, OPENAI_MODEL])
def test_anthropic_messages_stream(ant, model):
    expected = EXPECTED_TEXT[model]
    with ant.messages.stream(model=model, max_tokens=64, messages=USER_HI) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == expected
    assert len([p for p in pieces if p]) >= 2, pieces
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == expected
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == words(expected)
    assert final.usage.input_tokens >= 1


@pytest.mark.xfail(
    strict=True,
    reason="known limitation: /anthropic streams are translated through OpenAI chunks, which carry "
    "usage only at the end, so message_start reports 0 input tokens; the real count arrives in "
    "message_delta (which the SDK's get_final_message uses). Fix: native Anthropic pass-through.",
)
def test_anthropic_stream_message_start_usage(ant):
    """Anthropic -> Anthropic: message_start carries the prompt's input_tokens, as the real API
    sends them (mock-provider does); clients that read usage at message_start depend on it."""
    with ant.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64, messages=USER_HI) as stream:
        events = list(stream)
        final = stream.get_final_message()
    starts = [e for e in events if e.type == "message_start"]
    assert len(starts) == 1
    assert final.usage.input_tokens >= 1
    assert starts[0].message.usage.input_tokens == final.usage.input_tokens, starts[0].message.usage


@pytest.mark.parametrize("model", BROKEN_STREAM_MODELS)
def test_anthropic_stream_breaks_midway(ant, model):
    received = []
    with pytest.raises(anthropic.APIError) as info:
        with ant.messages.stream(model=model, max_tokens=64, messages=USER_HI) as stream:
            for piece in stream.text_stream:
                received.append(piece)
    text = "".join(received)
    assert received and BROKEN_TEXT.startswith(text) and text != BROKEN_TEXT, text
    # The gateway ends the stream with an `event: error`, which the SDK raises as a status error.
    assert isinstance(info.value, anthropic.APIStatusError), f"expected an error event, got {info.value!r}"
    body = info.value.body
    assert isinstance(body, dict) and body.get("type") == "error", body
    assert body["error"].get("message"), body


@pytest.mark.parametrize("model", [ANTHROPIC_MODEL, OPENAI_MODEL])
def test_anthropic_tool_use_round(ant, model):
    question = {"role": "user", "content": "What's the weather in Paris?"}
    m = ant.messages.create(model=model, max_tokens=64, messages=[question], tools=[WEATHER_TOOL_ANTHROPIC])
    assert m.stop_reason == "tool_use"
    uses = [b for b in m.content if b.type == "tool_use"]
    assert len(uses) == 1, m.content
    assert uses[0].name == "get_weather"
    assert uses[0].input == MOCK_TOOL_INPUT
    assert uses[0].id

    # Second leg: return the tool result (no tools offered, so the mock answers with text).
    follow = ant.messages.create(
        model=model,
        max_tokens=64,
        messages=[
            question,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "21 degrees C"}],
            },
        ],
    )
    assert follow.stop_reason == "end_turn"
    assert follow.content[0].text == EXPECTED_TEXT[model]


@pytest.mark.parametrize("model", [ANTHROPIC_MODEL, OPENAI_MODEL])
def test_anthropic_tool_use_stream(ant, model):
    with ant.messages.stream(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tools=[WEATHER_TOOL_ANTHROPIC],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert len(uses) == 1, final.content
    assert uses[0].name == "get_weather"
    assert uses[0].input == MOCK_TOOL_INPUT


@pytest.mark.parametrize("model", ["claude-3-5-haiku-latest", "nosuchprovider/claude-3-5-haiku-latest"])
def test_anthropic_bad_model(ant, model):
    with pytest.raises(anthropic.BadRequestError) as info:
        ant.messages.create(model=model, max_tokens=64, messages=USER_HI)
    assert info.value.status_code == 400
    assert info.value.message


@pytest.mark.parametrize("model", [RATE_LIMITED_ANTHROPIC_MODEL, RATE_LIMITED_MODEL])
def test_anthropic_upstream_429(ant, model):
    with pytest.raises(anthropic.RateLimitError) as info:
        ant.messages.create(model=model, max_tokens=64, messages=USER_HI)
    assert info.value.status_code == 429


def test_anthropic_upstream_429_stream(ant):
    with pytest.raises(anthropic.RateLimitError) as info:
        with ant.messages.stream(model=RATE_LIMITED_ANTHROPIC_MODEL, max_tokens=64, messages=USER_HI) as stream:
            stream.get_final_message()
    assert info.value.status_code == 429


# --------------------------------------------------------------------------------------------
# Virtual keys (governance): the SDKs' own api_key carries an sk-bf- key
# --------------------------------------------------------------------------------------------


def api(stack, method: str, path: str, body: dict | None = None) -> dict:
    """Calls the management API (open to loopback clients: the stack configures no auth)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{stack.url}{path}", data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as resp:
        return json.loads(resp.read())


def create_virtual_key(stack, name: str, request_max_limit: int) -> str:
    created = api(
        stack,
        "POST",
        "/api/governance/virtual-keys",
        {
            "name": name,
            "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"]}],
            "rate_limit": {"request_max_limit": request_max_limit, "request_reset_duration": "1h"},
        },
    )
    assert created["message"] == "Virtual key created successfully"
    value = created["virtual_key"]["value"]
    assert value.startswith("sk-bf-")
    # Shown once: reading the key back gives a masked value.
    shown = api(stack, "GET", f"/api/governance/virtual-keys/{created['virtual_key']['id']}")
    assert shown["virtual_key"]["value"] != value
    return value


def test_openai_virtual_key(stack):
    value = create_virtual_key(stack, "e2e-openai-sdk", request_max_limit=3)
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=value, max_retries=0, timeout=REQUEST_TIMEOUT)

    # An allowed model works, plain and streamed (requests 1 and 2 of 3).
    r = client.chat.completions.create(model=OPENAI_MODEL, messages=USER_HI)
    assert r.choices[0].message.content == OPENAI_TEXT
    text, _ = collect_chat_stream(client.chat.completions.create(model=OPENAI_MODEL, messages=USER_HI, stream=True))
    assert text == OPENAI_TEXT

    # A model the key does not allow: 403, and it does not use up a request.
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model="openai/gpt-4o", messages=USER_HI)
    assert info.value.status_code == 403
    assert info.value.body["type"] == "model_blocked", info.value.body
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model=ANTHROPIC_MODEL, messages=USER_HI)
    assert info.value.body["type"] == "provider_blocked", info.value.body

    # Request 3 passes; the 4th is over the key's limit.
    client.chat.completions.create(model=OPENAI_MODEL, messages=USER_HI)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=OPENAI_MODEL, messages=USER_HI)
    assert info.value.status_code == 429
    assert info.value.body["type"] == "request_limited", info.value.body
    assert int(info.value.response.headers["retry-after"]) >= 1

    # A key the gateway never issued.
    stranger = openai.OpenAI(
        base_url=f"{stack.url}/v1", api_key="sk-bf-" + "x" * 43, max_retries=0, timeout=REQUEST_TIMEOUT
    )
    with pytest.raises(openai.PermissionDeniedError) as info:
        stranger.chat.completions.create(model=OPENAI_MODEL, messages=USER_HI)
    assert info.value.body["type"] == "virtual_key_not_found", info.value.body


def test_anthropic_virtual_key(stack):
    value = create_virtual_key(stack, "e2e-anthropic-sdk", request_max_limit=1)
    client = anthropic.Anthropic(base_url=f"{stack.url}/anthropic", api_key=value, max_retries=0, timeout=REQUEST_TIMEOUT)
    m = client.messages.create(model=OPENAI_MODEL, max_tokens=64, messages=USER_HI)
    assert m.content[0].text == OPENAI_TEXT
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        client.messages.create(model="openai/gpt-4o", max_tokens=64, messages=USER_HI)
    assert info.value.status_code == 403
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model=OPENAI_MODEL, max_tokens=64, messages=USER_HI)
    assert info.value.status_code == 429


if __name__ == "__main__":
    import sys

    sys.exit(pytest.main(["-c", str(Path(__file__).with_name("pytest.ini")), __file__, *sys.argv[1:]]))
