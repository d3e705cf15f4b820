"""The answers in sections, each declared once with when it is shown and what it requires.

A `Section` is a group of answers asked together (the database connection, the TLS files, the
own buckets). Each `Ask` in it names one answer (a `FieldSpec` path) with:

- `platform`: the one platform it is asked on, if only one (the NodePort on Kubernetes, the
  images archive on Compose);
- `shown_when`: whether it applies to these answers otherwise (the Snowflake host only with
  Snowflake);
- `required_when`: whether the wizard goes on without it (the step's checks use it);
- `render_requires`: whether `render` and `deploy` refuse answers without it as well.

A section may also carry cross-field rules (`all_or_none`: both TLS files or neither;
`one_of`: at least one of its answers, for the wizard to go on, such as the proxy's URL;
`rules`: functions judging the section as a whole, such as the storage provider's secrets).

Every front end and every command reads these declarations: the wizard's steps list their
sections (installer/session/steps.py), the Textual screens and the plain prompts build their
fields and required markers from them, `Session.missing()` reports what a step lacks from
them, and `validate()` is the one judgement `render`, `deploy` and the wizard's Review apply.

They live here, beside `Answers` and `FieldSpec`, rather than in installer/session/, because
the render and deploy layers (below the session in the import contracts) apply them too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from installer.answers.checks import STORAGE_NEEDS, require_storage_secrets
from installer.answers.form import FieldSpec, field_spec
from installer.answers.model import STORAGE_PROVIDERS, Answers
from installer.errors import AnswersError

# A condition on the answers (the platform is `answers.platform`).
Predicate = Callable[[Answers], bool]
# A rule judging a section as a whole: raises AnswersError naming the key to fix.
Rule = Callable[[Answers], None]


def always(_: Answers) -> bool:
    return True


def never(_: Answers) -> bool:
    return False


@dataclass(frozen=True)
class Ask:
    """One answer of a section. `required_when` and `render_requires` are only asked when
    the section and the answer are shown."""

    path: str
    required_when: Predicate = never
    shown_when: Predicate = always
    render_requires: Predicate = never
    platform: str | None = None

    @property
    def spec(self) -> FieldSpec:
        return field_spec(self.path)

    def asked_on(self, platform: str) -> bool:
        return self.platform in (None, platform)

    def shown(self, answers: Answers) -> bool:
        return self.asked_on(answers.platform) and self.shown_when(answers)


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    asks: tuple[Ask, ...]
    shown_when: Predicate = always
    # The one platform the section is asked on, if only one.
    platform: str | None = None
    # Give every answer of the section or none; `none_means` says what none leads to. When
    # shown in a form, each of them is required.
    all_or_none: bool = False
    none_means: str = ""
    # When shown, the wizard does not go on until one of these answers is given (the first
    # is the one named); `one_of_missing` says what to do. Render and deploy do not require
    # it (they render such answers without the setting).
    one_of: tuple[str, ...] = ()
    one_of_missing: str = ""
    # The section judged as a whole, at render and when the wizard leaves its step.
    rules: tuple[Rule, ...] = ()

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(ask.path for ask in self.asks)

    def ask(self, path: str) -> Ask:
        return next(a for a in self.asks if a.path == path)

    def asked_on(self, platform: str) -> bool:
        return self.platform in (None, platform)

    def shown(self, answers: Answers) -> bool:
        return self.asked_on(answers.platform) and self.shown_when(answers)

    def shown_asks(self, answers: Answers) -> tuple[Ask, ...]:
        return tuple(a for a in self.asks if a.shown(answers))

    def is_required(self, path: str, answers: Answers) -> bool:
        """Whether a form showing this section refuses to go on without `path`."""
        return self.all_or_none or self.ask(path).required_when(answers)

    def required_paths(self, answers: Answers) -> tuple[str, ...]:
        return tuple(a.path for a in self.shown_asks(answers)
                     if self.is_required(a.path, answers))

    def given(self, path: str, answers: Answers) -> bool:
        value = field_spec(path).get(answers)
        return value is not None and value != ""

    def missing(self, answers: Answers) -> list[str]:
        """The answers this section still lacks for the wizard to go on (dotted paths)."""
        if not self.shown(answers):
            return []
        if self.all_or_none:
            partial = self.unpaired(answers)
            return [partial] if partial is not None else []
        out = [a.path for a in self.shown_asks(answers)
               if a.required_when(answers) and not self.given(a.path, answers)]
        none_given = self.none_of(answers)
        return out + [none_given] if none_given is not None else out

    def none_of(self, answers: Answers) -> str | None:
        """For a section with `one_of`: the answer to name when none of them is given (the
        section shown); None when one is, or the section has no such rule."""
        if not self.one_of or not self.shown(answers):
            return None
        if any(self.given(p, answers) for p in self.one_of):
            return None
        return self.one_of[0]

    def unpaired(self, answers: Answers) -> str | None:
        """For an all-or-none section: the first answer missing while another is given."""
        given = [self.given(p, answers) for p in self.paths]
        if not any(given) or all(given):
            return None
        return self.paths[given.index(False)]

    def check(self, answers: Answers, *, secrets: bool = True) -> None:
        """What render and deploy refuse: raises AnswersError for the first problem.
        `secrets=False` leaves out the secrets required (for work that reads none)."""
        if not self.shown(answers):
            return
        for a in self.shown_asks(answers):
            if not secrets and a.spec.secret:
                continue
            if a.render_requires(answers) and not self.given(a.path, answers):
                raise AnswersError(a.path, "is required for this command",
                                   f"add {a.path} to the answers file")
        if self.all_or_none:
            missing = self.unpaired(answers)
            if missing is not None:
                others = " and ".join(self.paths)
                raise AnswersError(missing, f"is required when the other {self.title} file is "
                                   "given", f"give both {others}, or neither {self.none_means}")
        for rule in self.rules:
            rule(answers)


# --- conditions ----------------------------------------------------------------------------


def on_compose(a: Answers) -> bool:
    return a.platform == "compose"


def _over_ssh(a: Answers) -> bool:
    return a.target is not None


def _through_jump(a: Answers) -> bool:
    return a.target is not None and a.target.jump is not None


def _own_certificate(a: Answers) -> bool:
    return bool(a.tls.certificate_file or a.tls.key_file)


def _external_database(a: Answers) -> bool:
    return not a.database.bundled


def _database_tls(a: Answers) -> bool:
    return not a.database.bundled and a.database.ssl.enabled


def _external_redis(a: Answers) -> bool:
    return not a.redis.bundled


def _uses_snowflake(a: Answers) -> bool:
    return "snowflake" in a.network.warehouses


def _uses_databricks(a: Answers) -> bool:
    return "databricks" in a.network.warehouses


def _buckets_need_a_host(a: Answers) -> bool:
    return a.network.cloud in ("aws", "azure")


def _through_proxy(a: Answers) -> bool:
    return a.network.proxy is not None


def _own_buckets(a: Answers) -> bool:
    return a.storage is not None


def _provider_is(provider: str) -> Predicate:
    def chosen(a: Answers) -> bool:
        return a.storage is not None and a.storage.provider == provider

    return chosen


def _provider_needs(provider: str, path: str) -> Predicate:
    """Whether `provider` needs the answer, as STORAGE_NEEDS (installer/answers/checks.py)
    says (asked only when that provider is chosen)."""
    return always if path.removeprefix("storage.") in dict(STORAGE_NEEDS[provider]) else never


def _storage_secrets(a: Answers) -> None:
    if a.storage is not None and a.storage.provider:
        require_storage_secrets(a.storage)


def _asks(*paths: str, platform: str | None = None) -> tuple[Ask, ...]:
    return tuple(Ask(p, platform=platform) for p in paths)


# --- the sections --------------------------------------------------------------------------

KUBERNETES = Section("kubernetes", "Kubernetes cluster", _asks(
    "kubernetes.kubeconfig", "kubernetes.context", "kubernetes.namespace", "kubernetes.release",
    "kubernetes.service_type", "kubernetes.chart", "kubernetes.image_registry"),
    platform="kubernetes")
SSH = Section("ssh", "SSH connection", (
    Ask("target.host", required_when=always),
    *_asks("target.port", "target.user", "target.identity_file", "target.password",
           "target.known_hosts", "target.sudo")), shown_when=_over_ssh, platform="compose")
JUMP = Section("jump", "Jump host (bastion)", (
    Ask("target.jump.host", required_when=always),
    *_asks("target.jump.port", "target.jump.user")), shown_when=_through_jump,
    platform="compose")
DEPLOYMENT = Section("deployment", "Deployment", (
    Ask("compose.directory", required_when=always),), platform="compose")
DOMAIN = Section("domain", "Domain", (
    Ask("domain", required_when=always, render_requires=always),))
TLS = Section("tls", "TLS", _asks("tls.certificate_file", "tls.key_file"),
              shown_when=_own_certificate, all_or_none=True,
              none_means="to have a self-signed certificate generated")
DATABASE = Section("database", "Database", (
    Ask("database.host", required_when=always, render_requires=always),
    Ask("database.port"),
    Ask("database.admin_user"),
    # The wizard's connection test logs in as the admin. On Kubernetes the chart decides
    # whether its workloads need the admin at all (render/helm.require_admin_credentials).
    Ask("database.admin_password", required_when=always, render_requires=on_compose),
    Ask("database.admin_database"),
    Ask("database.user"),
    Ask("database.password", required_when=always, render_requires=always),
    Ask("database.database")), shown_when=_external_database)
DATABASE_TLS = Section("database_tls", "Database TLS",
                       _asks("database.ssl.mode", "database.ssl.ca_file"),
                       shown_when=_database_tls)
PACKAGE = Section("package", "Installation package", (
    Ask("package", required_when=always, render_requires=always),
    Ask("compose.images_archive", platform="compose")))
# Extra hosts the egress checks need, asked (and then required) only when the choice that
# needs them is made.
NETWORK_HOSTS = Section("network_hosts", "Hosts your choices need", (
    Ask("network.snowflake_account_url", required_when=always, shown_when=_uses_snowflake),
    Ask("network.databricks_host", required_when=always, shown_when=_uses_databricks),
    Ask("network.bucket_host", required_when=always, shown_when=_buckets_need_a_host)))
# Ticking the proxy (a `network.proxy` section) asks for its URL; an answers file may still
# give `network.proxy: {}`, which render and deploy take as no proxy.
PROXY = Section("proxy", "HTTP proxy", _asks(
    "network.proxy.http", "network.proxy.https", "network.proxy.no_proxy",
    "network.proxy.ca_file"), shown_when=_through_proxy,
    one_of=("network.proxy.https", "network.proxy.http"),
    one_of_missing="give the proxy's URL (HTTPS proxy at least), or untick the proxy")
# Each provider's own answers, in the order they are asked.
STORAGE_PROVIDER_FIELDS: dict[str, tuple[str, ...]] = {
    "gcp": ("storage.key_file", "storage.project_id"),
    "s3": ("storage.endpoint", "storage.region", "storage.access_key_id",
           "storage.secret_access_key"),
    "azure-blob": ("storage.account", "storage.account_key"),
}
STORAGE = Section("storage", "Own buckets", (
    Ask("storage.buckets.imports", required_when=always),
    Ask("storage.buckets.thumbnails", required_when=always),
    Ask("storage.buckets.import_bucket"),
    *(Ask(path, required_when=_provider_needs(provider, path),
          shown_when=_provider_is(provider))
      for provider in STORAGE_PROVIDERS for path in STORAGE_PROVIDER_FIELDS[provider])),
    shown_when=_own_buckets, rules=(_storage_secrets,))
ADVANCED = Section("advanced", "Advanced settings", (
    *_asks("network.trusted_ca_file", "google_maps_api_key"),
    *_asks("compose.registry", "compose.registry_username", "compose.registry_password",
           platform="compose"),
    *_asks("kubernetes.image_pull_username", "kubernetes.image_pull_password",
           "kubernetes.node_port", platform="kubernetes")))
# Asked by no wizard step (an external Redis is set in the answers file only).
REDIS = Section("redis", "Redis", (
    Ask("redis.host", required_when=always, render_requires=always),),
    shown_when=_external_redis)

# In the order `validate` judges them, so the first problem named is the one render and
# deploy always named first (the package, then the domain).
SECTIONS = (PACKAGE, KUBERNETES, SSH, JUMP, DEPLOYMENT, DOMAIN, TLS, DATABASE, DATABASE_TLS,
            REDIS, NETWORK_HOSTS, PROXY, STORAGE, ADVANCED)


def validate(answers: Answers, platform: str | None = None, *, secrets: bool = True) -> None:
    """What `render` and `deploy` (and the wizard before its Review) need of the answers,
    for `platform` (default: the answers'). Raises AnswersError (exit 2) naming the first
    key to fix; a file that cannot be read is judged when it is read.

    `secrets=False`: the secrets may still be missing (work that reads none of them, such as
    rendering the chart to learn what it consumes)."""
    if platform is not None and platform != answers.platform:
        answers = dataclasses.replace(answers, platform=platform)
    for section in SECTIONS:
        section.check(answers, secrets=secrets)


def unpaired_tls_file(answers: Answers) -> str | None:
    """The TLS file missing when only one of the certificate and its key is given, as a
    dotted key; None when both or neither are (neither: a self-signed certificate)."""
    return TLS.unpaired(answers)


def require_tls_pair(answers: Answers) -> None:
    TLS.check(answers)


def section_of(path: str) -> Section | None:
    return next((s for s in SECTIONS if path in s.paths), None)
