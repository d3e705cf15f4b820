"""The preflight report in three shapes: JSON for scripts, JUnit for CI, text for people."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from installer import __version__
from installer.checks.base import CheckResult, Status
from installer.safetext import json_safe, visible

REPORT_VERSION = 1
CATEGORY_TITLES = {
    "host": "Host machine",
    "docker": "Docker",
    "k8s": "Kubernetes",
    "db": "Database",
    "net": "Network",
    "tls": "TLS certificate",
    "egress": "Outbound access (egress)",
    "license": "Installation package",
    "storage": "Own buckets",
}
MARKS = {
    Status.PASS: ("✔", "32"),
    Status.WARN: ("!", "33"),
    Status.FAIL: ("✘", "31"),
    Status.SKIP: ("-", "2"),
    Status.ERROR: ("?", "35"),
}


@dataclass
class Report:
    platform: str
    target: str
    results: Sequence[CheckResult]
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration_s: float = 0.0

    def summary(self) -> dict[str, int]:
        counts = {str(s): 0 for s in Status}
        for result in self.results:
            counts[str(result.status)] += 1
        return counts

    def has(self, status: Status) -> bool:
        return any(r.status == status for r in self.results)

    def exit_code(self, strict: bool = False, accepted: Sequence[str] = ()) -> int:
        """0 ok; 3 a check failed (or could not run); 4 warnings only with --strict."""
        from installer.checks.engine import is_named

        blocking = [r for r in self.results
                    if r.status in (Status.FAIL, Status.ERROR) and not is_named(r.id, accepted)]
        if blocking:
            return 3
        if strict and self.has(Status.WARN):
            return 4
        return 0

    def to_dict(self) -> dict[str, object]:
        return {
            "version": REPORT_VERSION,
            "tool_version": __version__,
            "platform": self.platform,
            "target": self.target,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "duration_s": round(self.duration_s, 3),
            "summary": self.summary(),
            "checks": [r.to_dict() for r in self.results],
        }

    def to_json(self) -> str:
        # json.dumps escapes C0 controls; json_safe escapes C1 too, so the JSON printed to a
        # terminal holds no raw control character (and still carries the same data).
        return json_safe(json.dumps(self.to_dict(), indent=2, ensure_ascii=False)) + "\n"

    def to_junit(self) -> str:
        counts = self.summary()
        suite = ET.Element(
            "testsuite",
            name=f"carto-installer preflight ({self.platform}, {self.target})",
            tests=str(len(self.results)),
            failures=str(counts["fail"]),
            errors=str(counts["error"]),
            skipped=str(counts["skip"]),
            time=f"{self.duration_s:.3f}",
            timestamp=self.started_at.isoformat(timespec="seconds"),
        )
        for result in self.results:
            case = ET.SubElement(suite, "testcase", classname=result.category,
                                 name=result.id, time=f"{result.duration_s:.3f}")
            detail = _detail(result)
            if result.status == Status.FAIL:
                ET.SubElement(case, "failure", message=result.message).text = detail
            elif result.status == Status.ERROR:
                ET.SubElement(case, "error", message=result.message).text = detail
            elif result.status == Status.SKIP:
                ET.SubElement(case, "skipped", message=result.message)
            elif result.status == Status.WARN:
                ET.SubElement(case, "system-out").text = f"WARNING: {detail}"
            else:
                ET.SubElement(case, "system-out").text = detail
        root = ET.Element("testsuites")
        root.append(suite)
        _visible_everywhere(root)
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"

    def to_text(self, *, color: bool = False, width: int = 80) -> str:
        safe = visible  # what checks quote from outside is shown, never acted on

        def paint(text: str, code: str) -> str:
            return f"\x1b[{code}m{text}\x1b[0m" if color else text

        lines = [paint(safe(f"CARTO Self-Hosted preflight: {self.platform} on {self.target}"),
                       "1"), ""]
        order: list[str] = []
        for result in self.results:
            if result.category not in order:
                order.append(result.category)
        indent = " " * 9
        for category in order:
            lines.append(paint(CATEGORY_TITLES.get(category, category), "1"))
            in_category = [r for r in self.results if r.category == category]
            shared = shared_fixes(in_category)
            grouped = {i for ids in shared.values() for i in ids}
            for result in in_category:
                mark, code = MARKS[result.status]
                head = safe(f"  {mark} {str(result.status):<5} {result.id}: {result.message}")
                wrapped = textwrap.wrap(head, width=width, subsequent_indent=indent)
                lines.append(paint(wrapped[0][:10], code) + wrapped[0][10:])
                lines.extend(wrapped[1:])
                if result.status in (Status.WARN, Status.FAIL, Status.ERROR):
                    if result.observed or result.required:
                        lines.extend(textwrap.wrap(
                            safe(f"observed {result.observed or '?'}; required "
                                 f"{result.required}"),
                            width=width, initial_indent=indent, subsequent_indent=indent))
                    if result.remediation and result.id not in grouped:
                        lines.extend(textwrap.wrap(
                            safe(f"fix: {result.remediation}"), width=width,
                            initial_indent=indent, subsequent_indent=indent + "     "))
            for remediation, ids in shared.items():
                lines.extend(textwrap.wrap(f"fix for {', '.join(ids)}:", width=width,
                                           initial_indent="  ", subsequent_indent="    "))
                lines.extend(textwrap.wrap(remediation, width=width, initial_indent="    ",
                                           subsequent_indent="    "))
            lines.append("")
        counts = self.summary()
        lines.append(
            f"{counts['pass']} passed, {_n(counts['warn'], 'warning')}, {counts['fail']} failed, "
            f"{counts['skip']} skipped, {_n(counts['error'], 'error')} in {self.duration_s:.1f} s"
        )
        lines.extend(textwrap.wrap(self.next_step(), width=width, subsequent_indent="      "))
        return "\n".join(lines) + "\n"

    def next_step(self) -> str:
        counts = self.summary()
        if counts["fail"] or counts["error"]:
            n = counts["fail"] + counts["error"]
            return (f"Next: fix the {_n(n, 'problem')} marked ✘ or ? above (each has a "
                    "fix: line), then run the preflight again.")
        if counts["warn"]:
            return ("Next: the machine meets the requirements; read the warnings above, then "
                    "continue with `carto-installer deploy`.")
        return "Next: all requirements are met; continue with `carto-installer deploy`."


def _visible_everywhere(element: ET.Element) -> None:
    """Every text and attribute of the report with control characters made visible: XML 1.0
    cannot hold most of them at all (the report would not parse), and none should reach a
    terminal that shows the file."""
    for node in element.iter():
        node.attrib = {key: visible(value) for key, value in node.attrib.items()}
        if node.text:
            node.text = visible(node.text)
        if node.tail:
            node.tail = visible(node.tail)


def fix_pattern(result: CheckResult) -> str:
    """A check's fix with its own subject (the host of egress.<host>) taken out, so fixes
    that differ only by the host they name are seen as one."""
    subject = result.id.split(".", 1)[1] if result.category == "egress" else ""
    fix = result.remediation
    return fix.replace(subject, "\0") if subject and "." in subject else fix


def shared_fixes(results: Sequence[CheckResult]) -> dict[str, list[str]]:
    """Fixes that two or more warned or failed checks share, as the text to show once and
    the ids it is for (six unreachable hosts need one fix, not six). A fix naming each
    check's own host is shown with "each of these hosts" in its place."""
    by_pattern: dict[str, list[str]] = {}
    for result in results:
        if result.status in (Status.WARN, Status.FAIL, Status.ERROR) and result.remediation:
            by_pattern.setdefault(fix_pattern(result), []).append(result.id)
    return {pattern.replace("\0", "each of these hosts"): ids
            for pattern, ids in by_pattern.items() if len(ids) > 1}


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _detail(result: CheckResult) -> str:
    parts = [result.message]
    if result.observed:
        parts.append(f"observed: {result.observed}")
    if result.required:
        parts.append(f"required: {result.required}")
    if result.remediation:
        parts.append(f"fix: {result.remediation}")
    return "\n".join(parts)
