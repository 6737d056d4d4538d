"""The Dockerfile read as data: its stages' instructions, so tests can hold it against the code."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == instruction]

    def env(self) -> dict[str, str]:
        values = {}
        for arguments in self.all("ENV"):
            for key, value in re.findall(r"(\w+)=(\S+)", arguments):
                values[key] = value
        return values

    def exec_form(self, instruction: str) -> list[str]:
        (arguments,) = self.all(instruction)
        return json.loads(arguments.split("CMD", 1)[-1].strip()) if instruction == "HEALTHCHECK" else json.loads(arguments)


def parse(path: Path = ROOT / "Dockerfile") -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = shlex.split(rest)
            stages.append(Stage(words[-1] if "AS" in [w.upper() for w in words] else str(len(stages))))
            stages[-1].instructions.append(("FROM", words[0]))
        elif stages:
            stages[-1].instructions.append((instruction, rest.strip()))
        elif instruction == "ARG":
            name, _, default = rest.partition("=")
            arguments[name] = default
    return arguments, stages
