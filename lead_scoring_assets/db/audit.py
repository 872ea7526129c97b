"""What an audit of staged rows returns: each rule's count of rows breaking it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Violations:
    """Rows breaking each rule of an audit, by rule name (all zero when the rows are sound)."""

    @property
    def failed(self) -> bool:
        return any(vars(self).values())

    def describe(self) -> str:
        return ", ".join(f"{n}: {c}" for n, c in vars(self).items() if c) or "all rules hold"


class AuditFailed(RuntimeError):
    """The staged rows break a rule: nothing was published."""

    def __init__(self, violations: Violations, table: str = "lead_scores"):
        super().__init__(f"the staged {table} rows were not published: {violations.describe()}")
        self.violations = violations
