"""Custom resources (Strimzi, Prometheus Operator, KEDA) against the schemas kept in
deploy/k8s/schemas: the fields the project uses, unknown ones refused."""

from __future__ import annotations

import copy
import json
from typing import Any

from jsonschema import Draft202012Validator

from tests.deploy.manifests import K8S, by_kind

SCHEMAS = {
    ("kafka.strimzi.io/v1", "KafkaTopic"): "kafkatopic",
    ("kafka.strimzi.io/v1", "Kafka"): "kafka",
    ("kafka.strimzi.io/v1", "KafkaNodePool"): "kafkanodepool",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject",
}
CUSTOM_GROUPS = {api for api, _ in SCHEMAS}


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((K8S / "schemas" / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(documents: list[dict[str, Any]]) -> list[str]:
    errors = []
    for doc in documents:
        if doc["apiVersion"] not in CUSTOM_GROUPS:
            continue
        key = (doc["apiVersion"], doc["kind"])
        if key not in SCHEMAS:
            errors.append(f"{doc['kind']} ({doc['apiVersion']}): no schema in deploy/k8s/schemas")
            continue
        for error in validator(SCHEMAS[key]).iter_errors(doc):
            where = "/".join(str(part) for part in error.absolute_path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']} at {where or '/'}: {error.message}")
    return errors


def test_every_custom_resource_matches_its_schema(everything_rendered: list[dict[str, Any]]) -> None:
    kinds = {doc["kind"] for doc in everything_rendered if doc["apiVersion"] in CUSTOM_GROUPS}
    assert kinds == {"KafkaTopic", "Kafka", "KafkaNodePool", "PodMonitor", "PrometheusRule", "ScaledObject"}
    assert schema_errors(everything_rendered) == []


def test_strimzi_resources_use_the_v1_api(everything_rendered: list[dict[str, Any]]) -> None:
    strimzi = [doc for doc in everything_rendered if doc["apiVersion"].startswith("kafka.strimzi.io/")]
    assert strimzi
    assert {doc["apiVersion"] for doc in strimzi} == {"kafka.strimzi.io/v1"}


def test_an_unknown_or_typo_d_field_is_refused(everything_rendered: list[dict[str, Any]]) -> None:
    topic = copy.deepcopy(by_kind(everything_rendered, "KafkaTopic")[0])
    topic["spec"]["partitons"] = topic["spec"].pop("partitions")
    rule = copy.deepcopy(by_kind(everything_rendered, "PrometheusRule")[0])
    rule["spec"]["groups"][1]["rules"][0]["runbook_url"] = "misplaced: belongs in annotations"
    scaled = copy.deepcopy(by_kind(everything_rendered, "ScaledObject")[0])
    scaled["spec"]["maxReplicas"] = 3
    errors = schema_errors([topic, rule, scaled])
    assert any("partitons" in error for error in errors)
    assert any("runbook_url" in error for error in errors)
    assert any("maxReplicas" in error for error in errors)
    assert len(errors) >= 3
