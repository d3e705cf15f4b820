"""`docker login` on the target, for images from a registry that needs one (Compose).

The password goes to `docker login --password-stdin` on its standard input: never on a command
line (where `ps` shows it), never in a file of ours. Docker itself then stores the login in
`~/.docker/config.json` of the user that runs Compose (root with `target.sudo`), readable by
that user only (mode 0600, base64, not encrypted, unless a credential helper is configured):
the README says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from installer.errors import DeployError
from installer.target import CommandNotFound

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.target import Target

LOGIN_TIMEOUT = 60.0


def login_argv(registry: str, username: str) -> list[str]:
    return ["docker", "login", "--username", username, "--password-stdin",
            registry.split("/", 1)[0]]


def docker_login(answers: Answers, target: Target, *, sudo: bool) -> str | None:
    """Log in when the answers name a registry login; returns what was done, None if none."""
    compose = answers.compose
    if not (compose.registry and compose.registry_username and compose.registry_password):
        return None
    argv = login_argv(compose.registry, compose.registry_username)
    try:
        result = target.run(argv, input=compose.registry_password.value.encode("utf-8"),
                            timeout=LOGIN_TIMEOUT, sudo=sudo)
    except CommandNotFound:
        raise DeployError(f"docker is not installed on {target.name}",
                          "install Docker (see the docker.engine check)") from None
    except TimeoutError:
        raise DeployError(f"`docker login {compose.registry}` did not answer within "
                          f"{LOGIN_TIMEOUT:g} s", "check that the target reaches the registry "
                          "(and network.proxy, which the Docker engine needs set on its own)"
                          ) from None
    if not result.ok:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise DeployError(f"`docker login {compose.registry}` as {compose.registry_username} "
                          f"failed: {reason[-1] if reason else 'no reason given'}",
                          "check compose.registry_username and the password "
                          "(compose.registry_password_env / _file)")
    return (f"logged in to {compose.registry} as {compose.registry_username} (docker keeps "
            "the login in ~/.docker/config.json of the deploying user)")
