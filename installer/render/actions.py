"""What a deploy does after writing the files, each step typed by its kind.

Pressing Deploy (or `deploy --yes`) agrees to the ordinary steps every deploy takes; anything
else a deploy plans (logging in to a registry with the user's credentials, repairing a Helm
release stuck mid-operation) is asked about first. The kind says which, so no front end has
to recognise an action by how its text begins.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ActionKind(Enum):
    LOAD_IMAGES = "load images"  # `docker load` of the images archive (only those missing)
    REGISTRY_LOGIN = "registry login"  # `docker login` with the advanced answers' credentials
    START_SERVICES = "start services"  # `docker compose up -d`
    APPLY_SECRETS = "apply secrets"  # create the namespace and the chart's Secrets
    HELM_UPGRADE = "helm upgrade"  # `helm upgrade --install`
    REPAIR_RELEASE = "repair release"  # roll back or uninstall a Helm release stuck mid-operation


# The kinds every deploy of its platform takes: agreeing to deploy agrees to these.
ORDINARY_KINDS = frozenset({ActionKind.LOAD_IMAGES, ActionKind.START_SERVICES,
                            ActionKind.APPLY_SECRETS, ActionKind.HELM_UPGRADE})


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    text: str  # what the user reads, e.g. "run `docker compose up -d` in /opt/carto on host"

    @property
    def needs_consent(self) -> bool:
        """True when agreeing to deploy does not cover it: the user is asked first."""
        return self.kind not in ORDINARY_KINDS

    def __str__(self) -> str:
        return self.text
