"""Read program files from a directory, with errors that name the file, the field and the line."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from config.programs import Program, validate_program

# No program file nests arrays or inline tables more than a few levels; tomllib recurses once
# per level (and runs out of stack near a few hundred), so deeper files are refused first.
MAX_NESTING = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramError:
    file: str
    field: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ProgramFileErrors(Exception):
    """Every error found in a program directory; nothing is loaded when there is one."""

    def __init__(self, errors: list[ProgramError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def default_program_dir() -> Path:
    """Return the directory of the shipped demo programs."""
    return Path(str(resources.files("config") / "defaults"))


def load_programs(directory: Path | None) -> list[Program]:
    """Load and validate every ``*.toml`` of ``directory`` (default: the demo programs)."""
    return [program for _path, program in load_program_files(directory)]


def load_program_files(directory: Path | None) -> list[tuple[Path, Program]]:
    """Return each program of ``directory`` with the file it comes from (``load_programs``)."""
    directory = directory or default_program_dir()
    if not directory.is_dir():
        raise ProgramFileErrors(
            [ProgramError(file=str(directory), field="", line=None, message="not a directory")]
        )
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise ProgramFileErrors(
            [ProgramError(file=str(directory), field="", line=None, message="no *.toml files")]
        )
    programs: list[tuple[Path, Program]] = []
    errors: list[ProgramError] = []
    seen: dict[str, str] = {}
    for path in files:
        try:
            program = load_program_file(path)
        except ProgramFileErrors as exc:
            errors.extend(exc.errors)
            continue
        if program.id in seen:
            errors.append(
                ProgramError(
                    file=str(path),
                    field="id",
                    line=locate(path.read_text(encoding="utf-8"), ("id",)),
                    message=f"program id {program.id!r} is also used by {seen[program.id]}",
                )
            )
            continue
        seen[program.id] = str(path)
        programs.append((path, program))
    if errors:
        raise ProgramFileErrors(errors)
    return programs


def load_program_file(path: Path) -> Program:
    """Parse and validate one program file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProgramFileErrors(
            [ProgramError(file=str(path), field="", line=None, message=f"cannot read: {exc}")]
        ) from None
    deep = too_deep(text)
    if deep is not None:
        raise ProgramFileErrors(
            [
                ProgramError(
                    file=str(path),
                    field="",
                    line=deep,
                    message=f"arrays or inline tables nested more than {MAX_NESTING} deep",
                )
            ]
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's TOMLDecodeError only says "(at line N, column M)" in its text.
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(found.group(1)) if found else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ProgramFileErrors(
            [
                ProgramError(
                    file=str(path), field="", line=line, message=f"not valid TOML: {message}"
                )
            ]
        ) from None
    except RecursionError:  # the scan above missed a nesting tomllib recursed into
        raise ProgramFileErrors(
            [ProgramError(file=str(path), field="", line=None, message="nested too deeply")]
        ) from None
    try:
        return validate_program(data)
    except ValidationError as exc:
        errors = [
            ProgramError(
                file=str(path),
                field=_dotted(err["loc"]),
                line=locate(text, tuple(err["loc"])),
                message=_message(err),
            )
            for err in exc.errors()
        ]
        raise ProgramFileErrors(errors) from None
    except ValueError as exc:
        raise ProgramFileErrors(
            [
                ProgramError(
                    file=str(path), field="kind", line=locate(text, ("kind",)), message=str(exc)
                )
            ]
        ) from None


def too_deep(text: str, limit: int = MAX_NESTING) -> int | None:
    """Return the line where arrays and inline tables nest more than ``limit`` deep, if any.

    Brackets inside strings and comments do not count; a table header (``[a]``, ``[[a]]``)
    opens and closes on its line. An unterminated string is left for tomllib to report.
    """
    depth, line, i, size = 0, 1, 0, len(text)
    while i < size:
        char = text[i]
        if char == "#":
            end = text.find("\n", i)
            i = size if end < 0 else end
            continue
        if char in "\"'":
            quote = char * 3 if text.startswith(char * 3, i) else char
            j = i + len(quote)
            while j < size and not text.startswith(quote, j):
                if len(quote) == 1 and text[j] == "\n":
                    break  # unterminated
                j += 2 if char == '"' and text[j] == "\\" else 1
            line += text.count("\n", i, j)
            i = j + len(quote) if text.startswith(quote, j) else j
            continue
        if char == "\n":
            line += 1
        elif char in "[{":
            depth += 1
            if depth > limit:
                return line
        elif char in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return None


def _message(err: Any) -> str:
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown field (check its spelling against the README)"
    if err["type"] == "missing":
        return "required field is missing"
    return message


def _dotted(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def locate(text: str, loc: tuple[Any, ...]) -> int | None:
    """Return the line of ``text`` where the TOML value at ``loc`` is written, if it can be found.

    Tracks ``[table]`` and ``[[array.of.tables]]`` headers and ``key =`` lines; returns the line
    of the longest prefix of ``loc`` that the file spells out (a missing field points at its
    table's header, or nowhere for a top-level one).
    """
    current: tuple[Any, ...] = ()
    counters: dict[tuple[str, ...], int] = {}
    best_line: int | None = None
    best_len = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            name = tuple(p.strip() for p in line[2 : line.find("]]")].split("."))
            counters[name] = counters.get(name, -1) + 1
            current = _with_indices(name, counters)
            candidate: tuple[Any, ...] = current
            if tuple(loc) == current[:-1] and best_len < len(loc):
                # the error is about the whole array: point at its first table
                best_line, best_len = number, len(loc)
        elif line.startswith("["):
            current = _with_indices(
                tuple(p.strip() for p in line[1 : line.find("]")].split(".")), counters
            )
            candidate = current
        elif "=" in line:
            key = line.split("=", 1)[0].strip().strip('"')
            candidate = (*current, *key.split("."))
        else:
            continue
        size = len(candidate)
        if size > best_len and tuple(loc[:size]) == candidate:
            best_line, best_len = number, size
    return best_line


def _with_indices(name: tuple[str, ...], counters: dict[tuple[str, ...], int]) -> tuple[Any, ...]:
    # [[vesting.steps]] under [vesting] is ("vesting", "steps", i); a nested array of tables
    # inside an array of tables takes the parent's current index too.
    out: list[Any] = []
    for i in range(1, len(name) + 1):
        out.append(name[i - 1])
        if name[:i] in counters:
            out.append(counters[name[:i]])
    return tuple(out)
