"""What a check is, what it gets and what it returns."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from installer.yamldata import JSONObject

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.redact import Redactor
    from installer.target import Target


T = TypeVar("T")

# What a check leaves for the checks that depend on it (a version, the database's facts, the
# stage a probe reached), by name; each reader narrows the value it takes. Never reported.
CheckData: TypeAlias = dict[str, object]


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"


@dataclass
class Outcome:
    """What a check function returns; the engine adds id, title, timing."""

    status: Status
    message: str
    observed: str = ""
    remediation: str = ""
    required: str | None = None  # overrides the check's declared requirement text
    # For dependent checks, not reported. Any: deploy and upgrade read entries (the Compose
    # command) straight from here; checks get them from CheckContext.data as objects to narrow.
    data: dict[str, Any] = field(default_factory=dict)


def passed(message: str, observed: str = "", **data: object) -> Outcome:
    return Outcome(Status.PASS, message, observed, data=data)


def warned(message: str, observed: str = "", remediation: str = "", **data: object) -> Outcome:
    return Outcome(Status.WARN, message, observed, remediation, data=data)


def failed(message: str, observed: str = "", remediation: str = "", **data: object) -> Outcome:
    return Outcome(Status.FAIL, message, observed, remediation, data=data)


def skipped(reason: str) -> Outcome:
    return Outcome(Status.SKIP, reason)


def errored(message: str, remediation: str = "") -> Outcome:
    return Outcome(Status.ERROR, message, remediation=remediation)


@dataclass
class CheckResult:
    id: str
    category: str
    title: str
    status: Status
    required: str
    observed: str
    message: str
    remediation: str
    duration_s: float
    data: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        # What a check reports often quotes the outside world (os-release, a certificate's
        # names, a server's error): every front end shows it, so it is made safe once here.
        from installer.safetext import visible

        self.required = visible(self.required)
        self.observed = visible(self.observed)
        self.message = visible(self.message)
        self.remediation = visible(self.remediation)

    def to_dict(self) -> JSONObject:
        return {
            "id": self.id,
            "category": self.category,
            "title": self.title,
            "status": str(self.status),
            "required": self.required,
            "observed": self.observed,
            "message": self.message,
            "remediation": self.remediation,
            "duration_s": round(self.duration_s, 3),
        }


Resolver = Callable[[str], list[str]]


def system_resolver(name: str) -> list[str]:
    """All addresses `name` resolves to, IPv4 and IPv6, in resolver order without repeats."""
    infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


@dataclass
class CheckContext:
    """Everything a check may use. Checks never touch the machine except through `target`."""

    target: Target
    platform: str = "compose"
    answers: Answers | None = None
    redactor: Redactor | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    resolver: Resolver = system_resolver
    # Results of finished checks, by id; a check sees those of the checks it `needs`.
    results: dict[str, CheckResult] = field(default_factory=dict)
    # Per-run values shared between checks of one run (e.g. parsed package files).
    cache: dict[str, Any] = field(default_factory=dict)  # `_Once`s, or a test seam's value
    cache_lock: threading.Lock = field(default_factory=threading.Lock)

    def result(self, check_id: str) -> CheckResult | None:
        return self.results.get(check_id)

    def deployment_file(self, name: str) -> str | None:
        """A file of the vendor's deployment directory (docker-compose.yml, env.tpl, ...): from
        the target, or, while the directory is absent, from the release the answers name
        (compose.release), which render will lay down there. None when neither has it.
        Read once per run: host.ports, license.* and the egress list all read
        docker-compose.yml and env.tpl, and over SSH each read is several round trips
        through the one SFTP session."""
        return self.cached(f"deployment-file:{name}", lambda: self._deployment_file(name))

    def _deployment_file(self, name: str) -> str | None:
        import posixpath

        from installer.answers import ComposeSettings

        compose = self.answers.compose if self.answers else ComposeSettings()
        from installer.target import LinkRefused

        try:  # never through a link: LinkRefused reaches the caller
            data = self.target.read_deployment_file(posixpath.join(compose.directory, name),
                                                    compose.directory)
            return data.decode("utf-8", "replace")
        except LinkRefused:
            raise
        except (OSError, ValueError):  # absent or unreadable: the release may have it
            pass
        if not compose.release:
            return None
        from installer.errors import InputError
        from installer.release import ReleaseFile, read_release, release_file

        def load() -> list[ReleaseFile]:
            try:
                return read_release(str(compose.release))
            except InputError:
                return []

        files = self.cached(f"release:{compose.release}", load)
        member = release_file(files, name)
        return None if member is None else member.decode("utf-8", "replace")

    def data(self, check_id: str) -> CheckData:
        result = self.results.get(check_id)
        return result.data if result else {}

    def cached(self, key: str, compute: Callable[[], T]) -> T:
        """Compute a value once per run, even when several checks ask at the same time."""
        with self.cache_lock:
            if key not in self.cache:
                self.cache[key] = _Once(compute)
            once = self.cache[key]
        value: T = once.get()
        return value


class _Once(Generic[T]):
    def __init__(self, compute: Callable[[], T]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._done = False
        self._value: tuple[T] | None = None  # boxed: the value itself may be None
        self._error: BaseException | None = None

    def get(self) -> T:
        with self._lock:
            if not self._done:
                try:
                    self._value = (self._compute(),)
                except BaseException as exc:  # re-raised to every caller
                    self._error = exc
                self._done = True
        if self._error is not None:
            raise self._error
        assert self._value is not None  # done, and without an error
        return self._value[0]


CheckFunc = Callable[..., Outcome]


@dataclass(frozen=True)
class Check:
    """One entry of the catalog (REQUIREMENTS.md)."""

    id: str
    title: str
    required: str
    run: CheckFunc
    platforms: frozenset[str] = frozenset({"compose", "kubernetes"})
    timeout: float = 15.0
    needs: tuple[str, ...] = ()
    # Returns a reason to skip (e.g. "no answers file gives a domain"), or None to run.
    applies: Callable[[CheckContext], str | None] | None = None
    # For a family such as egress.<host>: the instances, as (id, title, argument).
    expand: Callable[[CheckContext], Sequence[tuple[str, str, object]]] | None = None

    @property
    def category(self) -> str:
        return self.id.split(".", 1)[0]


def category_of(check_id: str) -> str:
    return check_id.split(".", 1)[0]
