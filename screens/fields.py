"""The titles the front ends give to choices. Which answers each step shows, and when each is
shown and required, is the core's: the sections in installer/answers/sections.py, listed by
each step in installer/session/steps.py. This module imports no UI library: the plain prompts
use it without loading Textual.
"""

from __future__ import annotations

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

PROVIDER_TITLES = {"gcp": "Google Cloud Storage", "s3": "Amazon S3 / S3-compatible",
                   "azure-blob": "Azure Blob Storage"}
