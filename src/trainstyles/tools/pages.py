"""The pages whose figures are generated, and the helpers that write them.

Light on purpose (no plotting, no TensorFlow): the report, the sweep and the bench all write
here, and the bench must not pay for the report's imports.
"""

from pathlib import Path

README = Path("README.md")  # the table of the committed run (`make report`)
NOISE_PAGE = Path("docs/noise.md")  # the seed sweep's tables (`make sweep`)
BENCH_PAGE = Path("docs/bench.md")  # the bench's tables (`make bench`)


def replace_block(page: Path, name: str, text: str) -> bool:
    """Put `text` between the page's `<!-- name -->` and `<!-- /name -->` lines, if it has them:
    figures in the docs come from the command that measures them, not from an editor."""
    content = page.read_text() if page.is_file() else ""
    start, end = f"<!-- {name} -->\n", f"<!-- /{name} -->"
    if start not in content or end not in content:
        return False
    before, rest = content.split(start, 1)
    page.write_text(f"{before}{start}{text}\n{end}{rest.split(end, 1)[1]}")
    return True


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, as the report, the sweep and the bench write theirs."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def cell(value, digits: int = 4, sign: str = "") -> str:
    """A value as a table cell shows it: a figure rounded to `digits`; params diffs also bring
    strings, lists and booleans."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and abs(value) >= 1000):
        return f"{value:{sign},.0f}"
    if isinstance(value, float):
        return f"{value:{sign}.{digits}f}"
    return str(value)
