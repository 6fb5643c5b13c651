"""charts/naaice rendered by the real Helm (no cluster): `helm lint --strict`, golden files of
`helm template` for the default and a customised values file, the schema refusing bad values,
and the chart agreeing with what it copies or drives: the canonical CRDs, deploy/monitoring,
deploy/rbac, the example Bitstreams and the flags and env twins the CLIs define.

Regenerate the goldens after an intended change with NAAICE_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from tests.support.helm import (
    CHART,
    MONITORING_APIS,
    REPO,
    container_args,
    find,
    helm,
    objects,
    template,
)

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
CUSTOM = HERE / "values-custom.yaml"
JSON = dict[str, Any]
_TOKEN = re.compile(r'^(  token: )"[A-Za-z0-9+/=]+"$', re.MULTILINE)
_PEM = re.compile(r'^(  (?:tls\.crt|tls\.key|ca\.crt): )"[A-Za-z0-9+/=]+"$', re.MULTILINE)
_CA_BUNDLE = re.compile(r"^(      caBundle: )[A-Za-z0-9+/=]+$", re.MULTILINE)


def _api_flags(*apis: str) -> list[str]:
    return [arg for api in apis for arg in ("--api-versions", api)]


def _normalised(rendered: str) -> str:
    """The generated management token and webhook certificates are random on every render;
    the golden holds markers."""
    rendered = _TOKEN.sub(r'\1"<random 48 characters, base64>"', rendered)
    rendered = _PEM.sub(r'\1"<generated PEM, base64>"', rendered)
    return _CA_BUNDLE.sub(r"\1<generated CA, base64>", rendered)


@pytest.mark.parametrize(
    ("golden", "args"),
    [
        ("default.yaml", ()),
        ("custom.yaml", ("-f", str(CUSTOM), *_api_flags(*MONITORING_APIS))),
    ],
)
def test_helm_template_matches_the_golden_file(golden: str, args: tuple[str, ...]) -> None:
    rendered = _normalised(template(*args))
    path = GOLDEN / golden
    if os.environ.get("NAAICE_UPDATE_GOLDEN"):
        path.write_text(rendered)
    assert path.is_file(), f"{path} is missing: run with NAAICE_UPDATE_GOLDEN=1 to write it"
    assert rendered == path.read_text(), (
        f"helm template differs from {path.name}; if intended, regenerate with "
        "NAAICE_UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.mark.parametrize("values", [None, CUSTOM], ids=["default", "custom"])
def test_helm_lint_strict_passes(values: Path | None) -> None:
    extra = ["-f", str(values)] if values else []
    res = helm("lint", "--strict", str(CHART), *extra)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 chart(s) failed" in res.stdout


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("agent.cardProfile=fpga", "value must be one of 'emulated', 'real'"),
        ("runtime.replicas=-1", "at '/runtime/replicas': minimum"),
        ("operator.namespaces=lab", "additional properties 'namespaces' not allowed"),
        ("agent.metricsPort=0", "at '/agent/metricsPort': minimum"),
        ("bitstreams[0].name=Not_A_Name", "at '/bitstreams/0/name'"),
        ("operator.webhook.failurePolicy=Sometimes", "value must be one of 'Fail', 'Ignore'"),
        ("operator.webhook.timeoutSeconds=31", "at '/operator/webhook/timeoutSeconds': maximum"),
    ],
)
def test_the_schema_refuses_a_bad_value_naming_it(setting: str, message: str) -> None:
    res = helm("lint", "--strict", str(CHART), "--set", setting)
    assert res.returncode != 0
    assert message in res.stdout + res.stderr


def test_a_fixed_runtime_address_with_several_replicas_is_refused_with_advice() -> None:
    res = helm(
        "template", "x", str(CHART), "--set", "runtime.address=10.0.0.7", "--set",
        "runtime.replicas=3",
    )  # fmt: skip
    assert res.returncode != 0
    assert 'runtime.address "10.0.0.7" is one fixed address, but runtime.replicas is 3' in (
        res.stderr
    )
    assert "set runtime.replicas to 1" in res.stderr


#: Maps whose keys are Kubernetes fields or free labels, not chart knobs: documented as a whole.
_FREE_FORM = {"resources", "nodeSelector", "affinity", "labels"}


def _value_paths(values: JSON, prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        paths.append(dotted)
        if isinstance(value, dict) and key not in _FREE_FORM:
            paths += _value_paths(value, f"{dotted}.")
    return paths


def test_every_value_is_documented_by_a_comment_starting_with_its_key() -> None:
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    paths = _value_paths(yaml.safe_load(text))
    assert "runtime.managementToken.existingSecret" in paths
    undocumented = []
    for dotted in paths:
        depth, key = dotted.count("."), dotted.rsplit(".", 1)[-1]
        starts = [i for i, line in enumerate(lines) if line.strip().startswith(f"# {dotted} ")]
        ok = False
        for i in starts:
            j = i
            while lines[j].strip().startswith("#"):
                j += 1
            ok = ok or lines[j].startswith(" " * 2 * depth + f"{key}:")
        if not ok:
            undocumented.append(dotted)
    assert not undocumented, f"values without a comment starting with their key: {undocumented}"


def test_the_charts_crds_are_the_canonical_crds() -> None:
    canonical = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert canonical
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == canonical
    for name in canonical:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"charts/naaice/crds/{name} differs from crds/{name}: run hack/sync-chart.sh"
        )


def test_the_charts_monitoring_is_deploy_monitoring() -> None:
    src = REPO / "deploy" / "monitoring"
    assert (CHART / "files" / "naaice.rules.yaml").read_bytes() == (
        src / "rules" / "naaice.rules.yaml"
    ).read_bytes()
    for board in (src / "dashboards").glob("*.json"):
        assert (CHART / "files" / "dashboards" / board.name).read_bytes() == board.read_bytes()
    docs = objects(
        template(*_api_flags(*MONITORING_APIS), "--set", "monitoring.grafanaDashboard.enabled=true")
    )
    deployed = {d["kind"]: d for d in yaml.safe_load_all((src / "prometheusrule.yaml").read_text())}
    deployed |= {
        d["kind"]: d for d in yaml.safe_load_all((src / "servicemonitor.yaml").read_text())
    }
    (rule,) = find(docs, "PrometheusRule")
    assert rule["spec"] == deployed["PrometheusRule"]["spec"]
    (monitor,) = find(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == deployed["ServiceMonitor"]["spec"]["endpoints"]
    (board_map,) = find(docs, "ConfigMap", "naaice-grafana-dashboards")
    boards = yaml.safe_load((src / "grafana-dashboard-configmap.yaml").read_text())
    assert {k: yaml.safe_load(v) for k, v in board_map["data"].items()} == {
        k: yaml.safe_load(v) for k, v in boards["data"].items()
    }


def test_monitoring_objects_appear_only_when_the_cluster_serves_their_crds() -> None:
    without = objects(template())
    assert not find(without, "ServiceMonitor")
    assert not find(without, "PrometheusRule")
    with_crds = objects(template(*_api_flags(*MONITORING_APIS)))
    assert len(find(with_crds, "ServiceMonitor")) == 1
    assert len(find(with_crds, "PrometheusRule")) == 1
    disabled = objects(
        template(*_api_flags(*MONITORING_APIS), "--set", "monitoring.serviceMonitor.enabled=false")
    )
    assert not find(disabled, "ServiceMonitor")


def test_the_default_bitstreams_are_the_examples() -> None:
    docs = objects(template())
    for example in ("bitstream-test-kernels.yaml", "bitstream-poet-surrogate.yaml"):
        body = yaml.safe_load((REPO / "examples" / example).read_text())
        (rendered,) = find(docs, "Bitstream", body["metadata"]["name"])
        assert rendered["spec"] == body["spec"]


def test_the_default_naas_are_named_like_their_runtime_pods_and_address_them_by_dns() -> None:
    docs = objects(template(release="lab", namespace="fpgas"))
    naas = find(docs, "NetworkAttachedAccelerator")
    assert [n["metadata"]["name"] for n in naas] == ["lab-naaice-naa-0", "lab-naaice-naa-1"]
    (sts,) = find(docs, "StatefulSet")
    assert sts["metadata"]["name"] == "lab-naaice-naa"  # pods lab-naaice-naa-0, -1
    spec = naas[1]["spec"]
    assert spec["address"] == "lab-naaice-naa-1.lab-naaice-naa.fpgas.svc.cluster.local"
    assert spec["management"]["endpoint"] == (
        "http://lab-naaice-naa-1.lab-naaice-naa.fpgas.svc.cluster.local:9010"
    )
    (secret,) = find(docs, "Secret", "lab-naaice-management-token")
    assert spec["management"]["tokenSecretRef"] == {
        "namespace": "fpgas", "name": secret["metadata"]["name"], "key": "token",
    }  # fmt: skip


_TOKEN_SECRET = "naaice-management-token"


def test_a_generated_token_is_48_random_characters_and_a_given_one_is_used() -> None:
    import base64

    tokens = set()
    for _ in range(2):
        (secret,) = find(objects(template()), "Secret", _TOKEN_SECRET)
        tokens.add(base64.b64decode(secret["data"]["token"]).decode())
    assert len(tokens) == 2
    assert all(re.fullmatch(r"[A-Za-z0-9]{48}", t) for t in tokens)
    given = objects(template("--set", "runtime.managementToken.token=s3cret"))
    (secret,) = find(given, "Secret", _TOKEN_SECRET)
    assert base64.b64decode(secret["data"]["token"]) == b"s3cret"
    existing = objects(template("--set", "runtime.managementToken.existingSecret=mine"))
    assert not find(existing, "Secret", _TOKEN_SECRET)
    ref = find(existing, "NetworkAttachedAccelerator")[0]["spec"]["management"]["tokenSecretRef"]
    assert ref["name"] == "mine"


def _command(app: typer.Typer, name: str) -> Any:
    """The command `name` of a Typer app (typer vendors its own click, so duck-typed)."""
    command = typer.main.get_command(app)
    subcommands = getattr(command, "commands", None)
    if subcommands is not None:
        return subcommands[name]
    return command  # a one-command Typer app collapses into that command


def _cli_options(command: Any) -> tuple[set[str], set[str]]:
    flags: set[str] = set()
    envs: set[str] = set()
    for param in command.params:
        if param.param_type_name == "option":
            flags.update(param.opts)
            flags.update(param.secondary_opts)
            if isinstance(param.envvar, str):
                envs.add(param.envvar)
    return flags, envs


def _commands() -> dict[str, tuple[Any, list[str]]]:
    from naa_operator.cli import app as operator_app

    from device_plugin.cli import app as agent_app
    from naa_runtime.cli import app as runtime_app

    return {
        "Deployment": (_command(operator_app, "run"), ["naaice", "operator", "run"]),
        "DaemonSet": (_command(agent_app, "run"), ["naaice", "agent", "run"]),
        "StatefulSet": (_command(runtime_app, "serve"), ["naaice", "runtime", "serve"]),
    }


#: Env vars the containers set that are read by something other than a typer option.
_OTHER_ENV = {"TMPDIR", "POD_NAMESPACE"}


@pytest.mark.parametrize("values", [None, CUSTOM], ids=["default", "custom"])
def test_containers_use_only_flags_and_env_twins_the_clis_define(values: Path | None) -> None:
    docs = objects(template(*(["-f", str(values)] if values else [])))
    for kind, (command, prefix) in _commands().items():
        flags, envs = _cli_options(command)
        argv = container_args(docs, kind)
        assert argv[: len(prefix)] == prefix
        for arg in argv[len(prefix) :]:
            flag = arg.split("=", 1)[0]
            assert flag in flags, f"{kind}: {flag} is not an option of `{' '.join(prefix)}`"
        (workload,) = find(docs, kind)
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        for env in container.get("env", []):
            if env["name"] not in _OTHER_ENV:
                assert env["name"] in envs, f"{kind}: {env['name']} is no env twin of {prefix}"


def test_the_runtime_reads_the_token_file_the_secret_is_mounted_at() -> None:
    docs = objects(template())
    argv = container_args(docs, "StatefulSet")
    (token_flag,) = [a for a in argv if a.startswith("--token-file=")]
    token_path = Path(token_flag.split("=", 1)[1])
    (sts,) = find(docs, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "management-token"]
    assert Path(mount["mountPath"]) == token_path.parent
    (volume,) = [v for v in pod["volumes"] if v["name"] == "management-token"]
    assert volume["secret"]["items"] == [{"key": "token", "path": token_path.name}]


def _rules(docs: list[JSON], name: str) -> list[JSON]:
    (role,) = find(docs, "ClusterRole", name)
    return list(role["rules"])


def test_the_charts_rbac_is_deploy_rbac() -> None:
    rbac_dir = REPO / "deploy" / "rbac"
    for path in rbac_dir.glob("*.yaml"):
        copy = CHART / "files" / "rbac" / path.name
        assert copy.is_file(), f"{copy} is missing: run hack/sync-chart.sh"
        assert copy.read_bytes() == path.read_bytes(), f"{copy} is stale: run hack/sync-chart.sh"
    deployed: dict[str, list[JSON]] = {}
    for path in sorted(rbac_dir.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "ClusterRole":
                deployed[doc["metadata"]["name"]] = doc["rules"]
    assert deployed, f"no ClusterRole in {rbac_dir}"
    # The chart owns its webhook configuration (the operator runs --webhook-unmanaged), so the
    # registration role of a self-registering operator is the one it leaves out.
    registration = deployed.pop("naaice-operator-webhook-registration")
    assert registration[0]["apiGroups"] == ["admissionregistration.k8s.io"]
    docs = objects(template())
    assert not find(docs, "ClusterRole", "naaice-operator-webhook-registration")
    for name, rules in deployed.items():
        assert _rules(docs, name) == rules, f"ClusterRole {name}: chart and {rbac_dir} differ"
    for rule in _rules(docs, "naaice-operator"):
        assert "admissionregistration.k8s.io" not in rule["apiGroups"], rule


def _webhook_objects(docs: list[JSON]) -> tuple[JSON, JSON, JSON]:
    (config,) = find(docs, "MutatingWebhookConfiguration")
    (service,) = find(docs, "Service", "lab-naaice-operator")
    (deployment,) = find(docs, "Deployment")
    return config, service, deployment


def test_the_webhook_configuration_calls_the_path_the_operator_serves_through_its_service() -> None:
    from naa_operator.handlers.run import WEBHOOK_PATH

    docs = objects(template(release="lab", namespace="fpgas"))
    config, service, deployment = _webhook_objects(docs)
    (hook,) = config["webhooks"]
    assert hook["clientConfig"]["service"] == {
        "name": "lab-naaice-operator", "namespace": "fpgas", "port": 443, "path": WEBHOOK_PATH,
    }  # fmt: skip
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["objectSelector"] == {
        "matchExpressions": [{"key": "naaice.io/naajob", "operator": "Exists"}]
    }
    assert hook["rules"] == [
        {
            "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
            "operations": ["CREATE"], "scope": "Namespaced",
        }
    ]  # fmt: skip
    assert "namespaceSelector" not in hook  # the operator watches every namespace
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443
    pod = deployment["spec"]["template"]["spec"]
    assert service["spec"]["selector"].items() <= pod_labels(deployment).items()
    (container,) = pod["containers"]
    (container_port,) = container["ports"]
    assert container_port == {"name": port["targetPort"], "containerPort": 9443, "protocol": "TCP"}
    argv = container_args(docs, "Deployment")
    assert "--webhook-port=9443" in argv
    assert "--webhook-unmanaged" in argv
    assert "--webhook-host=0.0.0.0" in argv
    assert not [a for a in argv if a.startswith("--webhook-ca")]
    # The certificate and key the operator reads are the mounted Secret's.
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "webhook-tls"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "webhook-tls"]
    for flag, key in (("--webhook-cert", "tls.crt"), ("--webhook-key", "tls.key")):
        (arg,) = [a for a in argv if a.startswith(f"{flag}=")]
        path = Path(arg.split("=", 1)[1])
        assert Path(mount["mountPath"]) == path.parent
        assert {"key": key, "path": path.name} in volume["secret"]["items"]
    (secret,) = find(docs, "Secret", volume["secret"]["secretName"])
    assert secret["type"] == "kubernetes.io/tls"


def pod_labels(workload: JSON) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def test_the_generated_certificate_names_the_service_and_chains_to_the_ca_bundle() -> None:
    import base64
    from datetime import UTC, datetime

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    docs = objects(template(release="lab", namespace="fpgas"))
    config, _service, _deployment = _webhook_objects(docs)
    (secret,) = find(docs, "Secret", "lab-naaice-operator-webhook")
    ca_pem = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
    assert base64.b64decode(secret["data"]["ca.crt"]) == ca_pem
    ca = x509.load_pem_x509_certificate(ca_pem)
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == [
        "lab-naaice-operator", "lab-naaice-operator.fpgas", "lab-naaice-operator.fpgas.svc",
    ]  # fmt: skip
    assert leaf.issuer == ca.subject
    # ECDSA P-256 (fast to generate at every install), the leaf signed by the CA's key.
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.signature_hash_algorithm is not None
    public.verify(
        leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm)
    )
    assert leaf.not_valid_after_utc > datetime.now(UTC)
    # Two renders (no cluster to look up) make two different CAs: only `lookup` keeps one.
    again = objects(template(release="lab", namespace="fpgas"))
    (config2, _s, _d) = _webhook_objects(again)
    assert (
        config2["webhooks"][0]["clientConfig"]["caBundle"]
        != (config["webhooks"][0]["clientConfig"]["caBundle"])
    )


def test_a_user_supplied_tls_secret_replaces_the_generated_one() -> None:
    docs = objects(
        template(
            "--set", "operator.webhook.tls.existingSecret=operator-webhook-cert",
            "--set", "operator.webhook.annotations.cert-manager\\.io/inject-ca-from=fpgas/cert",
            release="lab", namespace="fpgas",
        )
    )  # fmt: skip
    assert not find(docs, "Secret", "lab-naaice-operator-webhook")
    config, _service, deployment = _webhook_objects(docs)
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    assert config["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "fpgas/cert"}
    (volume,) = [
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "webhook-tls"
    ]
    assert volume["secret"]["secretName"] == "operator-webhook-cert"
    given = objects(
        template(
            "--set", "operator.webhook.tls.existingSecret=mine",
            "--set", "operator.webhook.tls.caBundle=Q0E=",
            "--set", "operator.webhook.failurePolicy=Ignore",
            "--set", "operator.webhook.timeoutSeconds=5",
            "--set", "operator.namespace=jobs",
            release="lab", namespace="fpgas",
        )
    )  # fmt: skip
    config, _service, _deployment = _webhook_objects(given)
    (hook,) = config["webhooks"]
    assert hook["clientConfig"]["caBundle"] == "Q0E="
    assert hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] == 5
    assert hook["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "jobs"}}


def test_without_the_webhook_nothing_of_it_is_rendered() -> None:
    docs = objects(template("--set", "operator.webhook.enabled=false"))
    assert not find(docs, "MutatingWebhookConfiguration")
    assert not find(docs, "Service", "naaice-operator")
    assert not find(docs, "Secret", "naaice-operator-webhook")
    assert not [a for a in container_args(docs, "Deployment") if a.startswith("--webhook")]
    (deployment,) = find(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "ports" not in container
