"""Which answers each wizard step shows, in display order, and the titles the front ends give
to choices. The fields themselves (`FieldSpec`, `field_spec`) are the core's:
installer/answers/form.py. This module imports no UI library: the plain prompts use it without
loading Textual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The answers each wizard step asks for, in display order. The screens, the plain prompts and
# the tests read these lists, so a field added here appears in both front ends.
SSH_FIELDS = ("target.host", "target.port", "target.user", "target.identity_file",
              "target.password", "target.known_hosts", "target.sudo")
JUMP_FIELDS = ("target.jump.host", "target.jump.port", "target.jump.user")
COMPOSE_TARGET_FIELDS = ("compose.directory",)
KUBERNETES_FIELDS = ("kubernetes.kubeconfig", "kubernetes.context", "kubernetes.namespace",
                     "kubernetes.release", "kubernetes.service_type", "kubernetes.chart",
                     "kubernetes.image_registry")
TLS_FIELDS = ("tls.certificate_file", "tls.key_file")
DATABASE_FIELDS = ("database.host", "database.port", "database.admin_user",
                   "database.admin_password", "database.admin_database", "database.user",
                   "database.password", "database.database")
DATABASE_SSL_FIELDS = ("database.ssl.mode", "database.ssl.ca_file")
LICENSE_FIELDS = ("package", "compose.images_archive")
PROXY_FIELDS = ("network.proxy.http", "network.proxy.https", "network.proxy.no_proxy",
                "network.proxy.ca_file")
# Extra hosts the egress checks need, shown only when the choice that needs them is made.
def _uses_snowflake(a: Any) -> bool:
    return "snowflake" in a.network.warehouses


def _uses_databricks(a: Any) -> bool:
    return "databricks" in a.network.warehouses


def _buckets_need_a_host(a: Any) -> bool:
    return a.network.cloud in ("aws", "azure")


NETWORK_HOST_FIELDS: dict[str, Callable[[Any], bool]] = {
    "network.snowflake_account_url": _uses_snowflake,
    "network.databricks_host": _uses_databricks,
    "network.bucket_host": _buckets_need_a_host,
}

CHOICE_TITLES = {
    "gcp": "Google Cloud",
    "aws": "AWS",
    "azure": "Azure",
    "other": "Other / none",
    "bigquery": "BigQuery",
    "carto-dw": "CARTO Data Warehouse",
    "snowflake": "Snowflake",
    "databricks": "Databricks",
    "postgres": "PostgreSQL",
    "redshift": "Amazon Redshift",
    "oracle": "Oracle",
    "ai_agents": "AI Agents",
    "lds": "Location Data Services",
    "feature_flags": "Feature flags (LaunchDarkly)",
    "workload_identity": "Workload Identity Federation",
}

# The Advanced settings (screens/advanced.py and the plain prompts' advanced questions).
STORAGE_COMMON_FIELDS = ("storage.buckets.imports", "storage.buckets.thumbnails",
                         "storage.buckets.import_bucket")
STORAGE_PROVIDER_FIELDS: dict[str, tuple[str, ...]] = {
    "gcp": ("storage.key_file", "storage.project_id"),
    "s3": ("storage.endpoint", "storage.region", "storage.access_key_id",
           "storage.secret_access_key"),
    "azure-blob": ("storage.account", "storage.account_key"),
}
PROVIDER_TITLES = {"gcp": "Google Cloud Storage", "s3": "Amazon S3 / S3-compatible",
                   "azure-blob": "Azure Blob Storage"}
# Required (beyond the two main buckets) for each provider, as installer/answers/checks.py checks.
STORAGE_REQUIRED = {"storage.key_file", "storage.access_key_id", "storage.secret_access_key",
                    "storage.account", "storage.account_key", "storage.buckets.imports",
                    "storage.buckets.thumbnails"}
ADVANCED_COMMON_FIELDS = ("network.trusted_ca_file", "google_maps_api_key")
ADVANCED_PLATFORM_FIELDS: dict[str, tuple[str, ...]] = {
    "compose": ("compose.registry", "compose.registry_username", "compose.registry_password"),
    "kubernetes": ("kubernetes.image_pull_username", "kubernetes.image_pull_password",
                   "kubernetes.node_port"),
}
