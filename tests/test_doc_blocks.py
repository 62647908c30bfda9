"""Every fenced code block of README.md and docs/*.md runs as a user would copy-paste it.

The blocks are found in the files, never listed here: each ```python block and each
```bash / ```sh / ```shell block is one test, named by its page and the line of its opening
fence (``docs/index.md:35``), so a failure names the block.

Python blocks run in a fresh process of this virtualenv's python, each in its own temporary
working directory (appsdk's local store, spool and outbox live in ``.appsdk/`` there), with
an environment built from nothing: a temporary HOME and TMPDIR, ``.venv/bin`` first on PATH,
no ``APPSDK_*``, ``LANGFUSE_*``, ``OTEL_*`` or proxy variables. The llm-d simulator this
module starts on 127.0.0.1 is the gateway: the docs tell users the client finds it at
``OPENAI_BASE_URL`` (as openai's does), so that variable names it, with ``OPENAI_API_KEY``
set as an openai user has it. The processes run in parallel. A block must exit 0 and write
nothing to stderr; when it configures appsdk and calls observed functions or a model, its
local store must hold their spans, and every generation's trace must have reached the
gateway in ``traceparent``.

Shell blocks run as one ``bash -e -o pipefail`` script, in a temporary working directory
(HOME and environment as above) that has ``.venv`` linked in, so ``.venv/bin/appsdk ...``
works as written. Commands that serve until stopped (``SERVING``: ``appsdk sim``) are
started, must say where they listen and answer there, and are stopped; a block holding one
runs command by command. Commands that are the set-up itself are not run (``SETUP``, each
with its reason): they must stand in blocks of their own, which are reported as skipped
with the reasons (a ``make`` target must still exist in the Makefile).

Blocks of the languages in ``SHOWN`` (``text``, ``json``, ...) are not run; a fence with no
language or another one fails ``test_every_block_and_marker_is_understood``, as does a
marker that is malformed or not attached to a fence. Markers, HTML comments (invisible on
the site) on the lines right above a fence (blank lines between are allowed), say more:

- ``<!-- doc-test: skip: <reason> -->``: the block needs what the test cannot provide (a
  real Langfuse project, another external service); it is reported as skipped with the
  reason. Nothing else is skipped, but for the set-up commands above.
- ``<!-- doc-test: save-as: <path> -->``: the docs tell the user to save this block as
  ``<path>``; the blocks after it on the same page find the file in their working directory.
  The page must name the path in the text above the block.
- ``<!-- doc-test: env: <NAME>=<value> -->``: the docs tell the user to set ``NAME``; the test
  sets it to ``value`` for this block. The block or the text above it must name ``NAME``.

A block that fails because of a bug in appsdk (not in the docs) is listed in ``KNOWN_BUGS``
with the bug: it is a strict xfail, so the fix makes the suite say so.
"""

from __future__ import annotations

import ast
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from appsdk import sim
from appsdk.store import TraceStore

ROOT = Path(__file__).resolve().parent.parent
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
BIN = Path(sys.executable).parent  # the repository's .venv/bin when run as the README says
PYTHON = frozenset({"python", "py"})
SHELL = frozenset({"bash", "sh", "shell"})
SHOWN = frozenset({"text", "json", "toml", "yaml", "yml", "ini", "env"})  # never executed
MODEL_CALLS = frozenset({"chat", "complete", "embed", "create"})
TIMEOUT_S = 60.0

# Commands that are the set-up itself, by their first words: running them here would install
# packages or recurse into this very suite.
SETUP: dict[tuple[str, ...], str] = {
    ("make", "demo"): "the set-up itself: it creates .venv and installs the package before "
    "running examples/rag_pipeline.py, which tests/test_examples.py runs",
    ("make", "test"): "runs this test suite (ruff, mypy, the docs build, pytest): it would recurse",
    ("pip", "install"): "installs packages: the set-up, done before the tests run",
    ("python", "-m", "pip", "install"): "installs packages: the set-up, done before the tests run",
}
# Commands that serve until stopped, and the path that must answer once they are up.
SERVING: dict[tuple[str, ...], str] = {("appsdk", "sim"): "/v1/models"}

# Blocks that fail because of a bug in appsdk, by id: a strict xfail each.
KNOWN_BUGS: dict[str, str] = {}

MARKER = re.compile(r"^<!--\s*doc-test:\s*(?P<kind>[\w-]+):\s*(?P<value>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    source: str
    prose: str  # the page's text between the previous block and this one
    markers: tuple[tuple[str, str], ...]
    files: tuple[tuple[str, str], ...]  # (path, content) saved by earlier blocks of the page

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def marker(self, kind: str) -> list[str]:
        return [value for k, value in self.markers if k == kind]


@dataclass(frozen=True)
class Page:
    blocks: tuple[Block, ...]
    problems: tuple[str, ...]  # stray or malformed markers, unclosed fences


def parse(page: Path) -> Page:
    lines = page.read_text(encoding="utf-8").splitlines()
    name = page.relative_to(ROOT)
    blocks: list[Block] = []
    files: list[tuple[str, str]] = []
    problems: list[str] = []
    attached: set[int] = set()
    prose_start = 0
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), None)
        if end is None:
            problems.append(f"{name}:{i + 1}: the fence is never closed")
            break
        markers: list[tuple[str, str]] = []
        k = i - 1
        while k >= prose_start and (not lines[k].strip() or MARKER.match(lines[k].strip())):
            found = MARKER.match(lines[k].strip())
            if found:
                markers.insert(0, (found["kind"], found["value"]))
                attached.add(k)
            k -= 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end]
        ]
        block = Block(
            page=page,
            line=i + 1,
            lang=(opening["info"].split() or [""])[0].lower(),
            source="\n".join(body) + "\n",
            prose="\n".join(lines[prose_start:i]),
            markers=tuple(markers),
            files=tuple(files),
        )
        blocks.append(block)
        for path in block.marker("save-as"):
            files.append((path, block.source))
        prose_start = i = end + 1
    for number, line in enumerate(lines):
        if "doc-test" not in line:
            continue
        found = MARKER.match(line.strip())
        if found is None:
            problems.append(f"{name}:{number + 1}: malformed doc-test marker: {line.strip()}")
        elif found["kind"] not in ("skip", "save-as", "env"):
            problems.append(f"{name}:{number + 1}: unknown doc-test marker {found['kind']!r}")
        elif number not in attached:
            problems.append(f"{name}:{number + 1}: a doc-test marker not right above a fence")
    return Page(tuple(blocks), tuple(problems))


PARSED = {page: parse(page) for page in PAGES}
BLOCKS = [block for page in PARSED.values() for block in page.blocks]
RUN = [block for block in BLOCKS if block.lang in PYTHON | SHELL]


# --- shell commands ---------------------------------------------------------------------------


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote (a heredoc's text, say): bash decides when run
        return line.split("#", 1)[0].split()


def commands(source: str) -> list[str]:
    """The block's commands: logical lines (continuations joined), comments and blanks dropped."""
    logical: list[str] = []
    pending = ""
    for line in source.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [line for line in logical if _split(line)]


def words(command: str) -> tuple[str, ...]:
    """The command's words, the program named as on PATH (``.venv/bin/appsdk`` is ``appsdk``)."""
    split = _split(command)
    return (Path(split[0]).name, *split[1:])


def matching(command: str, table: dict[tuple[str, ...], str]) -> str | None:
    said = words(command)
    return next((value for key, value in table.items() if said[: len(key)] == key), None)


def setup_reasons(block: Block) -> list[str]:
    return [
        f"`{shlex.join(words(command))}`: {reason}"
        for command in commands(block.source)
        if (reason := matching(command, SETUP)) is not None
    ]


# --- python blocks ----------------------------------------------------------------------------


def environment(home: Path, gateway: str, block: Block) -> dict[str, str]:
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "OPENAI_BASE_URL": f"{gateway}/v1",
        "OPENAI_API_KEY": "doc-test-key",
    }
    for assignment in block.marker("env"):
        name, _, value = assignment.partition("=")
        env[name] = value
    return env


def workdir(block: Block, where: Path) -> Path:
    (where / "home").mkdir()
    work = where / "work"
    work.mkdir()
    (work / ".venv").symlink_to(BIN.parent, target_is_directory=True)
    for path, content in block.files:
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return work


def run_python(block: Block, where: Path, gateway: str) -> subprocess.CompletedProcess[str]:
    work = workdir(block, where)
    (work / "snippet.py").write_text(block.source, encoding="utf-8")
    return subprocess.run(
        [str(BIN / "python"), "snippet.py"],
        cwd=work,
        env=environment(where / "home", gateway, block),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


@dataclass(frozen=True)
class Claims:
    """What a block's code says it records, read from its syntax tree."""

    configured: bool
    observed: frozenset[str]  # span names of the decorated functions it calls
    calls_a_model: bool


def _called(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def claims(source: str) -> Claims:
    tree = ast.parse(source)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    called = {_called(call.func) for call in calls}
    observed: set[str] = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in function.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if _called(target) != "observe" or function.name not in called:
                continue
            name = function.name
            if isinstance(decorator, ast.Call):
                for keyword in decorator.keywords:
                    if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                        name = str(keyword.value.value)
            observed.add(name)
    return Claims("configure" in called, frozenset(observed), bool(called & MODEL_CALLS))


def check_recorded(block: Block, work: Path, simulator: sim.Simulator) -> None:
    said = claims(block.source)
    if not said.configured or not (said.observed or said.calls_a_model):
        return
    path = work / ".appsdk" / "traces.db"
    assert path.exists(), f"{block.id} configured appsdk and traced calls, but stored no trace"
    store = TraceStore(path, create=False)
    try:
        spans = [s for t in store.list_traces(limit=1000) for s in store.spans(t.trace_id)]
    finally:
        store.close()
    names = {span.name for span in spans}
    assert said.observed <= names, f"{block.id}: {sorted(said.observed - names)} not in {names}"
    generations = {
        span.trace_id
        for span in spans
        if span.attributes.get("langfuse.observation.type") == "generation"
    }
    if said.calls_a_model:
        assert generations, f"{block.id} called a model, but no generation was stored: {names}"
    parents = [request.headers.get("traceparent", "").split("-") for request in simulator.received]
    reached = {parts[1] for parts in parents if len(parts) == 4}
    assert generations <= reached, f"{block.id}: traces that never reached the gateway"


# --- shell blocks -----------------------------------------------------------------------------


def serve_and_stop(command: str, path: str, cwd: Path, env: dict[str, str]) -> None:
    """Start a command that serves forever, wait until it says where, ask it, stop it."""
    process = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        while True:
            line = lines.get(timeout=TIMEOUT_S)
            assert line is not None, f"`{command}` ended before serving:\n{''.join(seen)}"
            seen.append(line)
            if found := re.search(r"running on (http://\S+)", line, re.IGNORECASE):
                break
        answer = httpx.get(found[1] + path, timeout=TIMEOUT_S, trust_env=False)
        assert answer.status_code == 200, f"`{command}` answered {answer.status_code}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(TIMEOUT_S)


def run_shell(block: Block, where: Path, gateway: str) -> None:
    """The block as one ``bash -e`` script; one that starts a server, command by command."""
    work = workdir(block, where)
    env = environment(where / "home", gateway, block)
    every = commands(block.source)
    scripts = every if any(matching(c, SERVING) for c in every) else [block.source]
    for command in scripts:
        serving = matching(command, SERVING)
        if serving is not None:
            serve_and_stop(command, serving, work, env)
            continue
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        assert result.returncode == 0, f"`{command}` exited {result.returncode}:\n" + (
            result.stdout + result.stderr
        )


# --- the tests --------------------------------------------------------------------------------


def _param(block: Block) -> object:
    marks: list[pytest.MarkDecorator] = []
    skips = block.marker("skip")
    if skips:
        marks.append(pytest.mark.skip(reason=f"{block.id}: " + "; ".join(skips)))
    elif block.lang in SHELL and (reasons := setup_reasons(block)):
        marks.append(pytest.mark.skip(reason=f"{block.id}: " + "; ".join(reasons)))
    if block.id in KNOWN_BUGS:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[block.id]))
    return pytest.param(block, id=block.id, marks=marks)


def _skipped(block: Block) -> bool:
    return bool(block.marker("skip")) or (block.lang in SHELL and bool(setup_reasons(block)))


@pytest.fixture(scope="module")
def simulator() -> Iterator[sim.Simulator]:
    with sim.running() as running:
        yield running


@pytest.fixture(scope="module")
def python_runs(
    request: pytest.FixtureRequest,
    simulator: sim.Simulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Path, Future[subprocess.CompletedProcess[str]]]]]:
    """The selected python blocks, started at once, each in its own process and directory;
    each test waits for its own."""
    params = [getattr(item, "callspec", None) for item in request.session.items]
    chosen = [spec.params.get("block") for spec in params if spec is not None]
    selected = {block.id for block in chosen if isinstance(block, Block)}
    wanted = [b for b in RUN if b.lang in PYTHON and not _skipped(b) and b.id in selected]
    places = {b.id: tmp_path_factory.mktemp("doc-block") for b in wanted}
    with ThreadPoolExecutor(max_workers=max(1, len(wanted))) as pool:
        yield {
            b.id: (
                places[b.id] / "work",
                pool.submit(run_python, b, places[b.id], simulator.base_url),
            )
            for b in wanted
        }


@pytest.mark.parametrize("block", [_param(block) for block in RUN])
def test_doc_block(
    block: Block,
    simulator: sim.Simulator,
    python_runs: dict[str, tuple[Path, Future[subprocess.CompletedProcess[str]]]],
    tmp_path: Path,
) -> None:
    if block.lang in SHELL:
        run_shell(block, tmp_path, simulator.base_url)
        return
    work, future = python_runs[block.id]
    result = future.result()
    output = f"{block.id} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    assert result.returncode == 0, output
    assert not result.stderr, f"{block.id} wrote to stderr:\n{result.stderr}"
    check_recorded(block, work, simulator)


def test_every_block_and_marker_is_understood() -> None:
    problems = [problem for page in PARSED.values() for problem in page.problems]
    for block in BLOCKS:
        if block.lang not in PYTHON | SHELL | SHOWN:
            problems.append(f"{block.id}: a ```{block.lang or '(no language)'} block")
        for path in block.marker("save-as"):
            if block.lang in PYTHON | SHELL:
                problems.append(f"{block.id}: save-as on a block that is run")
            if path not in block.prose:
                problems.append(f"{block.id}: the text above never names {path}")
        for assignment in block.marker("env"):
            name = assignment.partition("=")[0]
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.+", assignment):
                problems.append(f"{block.id}: env marker is not NAME=value: {assignment}")
            elif name not in block.prose + block.source:
                problems.append(f"{block.id}: neither the block nor the text above names {name}")
        reasons = setup_reasons(block) if block.lang in SHELL else []
        if reasons and len(reasons) != len(commands(block.source)):
            problems.append(f"{block.id}: set-up commands mixed with others: split the block")
        for command in commands(block.source) if reasons else []:
            said = words(command)
            if said[0] == "make":
                target = re.compile(rf"^{re.escape(said[1])}:", re.MULTILINE)
                if not target.search((ROOT / "Makefile").read_text()):
                    problems.append(f"{block.id}: the Makefile has no target {said[1]}")
    ids = {block.id for block in RUN}
    problems += [
        f"KNOWN_BUGS names {key}, which is no block" for key in KNOWN_BUGS if key not in ids
    ]
    assert not problems, "\n".join(problems)
