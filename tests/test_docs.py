"""The recipes on the pages: every shell and YAML block of README.md and docs/*.md is run here,
or says on its page, on the line before it, why it cannot run here (docs/testing.md, "The
recipes on the pages"). A block that does neither fails, named by page and line.

Shell blocks run in copies of the session's small run, each command once: README.md and the
docs repeat commands, and a copy where one ran has its effect already. YAML blocks are params
snippets, merged into a copy of params.yaml and loaded as the stages load it. The blocks of
docs/adding-a-style.md are tests/test_adding_a_style.py's: here they are only checked to be
ones it applies."""

import io
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import REPO, copy_run, dvc, in_its_shell, ready_for_make, s3_client, table_rows
from trainstyles import StageError
from trainstyles.pipeline.params import STYLES, Params, load_params

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
GUIDE = "docs/adding-a-style.md"  # its blocks are tests/test_adding_a_style.py's
SHELLS = {"sh", "bash", "shell", "console"}
YAMLS = {"yaml", "yml"}
# A fence may be indented (in a list) and of backticks or tildes.
FENCE = re.compile(r"^(\s*)(```|~~~)(\S*)\s*(.*)$")
# The mark of a block the test cannot run: an HTML comment, which a rendered page does not show.
MARKER = re.compile(r"^<!-- not run by the docs test: (?P<reason>.+?) -->$")
# What a page may give as the reason, at the start of its marker: what this machine lacks, a
# command too long for a test, or a command that CI runs (checked against .ci/run).
REASONS = (
    "needs a GPU",
    "needs Docker",
    "needs a second host",
    "needs GitHub",
    "needs AWS credentials",
    "takes minutes",
    "run by CI",
)
CI = REPO / ".ci" / "run"
# Commands that serve until stopped: each is started, asked for its page, and stopped.
SERVERS = ("tensorboard",)
PLACEHOLDER = "…"


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence
    language: str
    info: str  # the info string after the language
    text: str
    heading: str  # of the section it is in
    marker: str | None  # the reason its marker line gives

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def page_blocks(path: Path, root: Path = REPO) -> list[Block]:
    """The fenced blocks of a Markdown page, with the marker line before each, if any."""
    lines = path.read_text().splitlines()
    blocks, heading, last_text, index = [], "", "", 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            if re.match(r"#{1,6} ", lines[index]):
                heading = lines[index]
            if lines[index].strip():
                last_text = lines[index].strip()
            index += 1
            continue
        indent, fence, language, info = opening.groups()
        end = next((i for i in range(index + 1, len(lines)) if lines[i].strip() == fence), None)
        assert end is not None, f"{path.relative_to(root)}:{index + 1}: a block never closed"
        marker = MARKER.match(last_text)
        blocks.append(
            Block(
                page=str(path.relative_to(root)),
                line=index + 1,
                language=language,
                info=info,
                text="".join(line.removeprefix(indent) + "\n" for line in lines[index + 1 : end]),
                heading=heading,
                marker=marker["reason"] if marker else None,
            )
        )
        last_text, index = "", end + 1
    return blocks


def split_command_line(text: str) -> tuple[list[str], bool]:
    """A shell line's commands (`a && b` gives two; a comment is dropped), and whether a quote
    or a trailing backslash leaves it open, to be continued by the next line."""
    parts, start, quote, index = [], 0, None, 0
    while index < len(text):
        char = text[index]
        if char == "\\" and quote != "'":
            index += 2
            continue
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1].isspace()):
            break
        elif text.startswith("&&", index):
            parts.append(text[start:index])
            index = start = index + 2
            continue
        index += 1
    parts.append(text[start:index])
    is_open = quote is not None or text.endswith("\\")
    return [part.strip() for part in parts if part.strip()], is_open


def shell_commands(block: Block) -> list[str]:
    """The commands of a shell block in order; a console block's are its `$ ` lines."""
    lines = block.text.splitlines()
    if block.language == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    commands, pending = [], ""
    for line in lines:
        pending += line
        parts, is_open = split_command_line(pending)
        if is_open:
            pending += "\n"
            continue
        commands += parts
        pending = ""
    assert not pending, f"{block.where}: a quote or a backslash left open"
    return commands


def recipe(block: Block) -> tuple[str, str]:
    """How SCENES name a shell block: its page and its first command."""
    return block.page, (shell_commands(block) or [""])[0]


# The shell blocks that run, by scene: a scene is a copy of the small run of its own, where its
# blocks run in this order. The small run is committed there on `main`, with one commit after it,
# so that `HEAD~1` and `REV=main` name runs. Longest first: the scenes run two at a time.
SCENES = {
    "sweep": (("docs/noise.md", "make sweep"), ("docs/gpu.md", "make sweep")),
    "workspace": (
        ("README.md", "make repro"),
        ("README.md", "dvc metrics show"),
        ("README.md", "make report"),
        ("docs/comparing.md", "make report"),
        ("docs/comparing.md", "make report REV=main SAME_MACHINE=1"),
        ("README.md", "tensorboard --logdir logs"),
        ("docs/reproducibility.md", "python -m trainstyles.tools.machines --against HEAD"),
        ("docs/reproducibility.md", "make equivalence"),
        ("docs/reproducibility.md", "dvc repro -f"),
        ("docs/gpu.md", "dvc repro -f"),
        ("docs/bench.md", "python -m trainstyles.tools.bench --page"),
    ),
    "experiments": (("docs/comparing.md", "dvc exp run -S train_clipped.clip_norm=0.5"),),
    "s3 remote": (
        ("docs/comparing.md", "dvc remote add --default storage s3://my-bucket/trainstyles"),
    ),
    "shared directory": (
        ("docs/comparing.md", "dvc remote add --default storage /mnt/shared/trainstyles-dvc"),
        ("docs/comparing.md", "dvc push"),
    ),
    "cuda layer": (("docs/gpu.md", "make setup CUDA=1"), ("docs/gpu.md", "make gpu-check")),
}


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in page_blocks(page)]


def ci_commands() -> set[str]:
    return {line.strip() for line in CI.read_text().splitlines() if not line.startswith("#")}


def marker_problems(block: Block) -> list[str]:
    if not block.marker.startswith(REASONS):
        return [f"{block.where}: the marker's reason must start with one of {', '.join(REASONS)}"]
    if block.marker.startswith("run by CI"):
        missing = [command for command in shell_commands(block) if command not in ci_commands()]
        if missing:
            return [f"{block.where}: marked run by CI, but .ci/run does not run {missing}"]
    return []


def guide_problems(blocks: list[Block]) -> list[str]:
    """The guide's blocks must be those its test applies (an info string saying where the block
    goes) and the one console block of step 4, which it runs."""
    placed = re.compile(r"\b(file|after|before|append-to)=")
    others = [block for block in blocks if not placed.search(block.info)]
    checks = [b for b in others if b.language == "console" and b.heading.startswith("## 4.")]
    return [
        f"{block.where}: a block of the guide that tests/test_adding_a_style.py neither places "
        "nor runs"
        for block in others
        if block not in checks[:1]
    ]


def is_params_block(block: Block) -> bool:
    snippet = YAML(typ="safe").load(block.text)
    return isinstance(snippet, dict) and set(snippet) <= set(Params.model_fields)


def unexplained(blocks: list[Block], scenes=SCENES) -> list[str]:
    """Each block that is neither run here nor marked, or whose marker does not hold: one line
    each, naming its page and line; and each recipe of `scenes` that no page holds."""
    problems = guide_problems([block for block in blocks if block.page == GUIDE])
    run = {name for recipes in scenes.values() for name in recipes}
    named = set()
    for block in blocks:
        if block.page == GUIDE or block.language not in SHELLS | YAMLS:
            continue
        if block.marker is not None:
            problems += marker_problems(block)
            if block.language in SHELLS and recipe(block) in run:
                problems.append(f"{block.where}: marked, and run by tests/test_docs.py")
        elif block.language in YAMLS and not is_params_block(block):
            problems.append(f"{block.where}: a YAML block that is no params snippet: mark it")
        elif block.language in SHELLS and recipe(block) not in run:
            problems.append(
                f"{block.where}: a {block.language} block that no test runs and no marker "
                "explains: add it to a scene of tests/test_docs.py, or mark it (docs/testing.md)"
            )
        if block.language in SHELLS:
            if recipe(block) in named:
                problems.append(f"{block.where}: two blocks of the page begin with one command")
            named.add(recipe(block))
    problems += [f"tests/test_docs.py runs {name}, which no page holds" for name in run - named]
    return problems


def merge(target: dict, snippet: dict) -> None:
    for key, value in snippet.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


def apply_params_block(block: Block, path: Path) -> Params:
    """A params block pasted into params.yaml at `path`, which is then loaded as the stages load
    it: a recipe that params refuse raises its one-line StageError."""
    yaml = YAML()  # round-trip, as a reader's editor leaves the rest of the file
    params = yaml.load(path)
    merge(params, YAML(typ="safe").load(block.text))
    yaml.dump(params, path)
    return load_params(path)


def params_blocks() -> list[Block]:
    return [
        block
        for block in all_blocks()
        if block.language in YAMLS and block.marker is None and block.page != GUIDE
    ]


def test_every_shell_and_yaml_block_is_run_or_marked():
    blocks = all_blocks()
    assert len([block for block in blocks if block.language in SHELLS]) > 20
    assert unexplained(blocks) == []


def visible_text(path: Path) -> str:
    """What a reader sees of a rendered page outside its code: the text of the page as
    CommonMark renders it (GitHub too), without HTML comments and code."""
    from markdown_it import MarkdownIt  # noqa: PLC0415

    tokens = MarkdownIt("commonmark").parse(path.read_text())
    return "\n".join(token.content for token in tokens if token.type == "inline")


def test_no_rendered_page_shows_a_mark():
    marks = [block for block in all_blocks() if block.marker is not None]
    assert len(marks) > 5
    for page in PAGES:
        assert "not run by the docs test" not in visible_text(page).lower(), page.name


def test_a_mark_written_as_text_shows_and_counts_for_nothing(tmp_path):
    """The control: the old, visible form of a mark is seen by a reader and not by the test."""
    page = tmp_path / "page.md"
    page.write_text("*Not run by the docs test: needs a GPU.*\n\n```sh\nmake gpu\n```\n")
    assert "Not run by the docs test" in visible_text(page)
    [block] = page_blocks(page, tmp_path)
    assert block.marker is None


def test_an_unmarked_block_and_an_unfounded_marker_are_named_by_page_and_line(tmp_path):
    """The control: a new block that nothing runs (one in a list too), a marker with no reason
    it knows, and one that claims CI runs a command .ci/run does not."""
    page = tmp_path / "docs" / "new.md"
    page.parent.mkdir()
    blocks = {
        "": "make new",
        "<!-- not run by the docs test: too slow -->": "make slow",
        "<!-- not run by the docs test: run by CI -->": "make lint\nmake bench",
        "<!-- not run by the docs test: run by CI (the suite) -->": "make test-all  # and more",
    }
    text = "".join(f"{m}\n\n```sh\n{block}\n```\n\n" for m, block in blocks.items())
    page.write_text(text + "- a step:\n\n  ~~~bash\n  make listed\n  ~~~\n")
    problems = unexplained(page_blocks(page, tmp_path), scenes={})
    lines = ["docs/new.md:3", "docs/new.md:9", "docs/new.md:15", "docs/new.md:28"]
    assert [problem.split(": ")[0] for problem in problems] == lines
    assert "no test runs and no marker explains" in problems[0]
    assert "must start with one of" in problems[1]
    assert "['make bench']" in problems[2]
    assert "a bash block" in problems[3]


def test_the_guides_blocks_are_those_its_own_test_applies_or_runs(tmp_path):
    guide = [block for block in all_blocks() if block.page == GUIDE]
    assert len(guide) > 4
    assert guide_problems(guide) == []
    page = tmp_path / GUIDE
    page.parent.mkdir()
    page.write_text((REPO / GUIDE).read_text() + "\n## 6. More\n\n```sh\ndvc repro\n```\n")
    extra = page_blocks(page, tmp_path)
    assert [problem.split(": ")[0] for problem in unexplained(extra, scenes={})] == [
        f"{GUIDE}:{extra[-1].line}"
    ]


def test_the_commands_of_a_block_are_its_lines_split_at_and_and_without_comments():
    block = Block("x.md", 1, "sh", "", "", "", None)
    text = (
        "# a comment\n"
        "dvc exp run --queue -S 'a=0.25,2.0' && dvc exp run --run-all   # runs them\n"
        'export TF_CONFIG=\'{"task": 1,\n   "x": 2}\'\n'
        'echo "#1 && #2" \\\n  done\n'
    )
    assert shell_commands(Block(**{**block.__dict__, "text": text})) == [
        "dvc exp run --queue -S 'a=0.25,2.0'",
        "dvc exp run --run-all",
        'export TF_CONFIG=\'{"task": 1,\n   "x": 2}\'',
        'echo "#1 && #2" \\\n  done',
    ]
    console = Block(**{**block.__dict__, "language": "console", "text": "$ make x  # y\nout\n"})
    assert shell_commands(console) == ["make x"]


@pytest.mark.parametrize("block", params_blocks(), ids=lambda block: block.where)
def test_each_params_block_pasted_into_params_yaml_loads(block, tmp_path):
    assert is_params_block(block)
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    apply_params_block(block, path)


def yaml_text(data: dict) -> str:
    stream = io.StringIO()
    YAML(typ="safe").dump(data, stream)
    return stream.getvalue()


def multi_gpu_recipe() -> Block:
    [block] = [
        block
        for block in params_blocks()
        if block.page == "docs/distribution.md" and "multi-GPU" in block.heading
    ]
    return block


def test_the_multi_gpu_recipe_without_one_step_per_call_is_refused(tmp_path):
    """The control: docs/distribution.md's recipe as it once was, without `steps_per_execution:
    1`, must fail the runner that passes the page's own."""
    block = multi_gpu_recipe()
    recipe = YAML(typ="safe").load(block.text)
    assert recipe["train"].pop("steps_per_execution") == 1
    if not recipe["train"]:
        del recipe["train"]
    broken = Block(**{**block.__dict__, "text": yaml_text(recipe)})
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    with pytest.raises(StageError, match=r"train\.steps_per_execution = 32 must be 1"):
        apply_params_block(broken, path)


# What the pages say, held to what exists: links, the house words, records, the comment.


def prose(path: Path) -> str:
    """A page's Markdown outside its fenced blocks, which hold commands and output, not links."""
    lines, fence = [], None
    for line in path.read_text().splitlines():
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening[2]
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is None:
            lines.append(line)
    return "\n".join(lines)


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation but `-` and `_`
    dropped, spaces as `-`, and `-1`, `-2`, … after a repeated one."""
    anchors, seen = set(), {}
    for line in prose(path).splitlines():
        if heading := re.match(r"#{1,6} (.+)", line):
            anchor = re.sub(r"[^\w\- ]", "", heading[1].strip().lower()).replace(" ", "-")
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            anchors.add(f"{anchor}-{count}" if count else anchor)
    return anchors


def broken_links(path: Path, root: Path = REPO) -> list[str]:
    """Each link of a page to a file of the repository that does not exist, or to a heading
    that its page does not have."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(path)):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{path.relative_to(root)}: {target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"{path.relative_to(root)}: {target}: no such heading")
    return broken


def test_every_link_of_a_page_names_a_file_and_a_heading_that_exist(tmp_path):
    assert [problem for page in PAGES for problem in broken_links(page)] == []
    # The control: a heading renamed, a page moved, and a heading that exists.
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text(
        "## Same-machine A/B\n\nSee [a](#same-machine-ab), [b](other.md), [c](#same-machine)."
    )
    assert broken_links(page, tmp_path) == [
        "docs/page.md: other.md: no such file",
        "docs/page.md: #same-machine: no such heading",
    ]


GLOSSARY = REPO / "docs" / "glossary.md"
# The project's own words, as a page uses them, and their entry in docs/glossary.md.
HOUSE_WORDS = {
    "machine-kind-kind": r"\bmachine kinds?\b|\bkinds? of machine\b|\b(CPU|GPU) kinds?\b",
    "stand-in-record": r"\bstand-in records?\b|\bstanding in for\b|\bnearest,? stand(s|ing) in\b",
    "fit-based-styles": r"\bfit-based\b",
    "cuda-layer": r"\bCUDA layer\b",
}


def undefined_words(path: Path, root: Path = REPO) -> list[str]:
    """Each house word a page uses, outside its code, without a link to its glossary entry."""
    text = visible_text(path)
    links = prose(path)
    return [
        f"{path.relative_to(root)}: {re.search(words, text)[0]!r} without a link to "
        f"glossary.md#{entry}"
        for entry, words in HOUSE_WORDS.items()
        if re.search(words, text) and f"glossary.md#{entry})" not in links
    ]


def test_each_house_word_a_page_uses_links_its_definition(tmp_path):
    assert set(HOUSE_WORDS) <= heading_anchors(GLOSSARY)
    assert "(docs/glossary.md)" in prose(REPO / "README.md")
    pages = [page for page in PAGES if page != GLOSSARY]
    assert [problem for page in pages for problem in undefined_words(page)] == []
    # The control: the word used with no link, and the same word linked.
    page = tmp_path / "page.md"
    page.write_text("Trained on another machine kind.\n")
    assert undefined_words(page, tmp_path) == [
        "page.md: 'machine kind' without a link to glossary.md#machine-kind-kind"
    ]
    page.write_text("Trained on another [machine kind](docs/glossary.md#machine-kind-kind).\n")
    assert undefined_words(page, tmp_path) == []


def named_records(text: str) -> set[str]:
    return set(re.findall(r"sweep/[a-z0-9-]+\.json", text))


def test_every_sweep_record_a_page_names_is_committed():
    named = {record for page in PAGES for record in named_records(page.read_text())}
    assert named, "no page names a sweep record"
    assert sorted(record for record in named if not (REPO / record).is_file()) == []
    # The control: a record no kind has committed.
    assert named_records("`sweep/nvidia-h200.json`") == {"sweep/nvidia-h200.json"}
    assert not (REPO / "sweep/nvidia-h200.json").exists()


def test_the_comment_shows_the_rows_beyond_noise_and_folds_the_rest(monkeypatch):
    """docs/comparing.md's "Reading the comment", on a made-up diff: the params that changed,
    the verdict, a table of the metrics beyond noise alone, and every other row folded under
    the summary line the page quotes."""
    from trainstyles.tools import report  # noqa: PLC0415
    from trainstyles.tools.noise import Reference, summary  # noqa: PLC0415

    runs = [0.861, 0.874, 0.868, 0.880, 0.857]
    record = {"runs": [{}] * len(runs), "summary": {"train_raw": {
        "test_accuracy": summary(runs), "epochs_run": summary([10.0] * len(runs)),
    }}}  # fmt: skip
    diffs = {
        "params": {"params.yaml": {"train_raw.epochs": {"old": 10, "new": 9, "diff": -1}}},
        "metrics": {
            "metrics/train_raw.json": {
                "test_accuracy": {"old": 0.87, "new": 0.871, "diff": 0.001},
                "epochs_run": {"old": 10, "new": 9, "diff": -1},
            },
            "metrics/timing/train_raw.json": {"train_seconds": {"old": 9, "new": 8, "diff": -1}},
        },
    }
    monkeypatch.setattr(report, "dvc_diff", lambda kind, revision: diffs[kind])
    monkeypatch.setattr(report, "run_machines", lambda revision=None: dict.fromkeys(STYLES))
    reference = Reference(record, Path("sweep/a-kind.json"), "Judged by a-kind.")
    section = report.diff_section("main", reference, {}, same_machine=False)
    shown, folded = section.split("<details>")
    assert shown.index("**Params changed**") < shown.index("**1 of 2 changed metrics")
    assert [row[1] for row in table_rows(shown, "`metrics/train_raw.json`")] == ["`epochs_run`"]
    summary_line = "<summary>2 more rows: within noise, or not judged</summary>"
    assert folded.startswith(summary_line)
    assert {row[1] for row in table_rows(folded, "`metrics/train_raw.json`")} == {"`test_accuracy`"}
    assert table_rows(folded, "`metrics/timing/train_raw.json`")
    quoted = summary_line.removeprefix("<summary>").removesuffix("</summary>").replace("2", "N")
    assert f'"{quoted}"' in (REPO / "docs" / "comparing.md").read_text()


# Running the shell blocks: the slow tier, but for the runner's own control.


@dataclass
class Scene:
    """A copy of the small run where recipes run, in the environment a reader's shell has."""

    repo: Path
    env: dict
    paths: dict  # a path a page names → the test's stand-in for it
    done: set  # the commands run here so far
    stood_in: set  # the paths of `paths` that a command named


def scene(small_run: Path, tmp_path: Path, **env: str) -> Scene:
    repo = ready_for_make(copy_run(small_run, tmp_path / "repo"))
    for command in (["branch", "-M", "main"], ["commit", "-q", "--allow-empty", "-m", "after"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    (tmp_path / "tmp").mkdir()
    reader = {  # inside the environment, with the copy's own code (in_its_shell)
        "TMPDIR": str(tmp_path / "tmp"),
        # `make test` is the fast tier, which this suite runs itself: here, one of its modules.
        "PYTEST_ADDOPTS": "-p no:cacheprovider tests/test_tiers.py",
        "JOBS": "1",
        # The sweep's fewest runs: the sweep, not its statistics, is what is run here.
        "SEEDS": "2",
    }
    return Scene(repo, in_its_shell(repo, {**reader, **env}), {}, set(), set())


def filled(command: str, scene: Scene) -> str:
    """A command with the test's stand-ins for the paths a page names and, for each `NAME=…`
    (a value the reader fills in), the scene's own NAME."""
    for path, stand_in in scene.paths.items():
        if path in command:
            scene.stood_in.add(path)
            command = command.replace(path, stand_in)
    command = re.sub(rf"\b([A-Z_][A-Z0-9_]*)={PLACEHOLDER}", r'\1="$\1"', command)
    assert PLACEHOLDER not in command, f"a placeholder the docs test does not fill: {command}"
    return command


def run_shell(commands: list[str], scene: Scene) -> None:
    """The commands in one bash, stopping at the first that fails, as a reader's shell would."""
    script = ["set -euo pipefail"]
    for command in commands:
        script += [f"printf '\\n$ %s\\n' {shlex.quote(command)}", filled(command, scene)]
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=scene.repo, env=scene.env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(result.stdout[-4000:])


def serve(command: str, scene: Scene) -> None:
    """A server started as the page says, asked for the page it says it serves, and stopped."""
    server = subprocess.Popen(
        ["bash", "-c", f"exec {filled(command, scene)}"], cwd=scene.repo, env=scene.env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not (url := re.search(r"http://\S+", "".join(lines))):
            assert server.poll() is None and time.monotonic() < deadline, "".join(lines)[-4000:]
            time.sleep(0.5)
        with urllib.request.urlopen(url[0], timeout=30) as page:
            assert page.status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_block(block: Block, scene: Scene) -> None:
    """The block's commands that have not run in this scene yet; a server's one at a time."""
    todo = [command for command in shell_commands(block) if command not in scene.done]
    scene.done.update(todo)
    batch = []
    for command in [*todo, None]:
        if command is None or command.startswith(SERVERS):
            if batch:
                run_shell(batch, scene)
            if command:
                serve(command, scene)
            batch = []
        else:
            batch.append(command)


def run_scene(recipes: tuple, scene: Scene) -> Scene:
    blocks = {recipe(block): block for block in all_blocks() if block.language in SHELLS}
    for name in recipes:
        block = blocks[name]
        try:
            run_block(block, scene)
        except AssertionError as failure:
            pytest.fail(f"{block.where}: the recipe fails:\n{failure}", pytrace=False)
    return scene


def test_a_recipe_runs_filled_in_and_stops_at_its_first_failing_command(tmp_path):
    """The control of the shell runner: a block passes only if each of its commands succeeds."""
    copy = Scene(tmp_path, {**os.environ, "TOKEN": "s3cret"}, {}, set(), set())
    copy.paths["/mnt/shared"] = str(tmp_path / "shared")
    text = 'export TOKEN=…\necho "$TOKEN" > /mnt/shared\nfalse && touch never\ntouch after\n'
    block = Block("docs/x.md", 1, "sh", "", text, "", None)
    with pytest.raises(AssertionError, match=r"\$ false\n$"):
        run_block(block, copy)
    assert (tmp_path / "shared").read_text() == "s3cret\n"
    assert not (tmp_path / "never").exists() and not (tmp_path / "after").exists()
    run_block(block, copy)  # each command once in a scene: nothing is left to fail


CUDA_LAYER_INSTALLED = (Path(sys.prefix) / ".cuda-installed").exists()


@pytest.fixture(scope="module")
def scene_runs(request, small_run, s3_server, tmp_path_factory) -> dict[str, Future]:
    """The selected scenes, started at once and run two at a time, each in its copy. There the
    pages' S3 bucket is on the test's server, and their shared directory is a temporary one."""
    chosen = {
        item.callspec.params["name"]
        for item in request.session.items
        if item.originalname == test_the_pages_recipes_run_in_a_copy_of_the_small_run.__name__
    }
    s3_client(s3_server).create_bucket(Bucket="my-bucket")
    work = tmp_path_factory.mktemp("scenes")
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {}
        for name, recipes in SCENES.items():
            if name in chosen and (name != "cuda layer" or CUDA_LAYER_INSTALLED):
                place = work / name.replace(" ", "-")
                place.mkdir()
                copy = scene(small_run, place, AWS_ENDPOINT_URL=s3_server)
                copy.paths["/mnt/shared"] = str(place / "shared")
                runs[name] = pool.submit(run_scene, recipes, copy)
        yield runs
        for run in runs.values():
            run.cancel()


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENES)
def test_the_pages_recipes_run_in_a_copy_of_the_small_run(name, scene_runs):
    if name not in scene_runs:
        pytest.skip("the CUDA layer is not installed here: `make setup CUDA=1` would download it")
    copy = scene_runs[name].result()
    for path in copy.stood_in:
        assert list(Path(copy.paths[path]).rglob("*")), f"nothing was written to {path}'s stand-in"


@pytest.mark.slow
def test_a_params_block_that_changes_the_run_trains_a_style_with_it(small_run, tmp_path):
    """Where a block changes the run's params, and asks for no GPU, a style trains with them."""
    trained = []
    for index, block in enumerate(params_blocks()):
        pasted = tmp_path / f"{index}.yaml"
        pasted.write_text((small_run / "params.yaml").read_text())
        params = apply_params_block(block, pasted)
        if params != load_params(small_run / "params.yaml") and params.train.device != "gpu":
            copy = copy_run(small_run, tmp_path / str(index))
            apply_params_block(block, copy / "params.yaml")
            dvc(copy, "repro", STYLES[0])
            trained.append(block.where)
    assert multi_gpu_recipe().where in trained


@pytest.mark.slow
def test_the_device_line_the_pages_quote_is_the_one_a_trainer_prints(
    small_run, tmp_path, monkeypatch
):
    """Each `<style>: training on …` a page quotes is the line a trainer prints: on the CPU as
    a trainer prints it here, on a GPU as `gpu_name` names one."""
    import tensorflow as tf  # noqa: PLC0415

    from trainstyles.pipeline import gpu  # noqa: PLC0415

    if gpu.driver_cuda_version():
        pytest.skip("an NVIDIA driver is present here: the CPU line is not the one printed")
    copy = copy_run(small_run, tmp_path / "repo")
    output = dvc(copy, "repro", "--force", "--single-item", STYLES[-1])
    [printed] = [line for line in output.splitlines() if ": training on " in line]
    assert printed == f"{STYLES[-1]}: training on CPU:0"
    details = {"device_name": "NVIDIA H200", "compute_capability": (9, 0)}
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda device: details)
    on_gpu = printed.replace("CPU:0", gpu.gpu_name(0, None))
    quotes = [
        (page.name, style, device)
        for page in PAGES
        for style, device in re.findall(r"(\w+): training on ([^`\n]+)", page.read_text())
    ]
    assert {device for _, _, device in quotes} >= {"CPU:0", "GPU:0 ("}
    for page, style, device in quotes:
        assert style in STYLES, page
        line = f"{STYLES[-1]}: training on {device}"
        assert line == printed or (device.startswith("GPU") and on_gpu.startswith(line)), page
    # The control: a line that no trainer prints matches neither.
    stale = "training on the CPU"
    assert f"{STYLES[-1]}: {stale}" != printed and not on_gpu.startswith(f"{STYLES[-1]}: {stale}")
