#!/usr/bin/env python3
"""Causeway benchmark suite: Causeway side by side with nginx, LiteLLM and Portkey.

Run through bench/run.sh (which installs and builds what this needs). This script owns the
orchestration: it starts mock-provider upstreams and one contender at a time on loopback, drives
bench/loadgen against each, collects the numbers into bench/.work/results.json and renders them
into bench/RESULTS.md between the `<!-- bench:begin -->` / `<!-- bench:end -->` markers, leaving
every other section of that file as it was. Standard library only; never part of CI.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
RESULTS_MD = BENCH / "RESULTS.md"
TARGET_DIR = Path(os.environ.get("CAUSEWAY_TARGET_DIR", Path.home() / ".cache/causeway-target"))
BENCH_TARGET_DIR = Path(
    os.environ.get("CAUSEWAY_BENCH_TARGET_DIR", Path.home() / ".cache/causeway-bench-target")
)
CAUSEWAY = TARGET_DIR / "release/causeway"
MOCK = TARGET_DIR / "release/mock-provider"
LOADGEN = BENCH_TARGET_DIR / "release/loadgen"
WASM_HOOK_BENCH = TARGET_DIR / "release/examples/wasm_hook_bench"
PORTKEY_DIR = BENCH / "portkey"
VENV = BENCH / ".venv"

API_KEY = "sk-bench-000000000000"
CHAT_PATH = "/v1/chat/completions"
STREAM_CHUNKS = 64
STREAM_INTERVAL_MS = 20
ANSWER_BYTES = 1024  # assistant text of every answer: 64 stream chunks of 16 bytes
STALL_MS = 1000
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

# Run lengths. Each load run is bounded by time and by count; each stream run by a timeout.
MODES = {
    "quick": {
        "warmup_s": 0.2,            # before every load run, not measured
        # Once per contender before any measure: this many requests, or this long at most. The
        # JIT-compiled contender (Portkey on V8) needs thousands of requests to reach steady state.
        "contender_warmup": (1000, 3.0),
        "latency_s": 0.6,           # per (prompt, concurrency) cell, 0 ms upstream
        "latency_slow_s": 1.2,      # per cell, 20 ms upstream (50 req/s at c=1)
        "slow_cells": [("1k", 1), ("1k", 32)],
        "max_requests": 200_000,
        "throughput_levels": [8, 64],
        "throughput_s": 1.5,
        "ttft_streams": 10,
        "stream_levels": [128, 1024],
        "stream_timeout_s": 4,      # a stream unfinished by then counts as not held
        "settle_s": 1.5,
        "callgrind_requests": 200,
        "callgrind_streams": 8,
    },
    "full": {
        "warmup_s": 1.0,
        "contender_warmup": (3000, 15.0),
        "latency_s": 5.0,
        "latency_slow_s": 10.0,
        "slow_cells": [("1k", 1), ("10k", 1), ("1k", 32), ("10k", 32)],
        "max_requests": 2_000_000,
        "throughput_levels": [8, 32, 128, 512],
        "throughput_s": 5.0,
        "ttft_streams": 50,
        "stream_levels": [128, 512, 1024],
        "stream_timeout_s": 12,
        "settle_s": 5.0,
        "callgrind_requests": 1000,
        "callgrind_streams": 32,
    },
}
FAST_CELLS = [("1k", 1), ("10k", 1), ("1k", 32), ("10k", 32)]
TTFT_SPAWN_INTERVAL_MS = 100
# Concurrent-stream runs open their connections at 2,000 per second (1,024 in about half a
# second), so they measure holding streams, not the kernel's accept queues under a connect storm.
STREAM_SPAWN_INTERVAL_MS = 0.5
# From this many streams on, an identical run is made first and discarded: it fills the
# contender's upstream connection pool, so the measured run shows holding streams rather than
# a gateway opening hundreds of upstream connections at once (the mock listens with a backlog of
# 4,096, but the kernel's SYN backlog is smaller; a dropped SYN is retransmitted after 1 s,
# which says nothing about the gateway).
STREAM_POOL_WARMUP_FROM = 512
CONTENDERS = ["direct", "nginx", "causeway", "litellm", "portkey"]
GATEWAYS = ["nginx", "causeway", "litellm", "portkey"]


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes


class Processes:
    """Every process this run starts, each in its own session so its children die with it."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.pidfile = WORK / "pids"

    def start(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        out = open(WORK / f"{name}.log", "wb")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        self.procs.append(p)
        with open(self.pidfile, "a") as f:
            f.write(f"{p.pid}\n")
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=8)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        if p in self.procs:
            self.procs.remove(p)
        self.pidfile.write_text("".join(f"{q.pid}\n" for q in self.procs))

    def stop_all(self) -> None:
        for p in list(reversed(self.procs)):
            self.stop(p)


PROCS = Processes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_line(name: str, pattern: str, proc: subprocess.Popen, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    path = WORK / f"{name}.log"
    while time.monotonic() < deadline:
        m = re.search(pattern, path.read_text(errors="replace"))
        if m:
            return m
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {path}")
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not print {pattern!r} in {timeout}s; see {path}")


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(name: str, proc: subprocess.Popen | None, route: "Route", body: bytes,
               timeout: float) -> None:
    """Until one chat request through the contender succeeds."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {WORK / (name + '.log')}")
        try:
            status, data = post(route.url, body, route.headers, timeout=5)
            if status == 200:
                return
            last = f"HTTP {status}: {data[:300]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready after {timeout}s: {last}")


def rss_kb(pid: int) -> int:
    out = subprocess.run([str(LOADGEN), "rss", str(pid)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


# ---------------------------------------------------------------------------------------------
# Request bodies: a realistic prompt, about 1 KB and 10 KB of JSON

SYSTEM = ("You are a support assistant for a logistics company. Answer in the customer's language, "
          "be concise, cite the order number, and never promise a delivery date you cannot verify.")
TURNS = [
    ("user", "Hi, my order 48213-B was supposed to arrive on Tuesday but the tracking page has said "
             "'in transit' for four days now. I need the parts for a repair job on Friday. Can you "
             "check where it is and whether I should reorder from the local warehouse instead?"),
    ("assistant", "Thanks for the order number. Order 48213-B left the Rotterdam hub on Monday and was "
                  "scanned at the regional depot yesterday evening. Depot scans are usually followed by "
                  "delivery within one working day, so it should reach you before Friday."),
    ("user", "That's good to hear, but last time the depot held a parcel for a week because the "
             "customs paperwork was incomplete. The invoice on this order lists the compressor "
             "valves under the wrong tariff code. Could that block it again? What exactly do I "
             "need to send, and to whom?"),
    ("assistant", "A wrong tariff code can delay clearance. The broker needs a corrected commercial "
                  "invoice that shows the right HS code for the valves, signed by the shipper. Send it "
                  "to the customs desk with the order number in the subject line."),
]


def make_body(model: str, size: int, stream: bool = False) -> bytes:
    """A chat request whose JSON is about `size` bytes: a system prompt, then conversation turns."""
    messages = [{"role": "system", "content": SYSTEM}]
    body = {"model": model, "messages": messages, "max_tokens": 256, "temperature": 0.2}
    if stream:
        body["stream"] = True
    i = 0
    while len(json.dumps(body)) < size:
        role, text = TURNS[i % len(TURNS)]
        messages.append({"role": role, "content": text})
        i += 1
    if messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": "Thanks. Anything else I should check?"})
    # Trim the last user turn so the body lands within a few bytes of `size`.
    excess = len(json.dumps(body)) - size
    if excess > 0:
        last = messages[-1]["content"]
        messages[-1]["content"] = last[: max(20, len(last) - excess)]
    return json.dumps(body).encode()


# ---------------------------------------------------------------------------------------------
# Contenders


class Route:
    def __init__(self, url: str, headers: dict[str, str], model: str):
        self.url, self.headers, self.model = url, headers, model

    def header_args(self) -> list[str]:
        args: list[str] = []
        for k, v in self.headers.items():
            args += ["--header", f"{k}: {v}"]
        return args


class Contender:
    """One server under test; `fast`/`slow` are its routes to the 0 ms / 20 ms mock."""

    name = "?"
    proc: subprocess.Popen | None = None
    version = ""

    def start(self, mocks: dict[str, int]) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            PROCS.stop(self.proc)
            self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def auth() -> dict[str, str]:
    return {"authorization": f"Bearer {API_KEY}"}


class Direct(Contender):
    name = "direct"
    version = "mock-provider, no gateway"

    def start(self, mocks):
        self.fast = Route(f"http://127.0.0.1:{mocks['fast']}{CHAT_PATH}", auth(), "openai/gpt-4o-mini")
        self.slow = Route(f"http://127.0.0.1:{mocks['slow']}{CHAT_PATH}", auth(), "slow/gpt-4o-mini")


class Nginx(Contender):
    name = "nginx"

    def start(self, mocks):
        prefix = WORK / "nginx"
        shutil.rmtree(prefix, ignore_errors=True)
        (prefix / "logs").mkdir(parents=True)
        pf, ps = free_port(), free_port()
        servers = ""
        for port, upstream in ((pf, "fast"), (ps, "slow")):
            servers += f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 60s;
        }}
    }}"""
        conf = f"""# generated by bench/bench.py: plain proxy_pass, the floor of what forwarding costs
daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[1]};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 10m;
    client_body_buffer_size 64k;
    keepalive_requests 1000000;
    upstream fast {{ server 127.0.0.1:{mocks['fast']}; keepalive 1024; keepalive_requests 1000000; }}
    upstream slow {{ server 127.0.0.1:{mocks['slow']}; keepalive 1024; keepalive_requests 1000000; }}{servers}
}}
"""
        (prefix / "nginx.conf").write_text(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        self.version = self.version.replace("nginx version: ", "")
        self.proc = PROCS.start("nginx", [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                          "-e", str(prefix / "logs/error.log")])
        self.fast = Route(f"http://127.0.0.1:{pf}{CHAT_PATH}", auth(), "openai/gpt-4o-mini")
        self.slow = Route(f"http://127.0.0.1:{ps}{CHAT_PATH}", auth(), "slow/gpt-4o-mini")


class Causeway(Contender):
    name = "causeway"

    def start(self, mocks):
        app = WORK / "causeway-app"
        shutil.rmtree(app, ignore_errors=True)
        app.mkdir(parents=True)
        write_causeway_config(app / "config.json", mocks)
        self.version = causeway_version()
        self.proc = PROCS.start("causeway", [str(CAUSEWAY), "--app-dir", str(app), "--port", "0",
                                             "--config", str(app / "config.json"),
                                             "--log-level", "warn"])
        m = wait_for_line("causeway", r"Causeway listening on (http://\S+)", self.proc, 30)
        base = m.group(1).rstrip("/")
        self.fast = Route(base + CHAT_PATH, {}, "openai/gpt-4o-mini")
        self.slow = Route(base + CHAT_PATH, {}, "slow/gpt-4o-mini")


def write_causeway_config(path: Path, mocks: dict[str, int]) -> None:
    def provider(port: int) -> dict:
        return {
            "keys": [{"name": "k", "value": API_KEY, "models": ["*"]}],
            "network_config": {"base_url": f"http://127.0.0.1:{port}"},
            "concurrency_and_buffer_size": {"concurrency": 10000, "buffer_size": 20000},
        }
    slow = provider(mocks["slow"])
    slow["custom_provider_config"] = {"base_provider_type": "openai"}
    # Request logging off, like the other contenders (nginx's access log is off, LiteLLM and
    # Portkey keep no request database here); its cost is counted separately by callgrind.
    config = {"providers": {"openai": provider(mocks["fast"]), "slow": slow},
              "client": {"enable_logging": False},
              "logs_store": {"writer": {"batch_interval": "50ms"}}}
    # Experiments: e.g. CAUSEWAY_BENCH_CLIENT='{"enable_logging": false}' to price a feature.
    extra = os.environ.get("CAUSEWAY_BENCH_CLIENT")
    if extra:
        config["client"] = json.loads(extra)
    path.write_text(json.dumps(config, indent=2))


def causeway_version() -> str:
    v = subprocess.run([str(CAUSEWAY), "--version"], capture_output=True, text=True).stdout.strip()
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return f"{v} (commit {rev}{', uncommitted changes' if dirty else ''}, release build)"


class LiteLLM(Contender):
    name = "litellm"

    def launch(self, mocks):
        d = WORK / "litellm"
        d.mkdir(parents=True, exist_ok=True)
        models = ""
        for name, port in (("openai/gpt-4o-mini", mocks["fast"]), ("slow/gpt-4o-mini", mocks["slow"])):
            models += f"""  - model_name: {name}
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:{port}/v1
      api_key: {API_KEY}
"""
        (d / "config.yaml").write_text("model_list:\n" + models +
                                       "litellm_settings:\n  telemetry: false\n")
        # Access and info logs off, like every other contender here.
        (d / "logging.json").write_text(json.dumps({
            "version": 1, "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                                    "stream": "ext://sys.stderr"}},
            "loggers": {"uvicorn": {"handlers": ["stderr"], "level": "WARNING"},
                        "uvicorn.error": {"level": "WARNING"},
                        "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING",
                                           "propagate": False}},
        }))
        self.port = free_port()
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
               "LITELLM_TELEMETRY": "False"}
        self.version = "litellm " + subprocess.run(
            [str(VENV / "bin/python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True, text=True).stdout.strip() + " (proxy, uvicorn, 1 worker)"
        self.proc = PROCS.start("litellm", [str(VENV / "bin/litellm"), "--config", str(d / "config.yaml"),
                                            "--host", "127.0.0.1", "--port", str(self.port),
                                            "--num_workers", "1", "--log_config", str(d / "logging.json")],
                                env=env)
        base = f"http://127.0.0.1:{self.port}"
        self.fast = Route(base + CHAT_PATH, auth(), "openai/gpt-4o-mini")
        self.slow = Route(base + CHAT_PATH, auth(), "slow/gpt-4o-mini")

    def start(self, mocks):
        if self.proc is None:
            self.launch(mocks)


class Portkey(Contender):
    name = "portkey"

    def start(self, mocks):
        pkg = json.loads((PORTKEY_DIR / "node_modules/@portkey-ai/gateway/package.json").read_text())
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        self.version = f"@portkey-ai/gateway {pkg['version']} (node {node})"
        port = free_port()
        self.proc = PROCS.start("portkey", ["node", "node_modules/@portkey-ai/gateway/build/start-server.js",
                                            f"--port={port}", "--headless"], cwd=PORTKEY_DIR)
        base = f"http://127.0.0.1:{port}"

        def headers(mock: int) -> dict[str, str]:
            return {**auth(), "x-portkey-provider": "openai",
                    "x-portkey-custom-host": f"http://127.0.0.1:{mock}/v1"}
        self.fast = Route(base + CHAT_PATH, headers(mocks["fast"]), "openai/gpt-4o-mini")
        self.slow = Route(base + CHAT_PATH, headers(mocks["slow"]), "slow/gpt-4o-mini")


# ---------------------------------------------------------------------------------------------
# The suite


class Suite:
    def __init__(self, mode: str, only: list[str]):
        self.mode = mode
        self.cfg = MODES[mode]
        self.only = only
        self.results: dict = {"mode": mode, "contenders": {}, "callgrind": None}
        self.step = 0
        self.total = 0
        self.bodies: dict[tuple[str, str, bool], Path] = {}
        self.t0 = time.monotonic()

    # -- helpers

    def progress(self, who: str, what: str) -> None:
        self.step += 1
        log(f"[{self.step}/{self.total}] {time.monotonic() - self.t0:5.0f}s {who}: {what}")

    def body(self, route: Route, size: str, stream: bool = False) -> Path:
        key = (route.model, size, stream)
        if key not in self.bodies:
            n = {"1k": 1024, "10k": 10240}[size]
            path = WORK / f"body-{route.model.replace('/', '_')}-{size}{'-stream' if stream else ''}.json"
            path.write_bytes(make_body(route.model, n, stream))
            self.bodies[key] = path
        return self.bodies[key]

    def loadgen(self, args: list[str], timeout: float) -> dict:
        out = subprocess.run([str(LOADGEN), *args], capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"loadgen failed: {out.stderr.strip()}")
        return json.loads(out.stdout)

    def load(self, c: Contender, route: Route, size: str, conc: int, seconds: float,
             warmup: float | None = None, watch: bool = False, max_requests: int | None = None) -> dict:
        args = ["load", "--url", route.url, "--body", str(self.body(route, size)), *route.header_args(),
                "--concurrency", str(conc), "--duration", str(seconds),
                "--warmup", str(self.cfg["warmup_s"] if warmup is None else warmup),
                "--max-requests", str(max_requests or self.cfg["max_requests"])]
        if watch and c.pid:
            args += ["--watch-pid", str(c.pid)]
        return self.loadgen(args, timeout=seconds + 60)

    def stream(self, c: Contender, streams: int, interval_ms: float = 0, watch: bool = False) -> dict:
        route = c.fast
        args = ["stream", "--url", route.url, "--body", str(self.body(route, "1k", stream=True)),
                *route.header_args(), "--streams", str(streams), "--spawn-interval-ms", str(interval_ms),
                "--expect-chunks", str(STREAM_CHUNKS), "--stall-ms", str(STALL_MS),
                "--timeout", str(self.cfg["stream_timeout_s"])]
        if watch and c.pid:
            args += ["--watch-pid", str(c.pid)]
        return self.loadgen(args, timeout=120)

    # -- plan

    def count_steps(self, names: list[str]) -> int:
        per = (1 + len(FAST_CELLS) + len(self.cfg["slow_cells"]) + len(self.cfg["throughput_levels"])
               + 1 + len(self.cfg["stream_levels"]))
        n = sum(per + (0 if name == "direct" else 2) for name in names)  # + idle and after-load RSS
        if "causeway" in names:
            n += 2  # callgrind, WASM plugin hooks
        return n

    def run(self) -> None:
        t0 = self.t0 = time.monotonic()
        names = [n for n in CONTENDERS if not self.only or n in self.only]
        self.total = self.count_steps(names)
        self.results["started"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.results["loadavg_before"] = Path("/proc/loadavg").read_text().split()[:3]

        mocks, mock_procs = self.start_mocks()
        self.results["mock_ports"] = mocks
        classes = {"direct": Direct, "nginx": Nginx, "causeway": Causeway, "litellm": LiteLLM,
                   "portkey": Portkey}
        contenders = {n: classes[n]() for n in names}

        # LiteLLM takes tens of seconds to import and start: boot it while callgrind counts
        # Causeway's instructions (a count, not a time, so the boot's CPU use does not skew it).
        if "litellm" in contenders:
            contenders["litellm"].launch(mocks)
        if "causeway" in contenders:
            self.progress("causeway", f"callgrind: instructions per request ({self.cfg['callgrind_requests']} requests, 1 KB and 10 KB, and {self.cfg['callgrind_streams']} streams)")
            try:
                self.results["callgrind"] = self.callgrind(mocks)
            except Exception as e:  # noqa: BLE001 - reported in RESULTS.md, the suite goes on
                log(f"    callgrind failed: {e}")
                self.results["callgrind"] = {"error": str(e)}

        order = [n for n in ("litellm", "direct", "nginx", "causeway", "portkey") if n in contenders]
        for name in order:
            c = contenders[name]
            res: dict = {"latency": {}, "throughput": [], "streams": {}, "memory": {}}
            self.results["contenders"][name] = res
            try:
                self.measure(c, mocks, res)
            except Exception as e:  # noqa: BLE001 - one contender failing must not lose the others
                log(f"    {name} failed: {e}")
                res["error"] = str(e)
            finally:
                res["version"] = c.version
                c.stop()
        for p in mock_procs:
            PROCS.stop(p)
        # Last, when no server is running: it measures wall-clock time on one thread.
        if "causeway" in contenders:
            self.progress("causeway", "WASM plugin hook overhead (crates/causeway-plugins/examples/wasm_hook_bench.rs)")
            try:
                self.results["wasm_hooks"] = wasm_hooks()
            except Exception as e:  # noqa: BLE001 - reported in RESULTS.md, the suite goes on
                log(f"    WASM hook bench failed: {e}")
                self.results["wasm_hooks"] = {"error": str(e)}
        self.results["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
        self.results["elapsed_s"] = round(time.monotonic() - t0, 1)

    def start_mocks(self) -> tuple[dict[str, int], list[subprocess.Popen]]:
        ports, procs = {}, []
        for name, latency in (("fast", 0), ("slow", 20)):
            p = PROCS.start(f"mock-{name}", [str(MOCK), "--port", "0", "--latency-ms", str(latency),
                                             "--stream-chunks", str(STREAM_CHUNKS),
                                             "--stream-interval-ms", str(STREAM_INTERVAL_MS),
                                             "--content-bytes", str(ANSWER_BYTES), "--no-record"])
            m = wait_for_line(f"mock-{name}", r"listening on http://[\d.]+:(\d+)", p, 10)
            ports[name] = int(m.group(1))
            procs.append(p)
        return ports, procs

    def measure(self, c: Contender, mocks: dict[str, int], res: dict) -> None:
        cfg = self.cfg
        self.progress(c.name, "start and warm up")
        c.start(mocks)
        boot = 180 if c.name == "litellm" else 30
        for route in (c.fast, c.slow):
            wait_ready(c.name, c.proc, route, self.body(route, "1k").read_bytes(), boot)
        res["version"] = c.version
        # Warm-up: connection pools, JITs, caches; discarded.
        count, seconds = cfg["contender_warmup"]
        self.load(c, c.fast, "1k", 8, seconds, warmup=0, max_requests=count)
        self.load(c, c.fast, "10k", 8, seconds / 4, warmup=0, max_requests=count // 4)
        self.load(c, c.slow, "1k", 8, 0.3, warmup=0)
        st = self.stream(c, 8)
        if st["complete"] != 8:
            log(f"    warning: only {st['complete']} of 8 warm-up streams completed "
                f"({st['errors']} errors, {st['timed_out']} timed out, last error {st['last_error']})")

        if c.pid:
            self.progress(c.name, "RSS idle (after warm-up, 1 s quiet)")
            time.sleep(1.0)
            res["memory"]["idle_kb"] = rss_kb(c.pid)

        for size, conc in FAST_CELLS:
            self.progress(c.name, f"latency, upstream 0 ms, {size.upper()}B prompt, c={conc}")
            res["latency"][f"0ms/{size}/c{conc}"] = self.load(c, c.fast, size, conc, cfg["latency_s"],
                                                             watch=True)
        for size, conc in cfg["slow_cells"]:
            self.progress(c.name, f"latency, upstream 20 ms, {size.upper()}B prompt, c={conc}")
            res["latency"][f"20ms/{size}/c{conc}"] = self.load(c, c.slow, size, conc, cfg["latency_slow_s"])

        for conc in cfg["throughput_levels"]:
            self.progress(c.name, f"throughput, upstream 0 ms, 1KB prompt, c={conc}")
            r = self.load(c, c.fast, "1k", conc, cfg["throughput_s"], watch=True)
            res["throughput"].append(r)
            if r["errors"] or r["status_errors"] or r["latency_us"]["p99"] > 1e6:
                log(f"    c={conc}: p99 {r['latency_us']['p99'] / 1000:.0f} ms, "
                    f"{r['errors'] + r['status_errors']} errors: past the limit, ramp stops")
                self.step += len(cfg["throughput_levels"]) - len(res["throughput"])
                break

        n = cfg["ttft_streams"]
        self.progress(c.name, f"streaming TTFT and chunk timing: {n} streams, one every "
                              f"{TTFT_SPAWN_INTERVAL_MS} ms, {STREAM_CHUNKS} chunks at {STREAM_INTERVAL_MS} ms")
        res["ttft"] = self.stream(c, n, TTFT_SPAWN_INTERVAL_MS, watch=True)

        levels = cfg["stream_levels"]
        for i, n in enumerate(levels):
            warm = " (after a discarded run that fills the upstream pool)" if n >= STREAM_POOL_WARMUP_FROM else ""
            self.progress(c.name, f"{n} concurrent streams{warm}")
            if warm:
                self.stream(c, n, STREAM_SPAWN_INTERVAL_MS)
            r = self.stream(c, n, STREAM_SPAWN_INTERVAL_MS, watch=True)
            res["streams"][str(n)] = r
            log(f"    held {r['held']}/{n}, longest silence {r['max_silence_ms']['max']:.0f} ms")
            if r["held"] < n / 2 and i + 1 < len(levels):
                res["streams_skipped_after"] = n
                log(f"    fewer than half held: {', '.join(map(str, levels[i + 1:]))} streams skipped")
                self.step += len(levels) - i - 1
                break

        if c.pid:
            self.progress(c.name, f"RSS after load ({cfg['settle_s']:g} s quiet)")
            time.sleep(cfg["settle_s"])
            res["memory"]["after_kb"] = rss_kb(c.pid)
            peaks = [r.get("rss_peak_kb") or 0 for r in res["throughput"]]
            res["memory"]["peak_load_kb"] = max(peaks, default=0)
            res["memory"]["peak_streams_kb"] = {k: v.get("rss_peak_kb") for k, v in res["streams"].items()}

    # -- callgrind

    def callgrind(self, mocks: dict[str, int]) -> dict:
        d = WORK / "callgrind"
        shutil.rmtree(d, ignore_errors=True)
        (d / "app").mkdir(parents=True)
        write_causeway_config(d / "app/config.json", mocks)
        out = d / "callgrind.out"
        proc = PROCS.start("causeway-callgrind", [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
            "--vgdb=yes", str(CAUSEWAY), "--app-dir", str(d / "app"), "--port", "0",
            "--config", str(d / "app/config.json"), "--log-level", "warn"])
        try:
            m = wait_for_line("causeway-callgrind", r"Causeway listening on (http://\S+)", proc, 120)
            route = Route(m.group(1).rstrip("/") + CHAT_PATH, {}, "openai/gpt-4o-mini")
            wait_ready("causeway-callgrind", proc, route, self.body(route, "1k").read_bytes(), 60)
            fake = Contender()
            fake.name, fake.fast = "causeway-callgrind", route
            result: dict = {"valgrind": subprocess.run(["valgrind", "--version"], capture_output=True,
                                                       text=True).stdout.strip()}
            n = self.cfg["callgrind_requests"]
            dump = 0
            for label, size in (("1k", "1k"), ("10k", "10k")):
                self.load(fake, route, size, 1, 300, warmup=0, max_requests=50)  # warm
                self.callgrind_control(proc.pid, "--zero")
                r = self.load(fake, route, size, 1, 300, warmup=0, max_requests=n)
                self.callgrind_control(proc.pid, "--dump")
                dump += 1
                ir = callgrind_total(d, dump)
                result[label] = {"requests": r["requests"], "errors": r["errors"] + r["status_errors"],
                                 "instructions": ir, "per_request": ir / max(1, r["requests"])}
                result[label]["dump"] = str(dump_file(d, dump))
            s = self.cfg["callgrind_streams"]
            self.callgrind_control(proc.pid, "--zero")
            r = self.stream(fake, s)
            self.callgrind_control(proc.pid, "--dump")
            dump += 1
            ir = callgrind_total(d, dump)
            result["stream"] = {"streams": s, "complete": r["complete"], "instructions": ir,
                                "per_stream": ir / max(1, s), "dump": str(dump_file(d, dump))}
            # The same 1 KB chat with request logging on (the default): the entry, the batched
            # insert and the content's full-text indexing, flushed inside the counted window.
            base = route.url.split("/v1/")[0]
            status, text = post(base + "/api/plugins", json.dumps({"name": "logging", "enabled": True}).encode(), {})
            if status != 201:
                raise RuntimeError(f"enabling request logging: {status} {text[:200]!r}")
            self.load(fake, route, "1k", 1, 300, warmup=0, max_requests=50)
            time.sleep(1.0)
            self.callgrind_control(proc.pid, "--zero")
            r = self.load(fake, route, "1k", 1, 300, warmup=0, max_requests=n)
            time.sleep(1.0)
            self.callgrind_control(proc.pid, "--dump")
            dump += 1
            ir = callgrind_total(d, dump)
            result["1k_logged"] = {"requests": r["requests"], "errors": r["errors"] + r["status_errors"],
                                   "instructions": ir, "per_request": ir / max(1, r["requests"]),
                                   "dump": str(dump_file(d, dump))}
            result["top_1k"] = callgrind_top(dump_file(d, 1), 15)
            return result
        finally:
            PROCS.stop(proc)

    @staticmethod
    def callgrind_control(pid: int, action: str) -> None:
        out = subprocess.run(["callgrind_control", action, str(pid)], capture_output=True, text=True,
                             timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"callgrind_control {action}: {out.stdout} {out.stderr}")


def wasm_hooks() -> dict:
    """Runs the WASM hook benchmark (built by run.sh) and reads its Markdown table: per chain,
    p50 and p99 of one request's pre and post hooks, and p50 added over no plugins."""
    if not WASM_HOOK_BENCH.exists():
        raise RuntimeError(f"{WASM_HOOK_BENCH} is missing (bench/run.sh builds it)")
    out = subprocess.run([str(WASM_HOOK_BENCH)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"exit {out.returncode}: {out.stderr.strip()[-500:]}")
    lines = out.stdout.splitlines()
    rows = []
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("chain", "---"):
            rows.append({"chain": cells[0], "p50": cells[1], "p99": cells[2], "added": cells[3]})
    realistic = next((r for r in rows if "AssemblyScript" in r["chain"]), None)
    if realistic is None:
        raise RuntimeError(f"no AssemblyScript row in its output: {out.stdout[-500:]!r}")
    return {"header": lines[0] if lines else "", "rows": rows,
            "realistic_added_us": float(realistic["added"])}


def dump_file(d: Path, n: int) -> Path:
    matches = sorted(d.glob(f"callgrind.out.{n}")) or sorted(d.glob(f"callgrind.out*.{n}"))
    if not matches:
        raise RuntimeError(f"no callgrind dump {n} in {d}")
    return matches[0]


def callgrind_total(d: Path, n: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            text = dump_file(d, n).read_text(errors="replace")
            m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
            if m:
                return int(m.group(1))
        except RuntimeError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"callgrind dump {n} has no totals")


def callgrind_functions(path: Path) -> dict[str, list[int]]:
    """Self and inclusive instruction counts per function name, read from a callgrind dump.

    Parsed here rather than with callgrind_annotate, whose 3.19 version folds call costs into
    the callers' lines of this (inlined, line-tables-only) binary. Inclusive = self + the cost of
    the calls the function makes (recursion may count twice; fine for a ranking)."""
    names: dict[str, str] = {}
    costs: dict[str, list[int]] = {}
    fn = None
    after_calls = False

    def name_of(value: str) -> str:
        m = re.match(r"\((\d+)\)(?:\s+(.*))?", value)
        if not m:
            return value
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), value)

    for line in path.read_text(errors="replace").splitlines():
        if not line:
            continue
        c = line[0]
        if c.isdigit() or c in "+-*":
            parts = line.split()
            if fn is not None and len(parts) >= 2 and parts[1].isdigit():
                entry = costs.setdefault(fn, [0, 0])
                cost = int(parts[1])
                if after_calls:
                    entry[1] += cost
                else:
                    entry[0] += cost
                    entry[1] += cost
            after_calls = False
        elif line.startswith("fn="):
            fn = name_of(line[3:])
            after_calls = False
        elif line.startswith("cfn=") or line.startswith("cfi=") or line.startswith("cfl="):
            if line.startswith("cfn="):
                name_of(line[4:])
        elif line.startswith("calls="):
            after_calls = True
    return costs


def callgrind_top(path: Path, n: int) -> dict[str, list[dict]]:
    costs = callgrind_functions(path)
    total = sum(v[0] for v in costs.values()) or 1
    by_self = sorted(costs.items(), key=lambda kv: -kv[1][0])[:n]
    ours = [kv for kv in costs.items() if re.search(r"\bcauseway_\w+::", kv[0])]
    by_incl = sorted(ours, key=lambda kv: -kv[1][1])[:n]
    row = lambda kv: {"function": kv[0], "self": kv[1][0], "inclusive": kv[1][1],
                      "self_pct": 100 * kv[1][0] / total, "inclusive_pct": 100 * kv[1][1] / total}
    return {"self": [row(kv) for kv in by_self], "causeway_inclusive": [row(kv) for kv in by_incl]}


# ---------------------------------------------------------------------------------------------
# RESULTS.md


def machine() -> dict:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(int(mem) / 2**20, 1),
            "kernel": platform.release(), "os": platform.freedesktop_os_release().get("PRETTY_NAME", "?")
            if hasattr(platform, "freedesktop_os_release") else "?"}


def fmt_us(v: float | None) -> str:
    if v is None:
        return "–"
    if abs(v) >= 10_000:
        return f"{v / 1000:,.1f} ms"
    return f"{v:,.0f} µs"


def fmt_added(v: float | None) -> str:
    if v is None:
        return "–"
    sign = "+" if v >= 0 else "−"
    return sign + fmt_us(abs(v))


def fmt_mb(kb: int | None) -> str:
    return "–" if not kb else f"{kb / 1024:,.1f} MB"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:,.2f}×" if r < 10 else f"{r:,.0f}×"


def unmeasured(section: dict | None) -> str | None:
    """What a section says instead of its table when the run has no numbers for it."""
    if not section:
        return "Not measured in this run."
    if "error" in section:
        return f"Failed: {section['error']}"
    return None


def render(res: dict, command: str) -> str:
    cons = res["contenders"]
    present = [n for n in CONTENDERS if n in cons]
    gws = [n for n in present if n != "direct"]
    cfg = MODES[res["mode"]]
    L: list[str] = []
    quick = res["mode"] == "quick"
    L.append("## Gateway benchmarks")
    L.append("")
    L.append(f"Written by `bench/run.sh` on {res['started']} ({res['mode']} mode, {res['elapsed_s']:.0f} s). "
             "Method and limits: [bench/README.md](README.md). Raw numbers of the last run: "
             "`bench/.work/results.json`.")
    L.append("")
    la_b, la_a = res.get("loadavg_before", ["?"] * 3), res.get("loadavg_after", ["?"] * 3)
    noisy = quick or float(la_b[0]) > 0.5
    if noisy:
        L.append(f"> **Not final numbers.** {'Quick mode: short runs. ' if quick else ''}"
                 f"Load average before the run {la_b[0]} / {la_b[1]} / {la_b[2]} (1/5/15 min), after "
                 f"{la_a[0]}: other work shared the 2 cores, so latencies and throughput are noisy. "
                 "Instruction counts (callgrind) are not affected.")
        L.append("")

    # -- targets
    L += ["### Against the targets", "", "| target | measured | |", "|---|---|---|"]
    for row in target_rows(res):
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    # -- latency
    L += ["### Added latency, non-streaming chat", "",
          "Closed loop, keep-alive connections, `c` = concurrent connections. `direct` is the client "
          "talking to mock-provider itself (absolute latency); every other cell is the contender's "
          "latency minus direct's in the same cell (what the gateway adds), p50 / p99, and in brackets "
          "the added p50 as a multiple of nginx's. † fewer than 50 requests measured in that cell: "
          "indicative only.", ""]
    for upstream in ("0ms", "20ms"):
        cells = [k for k in cons.get("direct", {}).get("latency", {}) if k.startswith(upstream + "/")]
        if not cells:
            cells = sorted({k for n in present for k in cons[n].get("latency", {})
                            if k.startswith(upstream + "/")})
        if not cells:
            continue
        L.append(f"**Upstream latency {upstream.replace('ms', ' ms')}**")
        L.append("")
        L.append("| prompt, concurrency | " + " | ".join(present) + " |")
        L.append("|---|" + "---|" * len(present))
        for cell in cells:
            _, size, conc = cell.split("/")
            row = [f"{size.upper()}B, c={conc[1:]}"]
            d = cons.get("direct", {}).get("latency", {}).get(cell)
            ng = cons.get("nginx", {}).get("latency", {}).get(cell)
            ng_add = (ng["latency_us"]["p50"] - d["latency_us"]["p50"]) if (ng and d) else None
            for n in present:
                r = cons[n].get("latency", {}).get(cell)
                if not r:
                    row.append("–")
                    continue
                lat = r["latency_us"]
                errs = r["errors"] + r["status_errors"]
                err = f" **{errs} errors**" if errs else ""
                if r["requests"] == 0:
                    row.append(f"none answered in the window{err}")
                    continue
                err += " †" if r["requests"] < 50 else ""
                if n == "direct" or not d:
                    row.append(f"{fmt_us(lat['p50'])} / {fmt_us(lat['p99'])}{err}")
                    continue
                a50 = lat["p50"] - d["latency_us"]["p50"]
                a99 = lat["p99"] - d["latency_us"]["p99"]
                rel = f" ({ratio(a50, ng_add)})" if n != "nginx" and ng_add and ng_add > 0 else ""
                row.append(f"{fmt_added(a50)} / {fmt_added(a99)}{rel}{err}")
            L.append("| " + " | ".join(row) + " |")
        L.append("")
        L.append("| requests measured per cell | " + " | ".join(
            f"{min((r['requests'] for k, r in cons[n].get('latency', {}).items() if k.startswith(upstream + '/')), default=0):,}"
            for n in present) + " |")
        L.append("|---|" + "---|" * len(present))
        L.append("")

    # -- throughput
    L += ["### Maximum sustained throughput", "",
          f"Upstream 0 ms, 1 KB prompt, closed loop at c = {', '.join(map(str, cfg['throughput_levels']))} "
          f"({cfg['throughput_s']:g} s each); the best rate whose p99 stays under 1 s with no error. "
          "The load client, the mock and the contender share the same 2 cores, so `direct` is the "
          "ceiling of this machine rather than of the mock. CPU per request is the contender's own "
          "CPU time (user + system, all its processes) over the run divided by the requests it "
          "served: less sensitive to a busy machine than the rate.", "",
          "| contender | req/s | at c | p99 | × direct | × nginx | CPU per request | ramp (req/s @ c) |",
          "|---|---|---|---|---|---|---|---|"]
    best = {n: best_throughput(cons[n]) for n in present}
    for n in present:
        b = best[n]
        ramp = ", ".join(f"{r['rps']:,.0f} @ {r['concurrency']}"
                         + ("" if ok_run(r) else " ✗") for r in cons[n].get("throughput", []))
        if b is None:
            L.append(f"| {n} | – | – | – | – | – | – | {ramp or cons[n].get('error', '–')} |")
            continue
        L.append(f"| {n} | {b['rps']:,.0f} | {b['concurrency']} | {fmt_us(b['latency_us']['p99'])} | "
                 f"{ratio(b['rps'], (best.get('direct') or {}).get('rps'))} | "
                 f"{ratio(b['rps'], (best.get('nginx') or {}).get('rps'))} | "
                 f"{fmt_us(b.get('cpu_us_per_request'))} | {ramp} |")
    L.append("")

    # -- streaming
    L += ["### Streaming", "",
          f"The mock streams {STREAM_CHUNKS} content chunks {STREAM_INTERVAL_MS} ms apart (1 KB of text). "
          f"TTFT and chunk timing: {cfg['ttft_streams']} streams started one every {TTFT_SPAWN_INTERVAL_MS} ms "
          "(up to 13 in flight at once); TTFT is from the request to the first non-empty content "
          "chunk. Chunk gaps are between consecutive content chunks: preserved means every stream complete, "
          "a median gap within 2 ms of 20 ms, and at most 2% of gaps bunched (under 5 ms: chunks held "
          "back and released together).", "",
          "| contender | TTFT p50 / p99 | added TTFT p50 / p99 | chunk gap p50 / p99 / max | bunched | timing preserved |",
          "|---|---|---|---|---|---|"]
    dt = cons.get("direct", {}).get("ttft")
    for n in present:
        t = cons[n].get("ttft")
        if not t:
            L.append(f"| {n} | – | – | – | – | {cons[n].get('error', '–')} |")
            continue
        tt = t["ttft_us"]
        added = "–" if (n == "direct" or not dt) else \
            f"{fmt_added(tt['p50'] - dt['ttft_us']['p50'])} / {fmt_added(tt['p99'] - dt['ttft_us']['p99'])}"
        g = t["gap_ms"]
        L.append(f"| {n} | {fmt_us(tt['p50'])} / {fmt_us(tt['p99'])} | {added} | "
                 f"{g['p50']:.1f} / {g['p99']:.1f} / {g['max']:.1f} ms | {g['under_5ms']} of {g['count']} | "
                 f"{'yes' if preserved(t) else '**no**'} |")
    L.append("")
    levels = cfg["stream_levels"]
    L += ["**Concurrent streams held.** Each stream on its own connection, opened at 2,000 per "
          "second (1,024 in about half a second), so all are in flight together for most of their "
          f"{STREAM_CHUNKS * STREAM_INTERVAL_MS / 1000:.2f} s. A stream is held when it delivers all "
          f"{STREAM_CHUNKS} chunks with no silence over {STALL_MS / 1000:g} s, the wait for the first "
          "chunk included. Cells: held / started (longest silence of any stream; p99 TTFT; median "
          "chunk gap). From 512 streams on, an identical discarded run comes first, to fill the "
          "contender's upstream connection pool (see the README). A contender that holds fewer "
          "than half the streams of a level is not tried at the next.", "",
          "| contender | " + " | ".join(f"{n} streams" for n in levels) + " |",
          "|---|" + "---|" * len(levels)]
    for n in present:
        row = [n]
        for lv in levels:
            r = cons[n].get("streams", {}).get(str(lv))
            if not r:
                skipped = cons[n].get("streams_skipped_after")
                row.append(f"skipped: under half held at {skipped}" if skipped else "–")
                continue
            mark = "" if r["held"] == lv else " ✗"
            row.append(f"{r['held']}/{lv}{mark} ({r['max_silence_ms']['max']:,.0f} ms; "
                       f"{fmt_us(r['ttft_us']['p99'] * 1.0)}; {r['gap_ms']['p50']:.1f} ms)")
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    # -- memory
    L += ["### Memory (RSS)", "",
          "VmRSS from /proc, summed over the process and its children (nginx's workers). Idle: after "
          "start-up and warm-up, 1 s quiet. Peak under load: sampled every 50 ms during the throughput "
          f"ramp. Streams: peak while holding that many streams. After: {cfg['settle_s']:g} s after the "
          "last load.", "",
          "| contender | idle | peak under load | " + " | ".join(f"peak, {lv} streams" for lv in levels)
          + " | after load | after ÷ idle |",
          "|---|---|---|" + "---|" * len(levels) + "---|---|"]
    for n in gws:
        m = cons[n].get("memory", {})
        ps = m.get("peak_streams_kb") or {}
        L.append(f"| {n} | {fmt_mb(m.get('idle_kb'))} | {fmt_mb(m.get('peak_load_kb'))} | "
                 + " | ".join(fmt_mb(ps.get(str(lv))) for lv in levels)
                 + f" | {fmt_mb(m.get('after_kb'))} | {ratio(m.get('after_kb'), m.get('idle_kb'))} |")
    L.append("")

    # -- WASM hooks
    wh = res.get("wasm_hooks")
    L += ["### WASM plugin hook overhead", ""]
    if gap := unmeasured(wh):
        L.append(gap)
    else:
        L += ["What one WebAssembly plugin adds to a request: the plugin chain's pre and post hooks "
              "for a realistic chat request, on one thread, no server involved "
              "(`crates/causeway-plugins/examples/wasm_hook_bench.rs`; measured after the other "
              f"contenders stopped). {wh['header']}.", "",
              "| chain | p50 (µs) | p99 (µs) | p50 added (µs) |", "|---|---|---|---|"]
        for r in wh["rows"]:
            L.append(f"| {r['chain']} | {r['p50']} | {r['p99']} | {r['added']} |")
    L.append("")

    # -- callgrind
    cg = res.get("callgrind")
    L += ["### CPU instructions per request (Causeway, callgrind)", ""]
    if gap := unmeasured(cg):
        L.append(gap)
    else:
        L += ["Instructions executed by the whole Causeway process (all threads), counted by "
              f"{cg['valgrind']} over sequential requests after a warm-up, divided by the request "
              "count. Deterministic to within a few percent whatever the machine's load: compare "
              "runs to catch regressions.", "",
              "| request | count | instructions per request |", "|---|---|---|"]
        for label, name in (("1k", "chat, 1 KB prompt"), ("10k", "chat, 10 KB prompt"),
                            ("1k_logged", "chat, 1 KB prompt, request logging on (default config)")):
            r = cg.get(label)
            if r:
                L.append(f"| {name} | {r['requests']} | {r['per_request']:,.0f} |")
        s = cg.get("stream")
        if s:
            L.append(f"| stream, {STREAM_CHUNKS} chunks (per stream) | {s['streams']} | {s['per_stream']:,.0f} |")
        top = cg.get("top_1k") or {}
        L += ["", "Where the instructions of a 1 KB chat request go (share of the total; a function's "
              "inlined callees count as its own):", "",
              "<details><summary>Top functions by self cost</summary>", "",
              "| self | function |", "|---|---|"]
        for row in top.get("self", []):
            L.append(f"| {row['self_pct']:.1f}% | `{short_fn(row['function'])}` |")
        L += ["", "</details>", "",
              "<details><summary>Causeway's own functions by inclusive cost</summary>", "",
              "| inclusive | self | function |", "|---|---|---|"]
        for row in top.get("causeway_inclusive", []):
            L.append(f"| {row['inclusive_pct']:.1f}% | {row['self_pct']:.1f}% | `{short_fn(row['function'])}` |")
        L += ["", "</details>"]
    L.append("")

    # -- run
    m = res["machine"]
    L += ["### Machine, versions, command", "",
          f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, Linux {m['kernel']}",
          f"- Load average (1/5/15 min): before {' / '.join(la_b)}, after {' / '.join(la_a)}"]
    for n in present:
        L.append(f"- {n}: {cons[n].get('version') or '?'}"
                 + (f" — **failed: {cons[n]['error']}**" if cons[n].get("error") else ""))
    L += [f"- Upstream: mock-provider (release build), answers of {ANSWER_BYTES} bytes of text; "
          "load client: bench/loadgen (Rust, hyper, one thread)",
          f"- Command: `{command}`", ""]
    return "\n".join(L)


def short_fn(name: str) -> str:
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    name = name.replace("|", "\\|")
    return name if len(name) <= 140 else name[:137] + "..."


def ok_run(r: dict) -> bool:
    return not r["errors"] and not r["status_errors"] and r["latency_us"]["p99"] < 1e6 and r["requests"] > 0


def best_throughput(c: dict) -> dict | None:
    ok = [r for r in c.get("throughput", []) if ok_run(r)]
    return max(ok, key=lambda r: r["rps"], default=None)


def preserved(t: dict) -> bool:
    g = t["gap_ms"]
    return (g["count"] > 0 and abs(g["p50"] - STREAM_INTERVAL_MS) <= 2
            and g["under_5ms"] <= 0.02 * g["count"] and t["complete"] == t["streams"])


def target_rows(res: dict) -> list[list[str]]:
    cons = res["contenders"]
    cw = cons.get("causeway")
    rows: list[list[str]] = []
    if not cw:
        return [["Causeway was not measured", "", ""]]

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("met" if ok else "**missed**")

    d = cons.get("direct", {}).get("latency", {}).get("0ms/1k/c1")
    c = cw.get("latency", {}).get("0ms/1k/c1")
    if d and c:
        a50 = c["latency_us"]["p50"] - d["latency_us"]["p50"]
        a99 = c["latency_us"]["p99"] - d["latency_us"]["p99"]
        rows.append(["added p50 ≤ 60 µs (c=1, 1 KB, 0 ms upstream)", fmt_added(a50), verdict(a50 <= 60)])
        rows.append(["added p99 ≤ 200 µs (same)", fmt_added(a99), verdict(a99 <= 200)])
    best = {n: best_throughput(cons[n]) for n in cons}
    cb = best.get("causeway")
    for other, need, label in (("nginx", 0.5, "≥ 50% of nginx's"), ("litellm", 10, "≥ 10× LiteLLM's"),
                               ("portkey", 5, "≥ 5× Portkey's")):
        ob = best.get(other)
        if cb and ob:
            r = cb["rps"] / ob["rps"]
            shown = f"{r * 100:.0f}%" if other == "nginx" else f"{r:.1f}×"
            rows.append([f"throughput {label}", f"{cb['rps']:,.0f} vs {ob['rps']:,.0f} req/s ({shown})",
                         verdict(r >= need)])
    dt, ct = cons.get("direct", {}).get("ttft"), cw.get("ttft")
    if dt and ct:
        a = ct["ttft_us"]["p50"] - dt["ttft_us"]["p50"]
        rows.append(["added TTFT ≤ 0.5 ms (p50)", fmt_added(a), verdict(a <= 500)])
        rows.append(["inter-chunk timing preserved", f"gap p50 {ct['gap_ms']['p50']:.1f} ms, p99 "
                     f"{ct['gap_ms']['p99']:.1f} ms", verdict(preserved(ct))])
    s = cw.get("streams", {}).get("1024")
    if s:
        rows.append(["1,024 concurrent streams, no stall", f"{s['held']}/1024 held, longest silence "
                     f"{s['max_silence_ms']['max']:,.0f} ms", verdict(s["held"] == 1024)])
    m = cw.get("memory", {})
    if m.get("idle_kb"):
        rows.append(["RSS idle ≤ 25 MB", fmt_mb(m["idle_kb"]), verdict(m["idle_kb"] <= 25 * 1024)])
    p = (m.get("peak_streams_kb") or {}).get("1024")
    if p:
        rows.append(["RSS ≤ 150 MB holding 1,024 streams", fmt_mb(p), verdict(p <= 150 * 1024)])
    if m.get("idle_kb") and m.get("after_kb"):
        r = m["after_kb"] / m["idle_kb"]
        rows.append(["RSS back within 10% of idle after load", f"{fmt_mb(m['after_kb'])} ({r * 100 - 100:+.0f}%)",
                     verdict(r <= 1.10)])
    wh = res.get("wasm_hooks") or {}
    if "realistic_added_us" in wh:
        a = wh["realistic_added_us"]
        rows.append(["one WASM plugin (pre and post hooks) adds ≤ 30 µs p50",
                     f"+{a:.1f} µs (AssemblyScript `passthrough`, parses and returns what it gets)",
                     verdict(a <= 30)])
    return rows


def write_results_md(block: str) -> None:
    block = f"{BEGIN}\n{block.rstrip()}\n{END}"
    if RESULTS_MD.exists():
        text = RESULTS_MD.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            text = head + block + tail
        else:
            # Keep everything that is there; put the generated block right after the title.
            lines = text.splitlines(keepends=True)
            at = 1 if lines and lines[0].startswith("# ") else 0
            text = "".join(lines[:at]) + ("\n" if at else "") + block + "\n\n" + "".join(lines[at:]).lstrip("\n")
    else:
        text = "# Benchmark results\n\n" + block + "\n"
    RESULTS_MD.write_text(text)


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (under 3 minutes)")
    ap.add_argument("--only", default="", help="comma-separated contenders (default: all of "
                    + ",".join(CONTENDERS) + "); RESULTS.md is then not written")
    ap.add_argument("--command", default="bench/run.sh", help="command line shown in RESULTS.md")
    ap.add_argument("--render-only", action="store_true", help="re-render RESULTS.md from .work/results.json")
    ap.add_argument("--callgrind-only", action="store_true",
                    help="only count Causeway's instructions per request (prints them; RESULTS.md is left alone)")
    args = ap.parse_args()
    WORK.mkdir(exist_ok=True)
    if args.render_only:
        res = json.loads((WORK / "results.json").read_text())
        write_results_md(render(res, res.get("command", args.command)))
        return 0
    only = [s for s in args.only.split(",") if s]
    for name in only:
        if name not in CONTENDERS:
            ap.error(f"unknown contender {name}")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    (WORK / "pids").unlink(missing_ok=True)

    suite = Suite("quick" if args.quick else "full", only)
    if args.callgrind_only:
        try:
            mocks, _ = suite.start_mocks()
            cg = suite.callgrind(mocks)
        finally:
            PROCS.stop_all()
        (WORK / "callgrind.json").write_text(json.dumps(cg, indent=1))
        for label in ("1k", "10k", "1k_logged"):
            log(f"chat {label}: {cg[label]['per_request']:,.0f} instructions per request "
                f"({cg[label]['requests']} requests, {cg[label]['errors']} errors)")
        log(f"stream: {cg['stream']['per_stream']:,.0f} instructions per stream")
        for row in cg["top_1k"].get("causeway_inclusive", [])[:12]:
            log(f"  {row}")
        return 0
    try:
        suite.run()
    except KeyboardInterrupt:
        log("interrupted: stopping every process this run started")
        return 130
    finally:
        PROCS.stop_all()
    res = suite.results
    res["machine"] = machine()
    res["command"] = args.command
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (WORK / f"results-{stamp}.json").write_text(json.dumps(res, indent=1))
    (WORK / "results.json").write_text(json.dumps(res, indent=1))
    if only:
        log(f"partial run (--only): results in {WORK / 'results.json'}, RESULTS.md left as it was")
    else:
        write_results_md(render(res, args.command))
        log(f"wrote {RESULTS_MD.relative_to(ROOT)}")
    log(f"total {res['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
