"""emptyDir volumes on the local runtime: planned from the spec, bound in a private mount namespace.

The shim tests start real containers through :class:`Container` as this (root) process
does in the node agent. The unprivileged paths run for real too, in a forked child that
drops to uid 65534 (it forks rather than starts an interpreter: the interpreter's files
need not be readable by that user): one where user namespaces work, and one inside a
user namespace whose ``user.max_user_namespaces`` is 0, where the kernel refuses them —
there both the agent's check (the sysctl, read from the OS) and the probe (a real
``unshare``) must say no, and the refusal message is what the pod would carry.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from crossdock.kubernetes.local_runtime import mount_namespace, mount_points, shim, volumes
from crossdock.kubernetes.local_runtime.container import Container
from crossdock.kubernetes.local_runtime.launch import ContainerConfigError, LaunchPlan

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="binds as root; the unprivileged path is tested in a child")
NOBODY = 65534
PR_SET_DUMPABLE = 4
REFUSAL = ("emptyDir volume 'cache' at /cache needs a private mount namespace: "
           "not root and unprivileged user namespaces are disabled")


def _pod(mounts: list[dict], volumes_: list[dict]) -> tuple[dict, dict]:
    container = {"name": "base", "command": ["true"], "volumeMounts": mounts}
    spec = {"volumes": volumes_, "containers": [container]}
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}, container


def _plan_for(mounts: list[dict], volumes_: list[dict], volumes_dir: str = "/state/pods/u/volumes") -> list[dict]:
    pod, container = _pod(mounts, volumes_)
    return volumes.plan_mounts(pod, container, volumes_dir=volumes_dir)


# -- planning -------------------------------------------------------------------------------------
def test_mounts_are_planned_from_the_pods_emptydir_volumes() -> None:
    planned = _plan_for(
        [{"name": "cache", "mountPath": "/cache/"}, {"name": "cache", "mountPath": "/logs", "subPath": "a/b",
                                                     "readOnly": True},
         {"name": "fast", "mountPath": "/fast"}],
        [{"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}}, {"name": "fast", "emptyDir": {"medium": "Memory",
                                                                                           "sizeLimit": "64Mi"}}])
    assert [(m["target"], m["source"], m["readOnly"], m["memory"], m["sizeBytes"]) for m in planned] == [
        ("/cache", "/state/pods/u/volumes/cache", False, False, None),  # a disk sizeLimit is not enforced
        ("/logs", "/state/pods/u/volumes/cache/a/b", True, False, None),
        ("/fast", "/state/pods/u/volumes/fast", False, True, 64 * 1024 * 1024),
    ]


@pytest.mark.parametrize("mounts,volumes_,message", [
    ([{"name": "h", "mountPath": "/h"}], [{"name": "h", "hostPath": {"path": "/etc"}}],
     'volume "h": hostPath volumes are not supported by the local runtime (only emptyDir)'),
    ([{"name": "c", "mountPath": "/c"}], [{"name": "c", "configMap": {"name": "x"}}],
     'volume "c": configMap volumes are not supported by the local runtime (only emptyDir)'),
    ([{"name": "gone", "mountPath": "/g"}], [],
     'container "base": volumeMount "gone" names no volume of the pod'),
    ([{"name": "v", "mountPath": "rel"}], [{"name": "v", "emptyDir": {}}], "mountPath 'rel' must be absolute"),
    ([{"name": "v", "mountPath": "/v", "subPath": "../../etc"}], [{"name": "v", "emptyDir": {}}],
     "subPath '../../etc' must be a relative path inside the volume"),
    ([{"name": "v", "mountPath": "/v", "subPathExpr": "$(POD)"}], [{"name": "v", "emptyDir": {}}],
     "subPathExpr is not supported by the local runtime"),
    ([{"name": "v", "mountPath": "/v"}], [{"name": "v", "emptyDir": {"medium": "HugePages"}}],
     'volume "v": emptyDir medium "HugePages" is not supported'),
])
def test_what_cannot_be_mounted_here_is_refused_with_its_reason(mounts, volumes_, message) -> None:
    with pytest.raises(ContainerConfigError) as info:
        _plan_for(mounts, volumes_)
    assert message in str(info.value)


def test_the_namespace_comes_from_root_or_user_namespaces_or_the_pod_is_refused(tmp_path: Path) -> None:
    cache = [{"volume": "cache", "target": "/cache"}]
    assert volumes.namespace_mode(cache, euid=0, userns=False) == "root"
    with pytest.raises(ContainerConfigError) as info:
        volumes.namespace_mode(cache, euid=1000, userns=False)
    assert str(info.value) == REFUSAL
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    item = [{"volume": "cache", "target": str(locked / "cache")}]
    if not ROOT:  # root may write anywhere; the message is what a non-root agent sees
        with pytest.raises(ContainerConfigError, match="does not exist and cannot be created without root"):
            volumes.namespace_mode(item, euid=os.geteuid(), userns=True)
    assert volumes.namespace_mode([{"volume": "cache", "target": str(tmp_path)}], euid=1000, userns=True) == "user"


# -- running --------------------------------------------------------------------------------------
@pytest.fixture
def target():
    path = f"/crossdock-test-cache-{uuid.uuid4().hex[:12]}"
    yield path
    for leftover in (path + "/deeper", path):
        if os.path.isdir(leftover):
            os.rmdir(leftover)


def _start(state: Path, argv: list[str], mounts: list[dict], *, volumes_: list[dict],
           cwd: str | None = None) -> tuple[Container, dict[str, Any], str]:
    """Run ``argv`` as a pod's container with these mounts, as root; the box, its result and log."""
    box = Container(state / "pods" / uuid.uuid4().hex, container_name="base")
    pod, container = _pod(mounts, volumes_)
    plan = LaunchPlan(argv=argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, cwd=cwd,
                      memory_limit_bytes=None, nice=0, log_path=str(box.log_path))
    volumes.attach(plan, pod, container, volumes_dir=str(box.dir / "volumes"), euid=0, userns=False)
    box.start(plan)
    result = box.wait(30)
    assert result is not None, "the process did not end"
    return box, result, box.log_path.read_text()


@needs_root
def test_a_pods_volume_is_its_own_folder_bound_at_the_mount_path(tmp_path: Path, target: str) -> None:
    script = (f'echo Hello > {target}/f; cat {target}-again/f; pwd; echo "$PATH"; '
              f'grep -c " {target} " /proc/self/mountinfo')
    box, result, log = _start(tmp_path, ["sh", "-c", script],
                              [{"name": "cache", "mountPath": target},
                               {"name": "cache", "mountPath": target + "-again"}],
                              volumes_=[{"name": "cache", "emptyDir": {}}], cwd=target + "/work")
    assert (result["exitCode"], result["reason"]) == (0, "Completed"), log
    assert log.splitlines() == ["Hello", f"{target}/work", os.environ.get("PATH", "/usr/bin:/bin"), "1"]
    assert (box.dir / "volumes" / "cache" / "f").read_text() == "Hello\n"  # the pod's folder holds it
    assert (box.dir / "volumes" / "cache" / "work").is_dir()
    assert not os.path.exists(target) and not os.path.exists(target + "-again")  # host: untouched, removed
    box.remove()
    assert not box.dir.exists()


@needs_root
def test_read_only_mounts_refuse_writes_and_memory_volumes_are_tmpfs(tmp_path: Path, target: str) -> None:
    script = (f"grep ' {target}-mem ' /proc/self/mountinfo | grep -c tmpfs; echo x > {target}-mem/in-memory; "
              f"echo x > {target}/nope || echo refused")
    box, result, log = _start(tmp_path, ["sh", "-c", script],
                              [{"name": "v", "mountPath": target, "readOnly": True},
                               {"name": "m", "mountPath": target + "-mem"}],
                              volumes_=[{"name": "v", "emptyDir": {}},
                                        {"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}])
    assert result["exitCode"] == 0, log
    lines = log.splitlines()
    assert lines[0] == "1" and "Read-only file system" in lines[1] and lines[2] == "refused"
    assert os.listdir(box.dir / "volumes" / "v") == []
    assert os.listdir(box.dir / "volumes" / "m") == []  # memory: never written to disk
    assert not os.path.exists(target) and not os.path.exists(target + "-mem")


@needs_root
def test_a_directory_that_was_there_stays_and_keeps_its_files(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "host-file").write_text("mine")
    _, result, log = _start(tmp_path, ["sh", "-c", f"ls -A {existing}; echo pod > {existing}/pod-file"],
                            [{"name": "v", "mountPath": str(existing)}], volumes_=[{"name": "v", "emptyDir": {}}])
    assert result["exitCode"] == 0 and log == "", log  # the pod saw an empty volume, not the host's files
    assert sorted(os.listdir(existing)) == ["host-file"]


@needs_root
def test_a_mount_that_cannot_be_made_fails_the_start_with_why(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    _, result, _ = _start(tmp_path, ["true"], [{"name": "v", "mountPath": str(not_a_dir)}],
                          volumes_=[{"name": "v", "emptyDir": {}}])
    assert (result["exitCode"], result["reason"]) == (128, "StartError")
    assert result["message"].startswith("cannot set up the container's volumes: mount ")
    assert "Not a directory" in result["message"]


def test_a_created_mount_point_lives_as_long_as_a_pod_claims_it(tmp_path: Path) -> None:
    registry = tmp_path / "mount-points"
    made, kept = tmp_path / "made" / "deeper", tmp_path / "kept"
    kept.mkdir()
    mount_points.claim(registry, "pod-a", [str(made), str(kept)])
    mount_points.claim(registry, "pod-b", [str(made)])
    mount_points.release(registry, "pod-a")
    assert made.is_dir() and kept.is_dir()  # pod-b still mounts there
    mount_points.release(registry, "pod-b")
    assert not (tmp_path / "made").exists() and kept.is_dir()  # made ones go, the one that was there stays
    mount_points.release(registry, "pod-b")  # twice (shim, then the agent's removal) is harmless


# -- without root ---------------------------------------------------------------------------------
def _in_child(body: Callable[[], Any], *, limit_userns: bool = False) -> Any:
    """``body()``'s JSON result, run in a forked child as uid 65534 (inside a user namespace
    that allows no further ones, with ``limit_userns``)."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            if limit_userns:
                mount_namespace._check(mount_namespace._libc.unshare(mount_namespace.CLONE_NEWUSER), "unshare")
                os.write(ready_w, b"1")
                os.read(go_r, 1)
                with open("/proc/sys/user/max_user_namespaces", "w") as handle:
                    handle.write("0")
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            # leaving root clears the dumpable flag (and with it /proc/self/uid_map's ownership);
            # a process started as an unprivileged user has it, so set it back
            mount_namespace._libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
            os.write(out_w, json.dumps(body()).encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(out_w, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(out_w)
    if limit_userns:
        os.read(ready_r, 1)
        for name in ("uid_map", "gid_map"):  # the whole host range, so uid 65534 exists inside
            Path(f"/proc/{pid}/{name}").write_text("0 0 65536")
        os.write(go_w, b"1")
    chunks = []
    while chunk := os.read(out_r, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    for fd in (ready_r, ready_w, go_r, go_w, out_r):
        os.close(fd)
    return json.loads(b"".join(chunks) or b"null")


@needs_root
def test_without_root_or_user_namespaces_the_pod_is_refused_saying_so() -> None:
    def check() -> dict:
        found = volumes.userns_available.__wrapped__()  # the sysctl, read from this namespace
        try:
            volumes.namespace_mode([{"volume": "cache", "target": "/cache"}], euid=os.geteuid(), userns=found)
        except ContainerConfigError as exc:
            refusal = str(exc)
        else:
            refusal = None
        return {"euid": os.geteuid(), "found": found, "probe": mount_namespace.probe(), "refusal": refusal}

    seen = _in_child(check, limit_userns=True)
    assert seen == {"euid": NOBODY, "found": False, "probe": 1, "refusal": REFUSAL}


def _userns_case(home_text: str) -> dict:
    """The pod of the test below, run by a child as uid 65534 (see :func:`_in_child`)."""
    home = Path(home_text)
    target = home / "mnt" / "cache"
    pod_dir = home / "pods" / "uid-1"

    def run() -> dict:
        pod_dir.mkdir(parents=True)
        plan = LaunchPlan(argv=["sh", "-c", f"id -u; echo hi > {target}/f; grep -c ' {target} ' /proc/self/mountinfo"],
                          env={"PATH": "/usr/bin:/bin"}, cwd=None, memory_limit_bytes=None, nice=0,
                          log_path=str(pod_dir / "base.log"))
        pod, container = _pod([{"name": "cache", "mountPath": str(target)}], [{"name": "cache", "emptyDir": {}}])
        volumes.attach(plan, pod, container, volumes_dir=str(pod_dir / "volumes"), userns=True)
        (pod_dir / "plan.json").write_text(plan.to_json())
        shim.main(str(pod_dir))
        return {"mode": plan.mount_namespace, "result": json.loads((pod_dir / "result.json").read_text()),
                "log": (pod_dir / "base.log").read_text()}

    return _in_child(run)


@needs_root
def test_without_root_a_user_namespace_binds_the_volume_keeping_the_uid() -> None:
    if not volumes.userns_available():
        pytest.skip("unprivileged user namespaces are disabled on this machine")
    import multiprocessing

    home = Path(tempfile.mkdtemp(prefix="crossdock-userns-"))
    os.chown(home, NOBODY, NOBODY)
    target = home / "mnt" / "cache"
    pod_dir = home / "pods" / "uid-1"
    try:
        # The child is forked from a fresh interpreter (a forkserver), not from this test
        # process and whatever the tests before it left running in it.
        with multiprocessing.get_context("forkserver").Pool(1) as pool:
            seen = pool.apply(_userns_case, (str(home),))
        assert seen["mode"] == "user", seen
        assert seen["result"]["exitCode"] == 0, seen
        assert seen["log"].splitlines() == [str(NOBODY), "1"]
        assert (pod_dir / "volumes" / "cache" / "f").read_text() == "hi\n"
        assert not target.exists() and not (home / "mnt").exists()  # made for the pod, gone with it
    finally:
        shutil.rmtree(home, ignore_errors=True)
