"""What a check returns (`CheckResult`) and what a run of checks returns (`Report`)."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field

from checker.errors import ChecksFailed


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one workspace."""

    name: str
    passed: bool
    points: int
    max_points: int
    messages: list[str] = field(default_factory=list)
    hint: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    """The results of several checks on one workspace."""

    workspace: str
    results: list[CheckResult]

    @property
    def score(self) -> int:
        return sum(r.points for r in self.results)

    @property
    def max_score(self) -> int:
        return sum(r.max_points for r in self.results)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def __getitem__(self, name: str) -> CheckResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "workspace": self.workspace,
            "score": self.score,
            "max_score": self.max_score,
            "checks": [r.to_dict() for r in self.results],
        }

    def failures(self) -> list[str]:
        """One line per failed check, each followed by its messages and its hint."""
        lines = []
        for r in self.results:
            if r.passed:
                continue
            lines.append(f"{r.name}: {r.points}/{r.max_points}")
            lines.extend(f"  - {m}" for m in r.messages)
            if r.hint:
                lines.append(f"  hint: {r.hint}")
        return lines

    def raise_for_failure(self) -> None:
        """Raise `ChecksFailed` listing what failed; return quietly when all passed.

        End an nbgrader grade cell with this call: the cell errors (scores 0) exactly when a check
        fails, and prints nothing to stderr when all pass.
        """
        if not self.passed:
            failed = [f"{r.name} {r.points}/{r.max_points}" for r in self.results if not r.passed]
            summary = (
                f"{len(failed)} check(s) failed ({', '.join(failed)}): "
                "the report above says what to fix and which cell to revisit"
            )
            raise ChecksFailed("\n".join(["Some checks failed:", *self.failures()]), summary)

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.results] + [5])
        rows = [f"{'check':<{width}}  result  points", f"{'-' * width}  ------  ------"]
        for r in self.results:
            mark = "pass" if r.passed else "FAIL"
            rows.append(f"{r.name:<{width}}  {mark:<6}  {r.points:>2}/{r.max_points}")
            if not r.passed:
                rows.extend(f"{'':<{width}}    - {m}" for m in r.messages)
                if r.hint:
                    rows.append(f"{'':<{width}}    hint: {r.hint}")
        rows.append(f"{'total':<{width}}          {self.score:>2}/{self.max_score}")
        return "\n".join(rows)

    def _repr_html_(self) -> str:
        esc = html.escape
        body = []
        for r in self.results:
            # Words and a plain check mark (in every common font), not emoji, and not colour alone.
            mark = (
                "<span style='color:#1a7f37;font-weight:bold'>✓ pass</span>"
                if r.passed
                else "<span style='color:#cf222e;font-weight:bold'>✗ FAIL</span>"
            )
            details = "".join(f"<li>{esc(m)}</li>" for m in r.messages)
            if r.hint and not r.passed:
                details += f"<li><em>hint: {esc(r.hint)}</em></li>"
            body.append(
                f"<tr><td>{mark}</td><td><code>{esc(r.name)}</code></td>"
                f"<td>{r.points}/{r.max_points}</td>"
                f"<td style='text-align:left'><ul style='margin:0'>{details}</ul></td></tr>"
            )
        return (
            f"<div><strong>Checker: {self.score}/{self.max_score}</strong> "
            f"<span style='color:gray'>{esc(self.workspace)}</span>"
            "<table><thead><tr><th>result</th><th>check</th><th>points</th><th>details</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>"
        )
