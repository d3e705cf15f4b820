"""The answers: every choice the user makes, declared once (model.py), read from a file
(load.py), judged together (checks.py), written back and described as a JSON Schema (dump.py),
and offered as form fields to every front end (form.py).

Callers import from here; the modules are how the package is organised, not its interface.
"""

from installer.answers.checks import (
    check_advanced_answers,
    check_storage_answers,
    missing_storage_secrets,
    require,
    require_storage_secrets,
)
from installer.answers.dump import answers_to_dict, dump_answers, json_schema
from installer.answers.form import file_key
from installer.answers.load import (
    load_answers,
    parse_answers,
    require_secrets,
    unknown_key_problem,
    yaml_error_problem,
)
from installer.answers.model import (
    ANSWERS_VERSION,
    CLOUDS,
    FEATURES,
    PLATFORMS,
    SERVICE_TYPES,
    SSL_MODES,
    STORAGE_PROVIDERS,
    WAREHOUSES,
    Answers,
    ComposeSettings,
    DatabaseSettings,
    DatabaseSSL,
    JumpHost,
    KubernetesSettings,
    NetworkSettings,
    ProxySettings,
    RedisSettings,
    Secret,
    SSHSettings,
    StorageBuckets,
    StorageSettings,
    TLSSettings,
    setting,
)

__all__ = [
    "ANSWERS_VERSION",
    "CLOUDS",
    "FEATURES",
    "PLATFORMS",
    "SERVICE_TYPES",
    "SSL_MODES",
    "STORAGE_PROVIDERS",
    "WAREHOUSES",
    "Answers",
    "ComposeSettings",
    "DatabaseSSL",
    "DatabaseSettings",
    "JumpHost",
    "KubernetesSettings",
    "NetworkSettings",
    "ProxySettings",
    "RedisSettings",
    "SSHSettings",
    "Secret",
    "StorageBuckets",
    "StorageSettings",
    "TLSSettings",
    "answers_to_dict",
    "check_advanced_answers",
    "check_storage_answers",
    "dump_answers",
    "file_key",
    "json_schema",
    "load_answers",
    "missing_storage_secrets",
    "parse_answers",
    "require",
    "require_secrets",
    "require_storage_secrets",
    "setting",
    "unknown_key_problem",
    "yaml_error_problem",
]
