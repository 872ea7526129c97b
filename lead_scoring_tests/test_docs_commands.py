"""Every documented command runs: each ``bash``/``sh`` code block of README.md and docs/ that
calls ``lead-scoring``, ``dagster``, ``dg`` or ``mlflow`` is run, in page order, in a scratch
copy of the repository root that shares one small demo database (the getting-started page's
``lead-scoring demo --contacts 2000`` block runs first and makes it).

- A block runs as one ``bash -euo pipefail`` script; it must exit 0.
- A block whose last line starts a server (``dg dev``, ``dagster dev``, ``mlflow ui``,
  ``lead-scoring serve`` …) runs in the background on a free port (its ``--port`` or ``-p``
  value replaced), must answer HTTP on it, and is then stopped.
- A block repeated word for word on a later page runs once.
- A block named in ``EXPECTED_OUTPUT`` must also print what is listed there.
- A block preceded by ``<!-- not-run: reason -->`` is not run; the reason is required. Keep
  these few: they are for commands that need other systems (a cluster, a production host).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
FIRST_PAGES = ["docs/getting-started.md", "README.md"]
"""Pages run first: the getting-started page makes the shared demo database."""

TOOLS = re.compile(r"(?:^|[\s;&|(])(?:\.venv/bin/)?(lead-scoring|dagster|dg|mlflow)(?=\s|$)")
SERVERS = re.compile(
    r"(?:\.venv/bin/)?(?:dg dev|dagster dev|dagster-webserver|mlflow ui|mlflow server"
    r"|lead-scoring serve)(?=\s|$)"
)
PORT = re.compile(r"(--port|-p)(\s+|=)(\d+)")
NOT_RUN = re.compile(r"\s*<!--\s*not-run:\s*(.*?)\s*-->\s*")
FENCE = re.compile(r"^\s*```(\w*)\s*$")
SHELLS = {"bash", "sh", "shell"}
SERVER_START_SECONDS = 180
BLOCK_SECONDS = 300
EXPECTED_OUTPUT = {
    ("docs/consent.md", "suppressions check"): [
        r"suppressed \(exit 1\)",
        r"not suppressed \(exit 0\)",
        r"line 4 refused: not a Mexican number: 5 digits",
    ],
    ("docs/ml/explanations.md", "lead-scoring explain"): [
        r"Conversion probability [0-9.]+%, decile \d+ of 10",
        r"everything else: [-+][0-9.]+; against the average contact \([0-9.]+%\)",
    ],
}
"""Output a block must print, by (page, a command its text contains): regular expressions."""


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    text: str
    not_run: str | None

    @property
    def runs_a_documented_tool(self) -> bool:
        return any(TOOLS.search(line) for line in _command_lines(self.text))

    @property
    def server_line(self) -> str | None:
        """The block's last command line when it starts a server."""
        lines = _command_lines(self.text)
        return lines[-1] if lines and SERVERS.search(lines[-1]) else None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _command_lines(text: str) -> list[str]:
    return [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def code_blocks(page: str, markdown: str) -> list[Block]:
    """The shell code blocks of a page, each with the not-run reason written just above it.
    A not-run comment that is not followed by a shell block is an error."""
    blocks, lines, i, pending = [], markdown.splitlines(), 0, None
    while i < len(lines):
        marker = NOT_RUN.fullmatch(lines[i])
        if marker:
            if not marker.group(1):
                raise ValueError(f"{page}:{i + 1}: a not-run comment needs its reason")
            pending = (marker.group(1), i + 1)
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if fence:
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith("```")), None
            )
            if end is None:
                raise ValueError(f"{page}:{i + 1}: unclosed code block")
            if pending and fence.group(1) not in SHELLS:
                raise ValueError(
                    f"{page}:{pending[1]}: not-run comment above a "
                    f"{fence.group(1) or 'plain'} block"
                )
            if fence.group(1) in SHELLS:
                blocks.append(
                    Block(
                        page,
                        i + 1,
                        textwrap.dedent("\n".join(lines[i + 1 : end])),
                        pending[0] if pending else None,
                    )
                )
            pending, i = None, end + 1
            continue
        if pending and lines[i].strip():
            raise ValueError(
                f"{page}:{pending[1]}: a not-run comment must be followed by its code block"
            )
        i += 1
    if pending:
        raise ValueError(f"{page}:{pending[1]}: a not-run comment must be followed by its block")
    return blocks


def documented_pages() -> list[str]:
    pages = ["README.md"] + sorted(
        str(p.relative_to(REPOSITORY)) for p in (REPOSITORY / "docs").rglob("*.md")
    )
    return FIRST_PAGES + [p for p in pages if p not in FIRST_PAGES]


def all_blocks() -> list[Block]:
    return [
        block
        for page in documented_pages()
        for block in code_blocks(page, (REPOSITORY / page).read_text())
    ]


BLOCKS = [block for block in all_blocks() if block.runs_a_documented_tool]
RUN_ONCE = [
    block
    for i, block in enumerate(BLOCKS)
    if not block.not_run and block.text not in {earlier.text for earlier in BLOCKS[:i]}
]
"""The blocks run: not the not-run ones (CI allows no skipped test), and a block repeated
word for word on another page once, where it first appears."""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch repository root: the virtual environment, the package and the project files
    linked or copied, its own ``data/``."""
    root = tmp_path_factory.mktemp("docs_commands")
    (root / ".venv").symlink_to(Path(sys.prefix))
    (root / "lead_scoring_assets").symlink_to(REPOSITORY / "lead_scoring_assets")
    for name in ("pyproject.toml", "workspace.yaml", "dagster.yaml"):
        shutil.copy(REPOSITORY / name, root / name)
    shutil.copytree(REPOSITORY / "deploy", root / "deploy")
    return root


def _environment(root: Path) -> dict[str, str]:
    """The caller's environment without the project's settings: the commands must say what
    they need (``DAGSTER_HOME`` above all)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEAD_SCORING_", "DAGSTER_", "MLFLOW_"))
    }
    return {**env, "PWD": str(root), "PYTHONUNBUFFERED": "1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    return process.stdout.read() if process.stdout else ""


def _serve(block: Block, root: Path) -> None:
    server = block.server_line
    found = PORT.search(server)
    assert found, f"{block.id}: a server command must give its port (--port or -p): {server}"
    port = _free_port()
    script = block.text.replace(
        server,
        "exec env " + PORT.sub(lambda m: f"{m.group(1)}{m.group(2)}{port}", server, count=1),
        1,
    )
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=root,
        env=_environment(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline, status = time.monotonic() + SERVER_START_SECONDS, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    status = answer.status
                break
            except urllib.error.HTTPError as error:
                status = error.code
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
    finally:
        output = _stop(process)
    assert status is not None and status < 500, (
        f"{block.id}: the server did not answer on port {port} (status {status}, exit "
        f"{process.returncode}):\n{output[-3000:]}"
    )


def _run(block: Block, root: Path) -> None:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=root,
        env=_environment(root),
        capture_output=True,
        text=True,
        timeout=BLOCK_SECONDS,
        check=False,
    )
    assert result.returncode == 0, (
        f"{block.id} failed (exit {result.returncode}):\n{block.text}\n--- stdout\n"
        f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )
    for pattern in _expected(block):
        assert re.search(pattern, result.stdout), (
            f"{block.id}: no {pattern!r} in\n" + (result.stdout[-3000:])
        )


def _expected(block: Block) -> list[str]:
    return [
        pattern
        for (page, command), patterns in EXPECTED_OUTPUT.items()
        if block.page == page and command in block.text
        for pattern in patterns
    ]


@pytest.mark.parametrize("block", RUN_ONCE, ids=[b.id for b in RUN_ONCE])
def test_documented_command_runs(block: Block, workdir: Path):
    if block.server_line:
        _serve(block, workdir)
    else:
        _run(block, workdir)


def test_each_expected_output_names_one_run_block():
    for page, command in EXPECTED_OUTPUT:
        named = [b for b in RUN_ONCE if b.page == page and command in b.text]
        assert len(named) == 1 and not named[0].server_line, (page, command, named)


def test_not_run_blocks_are_few_and_say_why():
    skipped = [b for b in BLOCKS if b.not_run]
    assert len(skipped) <= 8, [f"{b.id}: {b.not_run}" for b in skipped]
    assert all(len(b.not_run) >= 20 for b in skipped), "a not-run reason says why"


def test_the_marker_convention():
    page = """```bash
.venv/bin/lead-scoring db upgrade
```

<!-- not-run: needs the production cluster -->
```bash
kubectl apply -f x
```
```sh
mkdir -p data/dagster_home
```
```bash
DAGSTER_HOME=$PWD/data/dagster_home .venv/bin/dg dev --port 3000  # UI
```
```yaml
ops: {}
```
- in a list:

  ```bash
  .venv/bin/lead-scoring explain 1
  ```"""
    blocks = code_blocks("example.md", page)
    assert [(b.line, b.not_run) for b in blocks] == [
        (1, None),
        (6, "needs the production cluster"),
        (9, None),
        (12, None),
        (20, None),
    ]
    assert [b.runs_a_documented_tool for b in blocks] == [True, False, False, True, True]
    assert blocks[4].text == ".venv/bin/lead-scoring explain 1"
    assert blocks[3].server_line and not blocks[0].server_line
    with pytest.raises(ValueError, match="needs its reason"):
        code_blocks("x.md", "<!-- not-run: -->\n```bash\ndg dev\n```")
    with pytest.raises(ValueError, match="followed by its code block"):
        code_blocks("x.md", "<!-- not-run: a reason -->\nsome text\n```bash\ndg dev\n```")
    with pytest.raises(ValueError, match="above a yaml block"):
        code_blocks("x.md", "<!-- not-run: a reason -->\n```yaml\na: 1\n```")


def test_the_readme_commands_are_the_tested_ones():
    """The README's inline commands (its table of user interfaces) are lines of blocks this
    test runs, so they are tested too."""
    readme = (REPOSITORY / "README.md").read_text()
    inline = [
        c
        for c in re.findall(r"`([^`\n]+)`", readme)
        if re.search(r"\.venv/bin/(lead-scoring|dagster|dg|mlflow)\b", c)
    ]
    run_lines = [line for b in BLOCKS if not b.not_run for line in b.text.splitlines()]
    assert inline, "the README's table of user interfaces"
    for command in inline:
        assert any(command in line for line in run_lines), f"{command!r} is run by no block"
