"""deploy/k8s stays true to the code: the example overlay renders (`tests.deploy.kustomize`,
compared with `kubectl kustomize` where kubectl is installed) to objects that validate
against the Kubernetes API's schemas (`kubernetes-validate`, strict) and the custom
resources' published schemas (tests/deploy/schemas); every container runs a real `swarm`
command with options it has, sets only settings that exist, to values they accept; the
adapters' grace covers their drain; KEDA reads the streams and group the code uses, as a
Redis user that may read exactly that; the network policies allow what the issue says and
nothing more; and the migration step applies everything the Job needs."""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from redis import Redis as SyncRedis
from redis.exceptions import NoPermissionError
from typer.testing import CliRunner

from swarm_adapter.runners import AGENT_CLIS, cli_runner_class
from swarm_adapter.settings import AdapterSettings
from swarm_cli.local.embedded import EmbeddedValkey
from swarm_cli.main import app
from swarm_common import acl
from swarm_common.specs import ADAPTER_KINDS, NOOP_AGENT
from swarm_common.streams import ADAPTERS_GROUP, Keys
from swarm_orchestrator.api.routes.health import router as health_router
from tests.deploy.cli import command_name, parse
from tests.deploy.compose import SETTINGS_OF
from tests.deploy.kustomize import containers_of, pod_spec, read_env_file, render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAY = K8S / "overlays" / "example"
SCHEMAS = Path(__file__).parent / "schemas"
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
"""The oldest Kubernetes deploy/k8s supports (the pre-stop `sleep` action is on by default
from 1.30) and the newest whose schemas the package carries."""
DRAIN_AFTER_GRACE_S = 40
"""What an adapter's drain takes past `shutdown_grace_s + kill_grace_s` at most
(`swarm_adapter.worker.Adapter._drain`: cancelled attempts get `kill_grace_s + 30` s to be
reported, then stuck slots 10 s more)."""
PRIVATE_V4 = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"}
PRIVATE_V6 = {"fc00::/7", "fe80::/10"}
DNS = "dns"
INTERNET = "internet"

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render(OVERLAY)


def _one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def _secrets(objects: list[Obj]) -> dict[str, dict[str, str]]:
    return {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for s in _of_kind(objects, "Secret")
    }


def _workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if pod_spec(o) is not None]


def _adapters(objects: list[Obj]) -> dict[str, Obj]:
    """Each adapter Deployment by the agent kind its command runs."""
    found = {}
    for deployment in _of_kind(objects, "Deployment"):
        (container,) = pod_spec(deployment)["containers"]  # type: ignore[index]
        context = parse(container["command"])
        if context.info_name == "adapter":
            found[context.params["agent"]] = deployment
    return found


# --- schemas ----------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """`schema` as the API server applies it with strict field validation (`kubectl apply`'s
    default): an object that names its properties accepts no other."""
    if isinstance(schema, dict):
        strict = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            strict["additionalProperties"] = False
        return strict
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def _custom_schema(obj: Obj) -> Obj | None:
    group, _, version = obj["apiVersion"].rpartition("/")
    path = SCHEMAS / f"{group}_{version}_{obj['kind'].lower()}.json"
    return _strict(json.loads(path.read_text())) if group and path.exists() else None


def _validate(obj: Obj) -> None:
    """Against the Kubernetes API's schema of its kind, else its custom resource's schema;
    a kind with neither fails."""
    schema = _custom_schema(obj)
    if schema is not None:
        jsonschema.Draft7Validator(schema).validate(obj)
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def test_every_object_validates_against_its_published_schema(objects: list[Obj]) -> None:
    kinds = {o["kind"] for o in objects}
    assert {"ScaledObject", "TriggerAuthentication", "NetworkPolicy", "Job"} <= kinds
    for obj in objects:
        try:
            _validate(obj)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as exc:
            pytest.fail(f"{exc.message}: add its CRD's schema to {SCHEMAS}")


@pytest.mark.parametrize("kind", ["StatefulSet", "ScaledObject"])
def test_validation_refuses_a_field_the_schema_does_not_name(objects: list[Obj], kind: str) -> None:
    obj = copy.deepcopy(_of_kind(objects, kind)[0])
    obj["spec"]["minReplicaCount" if kind == "StatefulSet" else "replicas"] = 2
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        _validate(obj)


def test_our_kustomize_renders_what_kubectl_kustomize_does(
    objects: list[Obj], tmp_path: Path
) -> None:
    shutil.copytree(K8S, tmp_path / "k8s")
    _same_as_kubectl(tmp_path / "k8s" / "overlays" / "example", objects)


def _same_as_kubectl(overlay: Path, objects: list[Obj]) -> None:
    """`kubectl kustomize` renders `overlay` (in a copy of deploy/k8s) to `objects`."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: tests.deploy.kustomize alone renders the overlay")
    for example in overlay.glob("*.env.example"):
        shutil.copy(example, example.with_name(example.name.removesuffix(".example")))
    result = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    theirs = [d for d in yaml.safe_load_all(result.stdout) if d]
    generated = {s["metadata"]["name"] for s in _of_kind(objects, "Secret")}

    def plain_names(value: Any) -> Any:
        """Kustomize's content-hash suffix of a generated Secret's name (and of the
        references to it) taken off."""
        if isinstance(value, dict):
            return {k: plain_names(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain_names(v) for v in value]
        if isinstance(value, str):
            base, _, suffix = value.rpartition("-")
            if base in generated and len(suffix) == 10 and suffix.isalnum():
                return base
        return value

    def keyed(found: list[Obj]) -> dict[tuple[str, str], Obj]:
        return {(o["kind"], o["metadata"]["name"]): o for o in found}

    assert keyed([plain_names(o) for o in theirs]) == keyed(objects)


# --- commands and settings ----------------------------------------------------------------


def _commands(container: Obj) -> Iterator[list[str]]:
    """Every command line a container runs: its own, its probes', its hooks'."""
    yield [*container.get("command", []), *container.get("args", [])]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if "exec" in container.get(probe, {}):
            yield container[probe]["exec"]["command"]
    for hook in container.get("lifecycle", {}).values():
        if "exec" in hook:
            yield hook["exec"]["command"]


def test_every_container_runs_a_real_swarm_command(objects: list[Obj]) -> None:
    seen = set()
    for workload in _workloads(objects):
        for container in containers_of(workload):
            for argv in _commands(container):
                assert argv[:1] == ["swarm"], f"{workload['metadata']['name']} runs {argv}"
                seen.add(command_name(argv))  # raises where the CLI would refuse the line
    assert seen == {"server", "migrate", "adapter"}


def _environment(container: Obj, secrets: dict[str, dict[str, str]], pod: str) -> dict[str, str]:
    """A container's environment as the kubelet makes it (the Secrets from the example
    overlay's env files)."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        name, source = item["name"], item.get("valueFrom")
        if source is None:
            env[name] = item["value"]
        elif "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.name", item
            env[name] = pod
        else:
            ref = source["secretKeyRef"]
            assert ref["key"] in secrets.get(ref["name"], {}), f"no Secret key for {item}"
            env[name] = secrets[ref["name"]][ref["key"]]
    assert not container.get("envFrom"), "every variable is named, so it can be checked"
    return env


def _settings(
    container: Obj, secrets: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The settings a container's Swarm command starts with, built from its environment and
    its command line's options as that command builds them."""
    context = parse(container["command"])
    cls = SETTINGS_OF[context.info_name or ""]
    env = _environment(container, secrets, pod="swarm-pod-0")
    fields = {f"SWARM_{name.upper()}" for name in cls.model_fields}
    unknown = {n for n in env if n.startswith("SWARM_")} - fields
    assert not unknown, f"{container['name']}: {sorted(unknown)} are no {cls.__name__} fields"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    options = {k: v for k, v in context.params.items() if k in cls.model_fields and v}
    return cls(**options)


def test_every_swarm_variable_is_a_setting_with_a_valid_value(
    objects: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = _secrets(objects)
    for workload in _workloads(objects):
        for container in containers_of(workload):
            with monkeypatch.context() as env:
                settings = _settings(container, secrets, env)
            others = {e["name"] for e in container.get("env", [])} - {
                f"SWARM_{n.upper()}" for n in type(settings).model_fields
            }
            if isinstance(settings, AdapterSettings) and settings.agent in AGENT_CLIS:
                runner = cli_runner_class(settings.agent)
                assert others <= {runner.key_env, runner.base_url_env}, others
            else:
                assert not others, f"{workload['metadata']['name']}: {sorted(others)}"


def test_adapters_one_per_kind_with_their_key_and_a_grace_that_covers_their_drain(
    objects: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    adapters = _adapters(objects)
    assert set(adapters) == set(ADAPTER_KINDS)
    secrets = _secrets(objects)
    for kind, deployment in adapters.items():
        spec = pod_spec(deployment)
        assert spec is not None
        (container,) = spec["containers"]
        with monkeypatch.context() as env:
            settings = _settings(container, secrets, env)
        assert isinstance(settings, AdapterSettings) and settings.agent == kind
        assert "SWARM_DATABASE_URL" not in {e["name"] for e in container.get("env", [])}
        if kind in AGENT_CLIS:
            keys = [e for e in container["env"] if e["name"] == cli_runner_class(kind).key_env]
            assert len(keys) == 1, f"{kind} adapters get their model's key"
        else:  # shell and noop: no key, and only shell may run a prompt as a command
            assert all(e["name"].startswith("SWARM_") for e in container["env"]), kind
            assert settings.allow_shell_agent is (kind == "shell"), kind
        if kind == NOOP_AGENT:
            assert not settings.runs_commands
        drain = settings.shutdown_grace_s + settings.kill_grace_s + DRAIN_AFTER_GRACE_S
        grace = spec["terminationGracePeriodSeconds"]
        assert grace > AdapterSettings().shutdown_grace_s
        assert drain <= grace <= drain + 30, f"{kind}: {grace} s for a drain of {drain} s"
        probes = [container[p]["exec"]["command"] for p in ("readinessProbe", "livenessProbe")]
        for probe in probes:
            assert parse(probe).params["check_health"] and parse(probe).params["agent"] == kind
        worker = next(e for e in container["env"] if e["name"] == "SWARM_WORKER_NAME")
        assert worker["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert {"/workspace"} <= {m["mountPath"] for m in container["volumeMounts"]}


def test_orchestrator_has_replicas_stable_consumer_names_probes_and_a_budget(
    objects: list[Obj],
) -> None:
    orchestrator = _one(objects, "StatefulSet", "swarm-orchestrator")
    assert orchestrator["spec"]["replicas"] >= 2
    template = orchestrator["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert command_name(container["command"]) == "server"
    # Stable names: a StatefulSet's pod name, as the consumer name of each replica.
    consumer = next(e for e in container["env"] if e["name"] == "SWARM_CONSUMER_NAME")
    assert consumer["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    routes = {route.path for route in health_router.routes}  # type: ignore[attr-defined]
    assert {"/readyz", "/healthz"} <= routes
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port = parse(container["command"]).params["port"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named[container["readinessProbe"]["httpGet"]["port"]] == port
    budgets = [
        b
        for b in _of_kind(objects, "PodDisruptionBudget")
        if _selects(b["spec"]["selector"], template["metadata"]["labels"])
    ]
    assert len(budgets) == 1 and budgets[0]["spec"].get("maxUnavailable") == 1
    (service,) = [
        s
        for s in _of_kind(objects, "Service")
        if s["spec"].get("clusterIP") != "None"
        and _selects({"matchLabels": s["spec"]["selector"]}, template["metadata"]["labels"])
    ]
    assert service["spec"]["ports"][0]["targetPort"] in named
    services = {s["metadata"]["name"] for s in _of_kind(objects, "Service")}
    assert orchestrator["spec"]["serviceName"] in services


def test_workspace_is_one_read_write_many_claim_mounted_by_everyone_but_the_job(
    objects: list[Obj],
) -> None:
    """The orchestrators and the agent adapters share the claim; the migration Job touches
    no workspace, and the noop adapter (no repository, no worktree) has a folder of its own,
    so it needs no share of the claim to start."""
    (claim,) = _of_kind(objects, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    noop = _adapters(objects)[NOOP_AGENT]
    for workload in _workloads(objects):
        spec = pod_spec(workload)
        assert spec is not None
        claims = {
            v["persistentVolumeClaim"]["claimName"]
            for v in spec.get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        unshared = workload["kind"] == "Job" or workload is noop
        assert claims == (set() if unshared else {claim["metadata"]["name"]})
        for container in containers_of(workload):
            assert {"requests", "limits"} <= set(container["resources"])
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
    spec = pod_spec(noop)
    assert spec is not None
    (container,) = spec["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/workspace"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume == {"name": mount["name"], "emptyDir": {}}


# --- KEDA ---------------------------------------------------------------------------------

_REDIS_STREAMS_METADATA = {
    "address",
    "host",
    "port",
    "addressFromEnv",
    "hostFromEnv",
    "portFromEnv",
    "usernameFromEnv",
    "passwordFromEnv",
    "stream",
    "consumerGroup",
    "pendingEntriesCount",
    "streamLength",
    "lagCount",
    "activationLagCount",
    "databaseIndex",
    "enableTLS",
    "unsafeSsl",
}
"""The `redis-streams` scaler's metadata parameters (KEDA's docs)."""
_AUTH_PARAMETERS = {"address", "host", "port", "username", "password"}
"""What a TriggerAuthentication may give it; an `address` there wins over the metadata's."""


def test_a_scaled_object_per_kind_on_its_stream_running_plus_waiting(
    objects: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    adapters = _adapters(objects)
    scaled = {so["spec"]["scaleTargetRef"]["name"]: so for so in _of_kind(objects, "ScaledObject")}
    secrets = _secrets(objects)
    auths = {a["metadata"]["name"]: a for a in _of_kind(objects, "TriggerAuthentication")}
    noop = adapters.pop(NOOP_AGENT)
    # One noop pod always up, no ScaledObject: scaling it from zero would add KEDA's polling
    # and a pod's start to every join; one pod completes its batches in milliseconds.
    assert noop["metadata"]["name"] not in scaled
    assert noop["spec"]["replicas"] >= 1
    for kind, deployment in adapters.items():
        so = scaled.pop(deployment["metadata"]["name"])
        spec = so["spec"]
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert spec["minReplicaCount"] == 0  # scale to zero: the lag trigger allows it
        (container,) = pod_spec(deployment)["containers"]  # type: ignore[index]
        with monkeypatch.context() as env:
            concurrency = _settings(container, secrets, env).concurrency
        triggers = {t["name"]: t for t in spec["triggers"]}
        for trigger in triggers.values():
            meta = trigger["metadata"]
            assert trigger["type"] == "redis-streams"
            assert set(meta) <= _REDIS_STREAMS_METADATA, set(meta) - _REDIS_STREAMS_METADATA
            assert meta["stream"] == Keys().tasks(kind)
            assert meta["consumerGroup"] == ADAPTERS_GROUP
            # Where Redis is, and who KEDA is there, from a Secret: KEDA's operator runs in
            # a namespace of its own, where a Service name of Swarm's would not resolve.
            assert not {"address", "host", "port"} & set(meta)
            refs = auths[trigger["authenticationRef"]["name"]]["spec"]["secretTargetRef"]
            assert {"address", "username", "password"} == {r["parameter"] for r in refs}
            assert {r["parameter"] for r in refs} <= _AUTH_PARAMETERS
            for ref in refs:
                assert ref["key"] in secrets[ref["name"]], ref
        # Entries handed out and not acknowledged (attempts under way) plus the group's lag
        # (entries not handed out yet), `concurrency` per pod.
        assert triggers["running"]["metadata"]["pendingEntriesCount"] == str(concurrency)
        assert "lagCount" not in triggers["running"]["metadata"]
        assert "activationLagCount" in triggers["waiting"]["metadata"]  # KEDA requires it
        modifiers = spec["advanced"]["scalingModifiers"]
        assert modifiers["formula"] == "running + waiting"
        assert modifiers["target"] == str(concurrency)
        assert modifiers.get("metricType", "AverageValue") == "AverageValue"
    assert not scaled, f"ScaledObjects of no adapter: {sorted(scaled)}"


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[tuple[EmbeddedValkey, str]]:
    server = EmbeddedValkey(tmp_path / "valkey", persistent=False)
    admin_url = server.start()
    try:
        yield server, admin_url
    finally:
        server.stop()


def test_keda_redis_user_reads_running_plus_waiting_and_nothing_else(
    objects: list[Obj], valkey: tuple[EmbeddedValkey, str]
) -> None:
    """What the scaler sends (INFO, XPENDING, XINFO GROUPS, XLEN), as the user the example
    overlay's TriggerAuthentication names, on the stream of a ScaledObject, on a real
    server: running + waiting counts every task message not acknowledged."""
    server, admin_url = valkey
    so = next(s for s in _of_kind(objects, "ScaledObject") if "claude" in s["metadata"]["name"])
    meta = {t["name"]: t["metadata"] for t in so["spec"]["triggers"]}
    stream, group = meta["running"]["stream"], meta["running"]["consumerGroup"]
    login = read_env_file(OVERLAY / "keda-redis.env")
    assert login["username"] == acl.KEDA
    password = uuid.uuid4().hex
    # The user as deploy/README.md makes it: the line `swarm redis-acl` prints for it.
    printed = CliRunner().invoke(app, ["redis-acl"], env={"SWARM_REDIS_KEDA_PASSWORD": password})
    assert printed.exit_code == 0, printed.output
    (line,) = [n for n in printed.stdout.splitlines() if n.startswith(f"user {acl.KEDA} ")]
    rules = re.findall(r"\([^)]*\)|\S+", line.removeprefix("user "))  # a selector is one
    with SyncRedis.from_url(admin_url) as admin:
        assert admin.execute_command("ACL", "SETUSER", *rules)
        admin.xgroup_create(stream, group, id="0", mkstream=True)
        for n in range(5):
            admin.xadd(stream, {"env": f"task {n}"})
        admin.xreadgroup(group, "adapter-1", {stream: ">"}, count=3)  # three handed out
        (acked,) = admin.xreadgroup(group, "adapter-1", {stream: "0"}, count=1)[0][1]
        admin.xack(stream, group, acked[0])  # one of them done
        admin.xadd(Keys().events, {"env": "event"})
    url = f"redis://{acl.KEDA}:{password}@127.0.0.1:{server.port}/0"
    with SyncRedis.from_url(url, decode_responses=True) as keda:
        version = keda.info("server")["redis_version"]
        assert int(str(version).split(".")[0]) >= 7  # KEDA's condition for reading a lag
        running = keda.xpending(stream, group)["pending"]
        (found,) = [g for g in keda.xinfo_groups(stream) if g["name"] == group]
        waiting = found["lag"]
        assert (running, waiting) == (2, 2)
        assert running + waiting == keda.xlen(stream) - 1  # all but the acknowledged one
        refusals: list[Callable[[], object]] = [
            lambda: keda.xreadgroup(group, "keda", {stream: ">"}),
            lambda: keda.xadd(stream, {"env": "forged"}),
            lambda: keda.xack(stream, group, acked[0]),
            lambda: keda.xlen(Keys().events),
            lambda: keda.get(Keys().control),
        ]
        for refused in refusals:
            with pytest.raises(NoPermissionError):
                refused()


# --- network policies -------------------------------------------------------------------


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        ok = {
            "In": present and labels.get(key) in (values or []),
            "NotIn": not present or labels.get(key) not in (values or []),
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def _peer(peer: Obj) -> str:
    """A peer of a rule by what it is: `dns`, `internet`, or the pods' `name` label."""
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        network = ipaddress.ip_network(block["cidr"])
        private = PRIVATE_V4 if network.version == 4 else PRIVATE_V6
        assert network.prefixlen == 0 and private <= set(block.get("except", [])), block
        return INTERNET
    pods = peer.get("podSelector", {}).get("matchLabels", {})
    if "namespaceSelector" in peer:
        namespace = peer["namespaceSelector"]["matchLabels"]
        assert namespace == {"kubernetes.io/metadata.name": "kube-system"}, peer
        assert pods == {"k8s-app": "kube-dns"}, peer
        return DNS
    assert list(pods) == ["app.kubernetes.io/name"], peer
    return str(pods["app.kubernetes.io/name"])


def _allowed(objects: list[Obj], labels: dict[str, str], direction: str) -> set[str]:
    """What the NetworkPolicies let a pod with `labels` reach (`egress`) or be reached
    from (`ingress`), as `peer:port`; the pod must be isolated in that direction."""
    policy_type = direction.capitalize()
    policies = [
        p
        for p in _of_kind(objects, "NetworkPolicy")
        if _selects(p["spec"]["podSelector"], labels) and policy_type in p["spec"]["policyTypes"]
    ]
    assert any(not p["spec"].get(direction) for p in policies), "a default deny isolates it"
    found = set()
    for policy in policies:
        for rule in policy["spec"].get(direction, []):
            peers = rule.get("to" if direction == "egress" else "from")
            names = [_peer(p) for p in peers] if peers else ["anywhere"]
            ports = [f"{p.get('protocol', 'TCP')}/{p['port']}" for p in rule.get("ports", [])]
            found |= {f"{n}:{p}" for n in names for p in ports or ["any"]}
    return found


def test_network_policies_allow_each_pod_only_what_it_needs(objects: list[Obj]) -> None:
    dns = {f"{DNS}:UDP/53", f"{DNS}:TCP/53"}
    redis = "redis:TCP/6379"
    postgres = "postgresql:TCP/5432"
    expected = {
        "migrate": (dns | {postgres}, set()),
        "orchestrator": (
            dns | {postgres, redis, f"{INTERNET}:TCP/443", f"{INTERNET}:TCP/22"},
            {"anywhere:TCP/8000"},
        ),
        "shell": (dns | {redis}, set()),
        NOOP_AGENT: (dns | {redis}, set()),
        **{kind: (dns | {redis, f"{INTERNET}:TCP/443"}, set()) for kind in AGENT_CLIS},
    }
    seen = set()
    for workload in _workloads(objects):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        role = labels.get("swarm/agent") or labels["app.kubernetes.io/component"]
        egress, ingress = expected[role]
        assert _allowed(objects, labels, "egress") == egress, role
        assert _allowed(objects, labels, "ingress") == ingress, role
        seen.add(role)
    assert seen == set(expected)


def test_the_migration_step_applies_everything_the_job_needs(objects: list[Obj]) -> None:
    """`kubectl apply -k <overlay> -l swarm/step=migrate` applies the Job, its namespace,
    its account, its Secrets and every policy that selects its pod."""
    first = {
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if o["metadata"].get("labels", {}).get("swarm/step") == "migrate"
    }
    (job,) = _of_kind(objects, "Job")
    spec = pod_spec(job)
    assert spec is not None
    (container,) = spec["containers"]
    assert command_name(container["command"]) == "migrate"
    needs = {("Job", job["metadata"]["name"]), ("ServiceAccount", spec["serviceAccountName"])}
    needs |= {("Namespace", job["metadata"]["namespace"])}
    needs |= {
        ("Secret", e["valueFrom"]["secretKeyRef"]["name"])
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    labels = job["spec"]["template"]["metadata"]["labels"]
    needs |= {
        ("NetworkPolicy", p["metadata"]["name"])
        for p in _of_kind(objects, "NetworkPolicy")
        if _selects(p["spec"]["podSelector"], labels)
    }
    assert needs <= first, needs - first
    assert not any(kind in {"StatefulSet", "Deployment"} for kind, _ in first)


# --- the agent sandbox ------------------------------------------------------------------

README = ROOT / "deploy" / "README.md"
SANDBOX_PATCH = "# agent-sandbox.yaml"
SANDBOX_KUSTOMIZATION = "# kustomization.yaml (your overlay)"


def _readme_yaml(first_line: str) -> Obj:
    """The YAML block of deploy/README.md whose first line starts with `first_line`."""
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    loaded = yaml.safe_load(block)
    assert isinstance(loaded, dict)
    return loaded


def _runs_agents(kind: str) -> bool:
    return kind != NOOP_AGENT


def test_base_adapters_leave_the_sandbox_to_auto_and_stay_restricted(
    objects: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base runs where the example namespace enforces the restricted Pod Security
    Standard: no pod user namespace, no unmasked /proc, RuntimeDefault seccomp, no
    unconfined AppArmor. bwrap cannot start there, so the adapters that run agents or
    commands say SWARM_SANDBOX=auto (unsandboxed, said at start) rather than `required`,
    which would keep every pod restarting; the noop adapter runs nothing and says nothing."""
    (namespace,) = _of_kind(objects, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    secrets = _secrets(objects)
    for kind, deployment in _adapters(objects).items():
        spec = pod_spec(deployment)
        assert spec is not None
        assert spec.get("hostUsers", True) is True, kind
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, kind
        assert spec["securityContext"].get("appArmorProfile", {}).get("type") != "Unconfined"
        (container,) = spec["containers"]
        assert container["securityContext"].get("procMount", "Default") == "Default", kind
        names = {e["name"] for e in container["env"]}
        assert ("SWARM_SANDBOX" in names) is _runs_agents(kind), kind
        with monkeypatch.context() as env:
            assert _settings(container, secrets, env).sandbox == "auto", kind


def test_the_readme_patch_turns_the_sandbox_on_for_the_adapters_that_run_agents(
    objects: list[Obj], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/README.md's overlay patch, added to a copy of the example overlay as the README
    says: every adapter that runs agents or commands gets a user namespace of its own, an
    unmasked /proc, unconfined seccomp and AppArmor and SWARM_SANDBOX=required, and keeps
    running as uid 10001 without capabilities or privilege escalation; the noop adapter and
    every other object stay as they were; what it renders validates against the Kubernetes
    API's schemas and is what `kubectl kustomize` renders (where kubectl is installed)."""
    shutil.copytree(K8S, tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "example"
    patch = _readme_yaml(SANDBOX_PATCH)
    entry = _readme_yaml(SANDBOX_KUSTOMIZATION)["patches"]
    (overlay / entry[0]["path"]).write_text(yaml.safe_dump(patch))
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    kustomization["patches"] = [*kustomization.get("patches", []), *entry]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    patched = render(overlay)

    before = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    adapters = _adapters(patched)
    changed = {(o["kind"], o["metadata"]["name"]) for o in patched if before[_key(o)] != o}
    sandboxed = {k for k in adapters if _runs_agents(k)}
    assert changed == {("Deployment", adapters[k]["metadata"]["name"]) for k in sandboxed}
    assert sandboxed == set(ADAPTER_KINDS) - {NOOP_AGENT}
    secrets = _secrets(patched)
    for kind in sandboxed:
        deployment = adapters[kind]
        _validate(deployment)
        spec = pod_spec(deployment)
        assert spec is not None
        assert spec["hostUsers"] is False
        assert spec["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
        assert spec["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        (container,) = spec["containers"]
        context = container["securityContext"]
        assert context["procMount"] == "Unmasked"
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        with monkeypatch.context() as env:
            assert _settings(container, secrets, env).sandbox == "required", kind
    _same_as_kubectl(overlay, patched)


def _key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]
