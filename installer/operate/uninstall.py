"""`uninstall`: a plan first, then remove the deployment; data is kept unless purged.

Compose: `compose down` in the deployment directory (containers and networks go, named
volumes stay); with purge, `down --volumes` and the plan lists each volume by name. The
deployment directory's files stay either way. Kubernetes: `helm uninstall`; what helm leaves
(PersistentVolumeClaims, the Secrets the installer created) is listed, and deleted only with
purge. The caller confirms (the domain typed for a purge) between plan and apply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from installer.errors import DeployError
from installer.operate.installation import MANAGED_BY_LABEL, Installation

log = logging.getLogger("installer.operate.uninstall")


@dataclass
class UninstallPlan:
    purge: bool
    remove: list[str] = field(default_factory=list)  # what goes in any case
    keep: list[str] = field(default_factory=list)  # data kept (without purge)
    destroy: list[str] = field(default_factory=list)  # data destroyed (purge)
    volumes: list[str] = field(default_factory=list)
    pvcs: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    release_present: bool = False

    @property
    def empty(self) -> bool:
        """Nothing this plan would do (a plan keeping data may still have data to purge)."""
        return not self.remove and not self.destroy

    @property
    def has_data(self) -> bool:
        return bool(self.volumes or self.pvcs or self.secrets)

    def summary(self) -> str:
        lines = ["Uninstall plan:"]
        lines += [f"  remove  {item}" for item in self.remove] or ["  remove  (nothing)"]
        if self.purge:
            lines += [f"  DESTROY {item}" for item in self.destroy] or ["  DESTROY (no data found)"]
        else:
            lines += [f"  keep    {item}" for item in self.keep]
            if self.keep:
                lines.append("  (data is kept; --purge-data would destroy the items marked keep)")
        return "\n".join(lines)


def plan_uninstall(inst: Installation, *, purge: bool) -> UninstallPlan:
    with inst.step("plan uninstall"):
        if inst.platform == "compose":
            return _plan_compose(inst, purge)
        return _plan_kubernetes(inst, purge)


def _plan_compose(inst: Installation, purge: bool) -> UninstallPlan:
    plan = UninstallPlan(purge)
    project = inst.project()
    plan.remove = [f"container {v.name} ({v.service})" for v in inst.containers()]
    client = inst.client()
    volumes = client.volumes.list(filters={"label": f"com.docker.compose.project={project}"})
    plan.volumes = sorted(v.name for v in volumes)
    items = [f"volume {name}" for name in plan.volumes]
    (plan.destroy if purge else plan.keep).extend(items)
    plan.keep.append(f"the deployment directory {inst.directory} (configuration, certs)")
    return plan


def _plan_kubernetes(inst: Installation, purge: bool) -> UninstallPlan:
    plan = UninstallPlan(purge)
    kube = inst.kube()
    status = kube.helm("status", inst.release, namespace=True)
    plan.release_present = status.ok
    if status.ok:
        plan.remove.append(f"helm release {inst.release} in namespace {kube.namespace} "
                           "(its Deployments, StatefulSets, Services, ConfigMaps)")
    selector = f"app.kubernetes.io/instance={inst.release}"
    pvcs = kube.kubectl_json("get", "pvc", "-l", selector, namespace=True).get("items", [])
    plan.pvcs = sorted(p["metadata"]["name"] for p in pvcs)
    secrets = kube.kubectl_json("get", "secrets", "-l", f"{MANAGED_BY_LABEL},{selector}",
                                namespace=True).get("items", [])
    plan.secrets = sorted(s["metadata"]["name"] for s in secrets)
    items = [f"persistentvolumeclaim {n}" for n in plan.pvcs] + \
        [f"secret {n} (made by carto-installer)" for n in plan.secrets]
    (plan.destroy if purge else plan.keep).extend(items)
    return plan


def apply_uninstall(inst: Installation, plan: UninstallPlan) -> str:
    if inst.platform == "compose":
        return _apply_compose(inst, plan)
    return _apply_kubernetes(inst, plan)


def _apply_compose(inst: Installation, plan: UninstallPlan) -> str:
    tool = inst.compose_tool()
    if tool is None:
        raise DeployError("Docker Compose is not available on the target",
                          "install it (see `carto-installer preflight --only docker`)")
    argv = [*tool.command, "down", "--remove-orphans"] + (["--volumes"] if plan.purge else [])
    with inst.step("compose down") as detail:
        result = inst.target.run(argv, cwd=inst.directory, sudo=inst.sudo, timeout=600)
        if not result.ok:
            raise DeployError(f"`{' '.join(argv)}` failed: {inst.redactor(result.output())}")
        left = inst.containers()
        if left:
            raise DeployError(f"containers are still there: {', '.join(v.name for v in left)}")
        detail.append(f"{len(plan.remove)} container(s) removed")
    if plan.purge:
        # `down --volumes` removes the volumes the compose file declares; the plan listed every
        # volume of the project, and exactly those go
        import docker.errors

        client = inst.client()
        for name in plan.volumes:
            try:
                client.volumes.get(name).remove()
            except docker.errors.NotFound:
                continue  # `down --volumes` removed it
            except docker.errors.APIError as exc:
                raise DeployError(f"could not remove the volume {name}: {exc}") from None
    if plan.purge:
        return f"uninstalled; destroyed {len(plan.volumes)} volume(s)"
    kept = ", ".join(plan.volumes) or "none"
    return f"uninstalled; data kept (volumes: {kept}); files kept in {inst.directory}"


def _apply_kubernetes(inst: Installation, plan: UninstallPlan) -> str:
    kube = inst.kube()
    if plan.release_present:
        with inst.step("helm uninstall") as detail:
            result = kube.helm("uninstall", inst.release, "--wait", "--timeout", "10m",
                               namespace=True, timeout=700)
            if not result.ok:
                raise DeployError(f"helm uninstall failed: "
                                  f"{kube.failure(result.output(), 'helm').message}")
            detail.append(result.stdout.strip())
    if plan.purge and (plan.pvcs or plan.secrets):
        with inst.step("delete data"):
            names = [f"pvc/{n}" for n in plan.pvcs] + [f"secret/{n}" for n in plan.secrets]
            kube.checked(kube.kubectl("delete", *names, "--ignore-not-found", "--wait=false",
                                      namespace=True, timeout=120))
        return f"uninstalled; destroyed {', '.join(names)}"
    left = [f"pvc/{n}" for n in plan.pvcs] + [f"secret/{n}" for n in plan.secrets]
    return "uninstalled; left in place: " + (", ".join(left) or "nothing")
