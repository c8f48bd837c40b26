"""`python -m pipeline.results.index`: ``reports/results/README.md``, one line per report of the results preset.

The folder holds every result set ever aggregated (``<section>[-<tag>].md`` / ``.json`` from
:mod:`pipeline.results.run`, ``compare-<B>-vs-<A>`` from :mod:`pipeline.results.compare`), most of them variants
that were tried and not adopted. The index says, per report, what made it: the command its runs recorded
(:mod:`pipeline.results.provenance`) when they did, and the last commit that changed the file (date and subject,
which for older reports names the command and the verdict). A report that differs from its last commit, or was
never committed, is marked so. :mod:`pipeline.results.run` and :mod:`pipeline.results.compare` rewrite the index
after every report they write.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import typer

from pipeline.config import project_root
from pipeline.errors import one_line_errors
from pipeline.io import atomic
from pipeline.results import provenance

INDEX = "README.md"
SECTIONS = ("phase1", "phase2", "laq", "compare")  # file-name prefixes, in the index's order
SUBJECT_CHARS = 240  # longer commit subjects are cut (the full message: git log -1 -- <report>)


@dataclass(frozen=True)
class Commit:
    """The last commit that changed a file: short hash, date (YYYY-MM-DD), subject."""

    short: str
    date: str
    subject: str


def last_commits(root: Path, folder: Path) -> dict[str, Commit]:
    """File path (relative to ``root``) -> the newest commit that changed it, for every file ever under ``folder``
    (one ``git log`` pass; empty outside git)."""
    log = subprocess.run(["git", "log", "--format=%x00%h%x09%cs%x09%s", "--name-only", "--", str(folder)],
                         cwd=root, capture_output=True, text=True)
    newest: dict[str, Commit] = {}
    for entry in log.stdout.split("\0")[1:] if log.returncode == 0 else []:
        header, _, names = entry.partition("\n")
        short, date, subject = header.split("\t", 2)
        for name in names.split():
            newest.setdefault(name, Commit(short, date, subject))
    return newest


def made_by(json_path: Path) -> str:
    """The recorded command of a report's runs (the first seed's; compare reports: both sets'), or ''."""
    if not json_path.is_file():
        return ""
    report = json.loads(json_path.read_text())
    records = report.get("provenance") or {}
    sets = records.values() if "a" in report else [records]  # compare reports: one record set per tag
    commands = []
    for per_seed in sets:
        recorded = [rec for rec in (per_seed or {}).values() if rec]
        if recorded:
            commands.append(f"`{recorded[0]['command']}`")
    return "; ".join(commands)


def section_of(name: str) -> str:
    """The section prefix of a report's file name (``phase2-data-seed7.md`` -> ``phase2``)."""
    return next((s for s in SECTIONS if name == f"{s}.md" or name.startswith(f"{s}-")), "other")


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def lines(reports: Path, root: Path) -> list[str]:
    """The index as Markdown lines."""
    folder = reports.resolve()
    if folder.is_relative_to(root.resolve()):
        folder = folder.relative_to(root.resolve())
    commits, changed = last_commits(root, folder), provenance.changed_paths(root, str(folder)) or set()
    out = ["# Results reports", "",
           "Written by `python -m pipeline.results.index` (also after every `pipeline.results.run` and "
           "`pipeline.results.compare`): one row per report in this folder. `<section>.md` is the preset without "
           "overrides (the defaults of the commit its runs name), `<section>-<tag>.md` a variant or another world (`-S` overrides; most were tried and "
           "not adopted: the README's Results section names the reports behind each claim). \"Made by\" is the "
           "command the runs recorded (reports aggregated before runs kept one leave it empty); \"last commit\" "
           "is the newest commit that changed the report, whose subject says what the variant was and what became "
           "of it. Kept per-seed runs (`runs/<tag>/seed<N>/`) stay out of git; `--aggregate-only` rebuilds a report "
           "from them.", ""]
    paths = sorted(p for p in reports.glob("*.md") if p.name != INDEX)
    for section in (*SECTIONS, "other"):
        rows = [p for p in paths if section_of(p.name) == section]
        if not rows:
            continue
        out += [f"## {section} ({len(rows)})", "", "| report | made by | last commit |", "|---|---|---|"]
        for path in sorted(rows, key=lambda p: (commits.get(str(folder / p.name), Commit("", "9999", "")).date,
                                                p.name), reverse=True):
            key = str(folder / path.name)
            commit = commits.get(key)
            if commit is None:
                history = "not committed yet"
            else:
                subject = commit.subject if len(commit.subject) <= SUBJECT_CHARS else commit.subject[:SUBJECT_CHARS] + " …"
                history = f"{commit.date} {commit.short}: {subject}" + (" (changed since)" if key in changed else "")
            out.append(f"| [{path.stem}]({path.name}) | {_cell(made_by(path.with_suffix('.json')))} | {_cell(history)} |")
        out.append("")
    return out


def write(reports: Path, root: Path) -> Path:
    """Write ``reports/README.md`` (atomically) and return its path."""
    path = reports / INDEX
    atomic.write_text(path, "\n".join(lines(reports, root)))
    return path


app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(reports: Path = typer.Option(Path("reports/results"), help="Folder of the reports.")) -> None:
    typer.echo(f"wrote {write(reports, project_root())}")


if __name__ == "__main__":
    app()
