"""Outbound HTTPS from the target: `hosts` lists which hosts CARTO needs and whether each goes
through the proxy; `probe` reaches one of them stage by stage and names the stage that failed."""
