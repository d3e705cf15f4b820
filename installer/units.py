"""Human-readable quantities for reports: both units, so nobody has to convert."""

from __future__ import annotations


def format_bytes(value: int) -> str:
    """e.g. 16.8 GB (15.6 GiB): GB as the vendor writes it, GiB as tools show it."""
    gb = value / 10**9
    gib = value / 2**30
    if value >= 10**9:
        return f"{gb:.1f} GB ({gib:.1f} GiB)"
    return f"{value / 10**6:.0f} MB ({value / 2**20:.0f} MiB)"
