"""The topic registry is the one source of truth: the committed KafkaTopics, ScaledObjects and
dashboards are what deploy/k8s/generate.py writes from it, and a change on one side only fails."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from aforo.dispatcher.retry_schedule import DEFAULT_DELAY_TIERS, all_retry_topics
from aforo.shared import topics
from aforo.shared.kafka import TopicNames, topic_specs
from aforo.shared.settings import ServiceSettings
from tests.deploy.manifests import K8S, by_kind, copy_k8s


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aforo_k8s_generate", K8S / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_files_are_what_the_registry_generates() -> None:
    done = subprocess.run(
        [sys.executable, str(K8S / "generate.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_topic_changed_in_code_but_not_in_yaml_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    module = generator()
    changed = tuple(
        dataclasses.replace(t, partitions=24) if t.key == "system_events" else t for t in topics.OWNED_TOPICS
    )
    monkeypatch.setattr(module, "OWNED_TOPICS", changed)
    assert module.stale_files() == [Path("components/strimzi/topics.yaml")]


def test_yaml_edited_by_hand_fails(tmp_path: Path) -> None:
    k8s = copy_k8s(tmp_path)
    path = k8s / "components" / "strimzi" / "topics.yaml"
    path.write_text(path.read_text().replace("partitions: 12", "partitions: 6", 1))
    done = subprocess.run(
        [sys.executable, str(K8S / "generate.py"), "--check", "--root", str(k8s)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "topics.yaml" in done.stdout


def test_every_owned_topic_has_one_kafka_topic(rendered_components: dict[str, list[dict[str, Any]]]) -> None:
    crs = {cr["spec"]["topicName"]: cr for cr in by_kind(rendered_components["strimzi"], "KafkaTopic")}
    names = TopicNames("aforo.")
    for name in (
        names.system_events,
        names.custom_events,
        names.widget_events,
        names.config_changes,
        names.dispatch_requests,
        names.bridge_dead_letter,
        names.trigger_dead_letter,
        names.dispatch_dead_letter,
        *all_retry_topics("aforo."),
    ):
        assert name in crs, name
    assert len(crs) == len(topics.OWNED_TOPICS)
    assert crs[names.config_changes]["spec"]["config"]["cleanup.policy"] == "compact"


def test_the_code_reads_its_topics_and_tiers_from_the_registry() -> None:
    assert DEFAULT_DELAY_TIERS == topics.DELAY_TIERS
    assert TopicNames("p.").dispatch_dead_letter == topics.DISPATCH_DEAD_LETTER.name("p.")
    assert len({t.suffix for t in topics.OWNED_TOPICS}) == len(topics.OWNED_TOPICS)
    assert [t.delay_seconds for t in topics.OWNED_TOPICS if t.delay_seconds] == list(topics.DELAY_TIERS)


def test_consumers_scale_at_most_to_their_partitions(
    rendered_components: dict[str, list[dict[str, Any]]],
) -> None:
    scaled = {so["metadata"]["name"]: so for so in by_kind(rendered_components["keda"], "ScaledObject")}
    for group in topics.CONSUMER_GROUPS:
        so = scaled[f"aforo-{group.service}"]
        assert so["spec"]["maxReplicaCount"] <= group.max_replicas
        groups = [t["metadata"]["consumerGroup"] for t in so["spec"]["triggers"] if t["type"] == "kafka"]
        assert group.group_id.format(prefix="aforo.") in groups


def test_keda_and_the_cpu_hpa_never_scale_the_same_deployment(
    rendered_overlays: dict[str, list[dict[str, Any]]],
) -> None:
    for overlay, docs in rendered_overlays.items():
        by_hpa = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind(docs, "HorizontalPodAutoscaler")}
        by_keda = {s["spec"]["scaleTargetRef"]["name"] for s in by_kind(docs, "ScaledObject")}
        assert not by_hpa & by_keda, overlay
        assert by_hpa or by_keda, overlay


def test_a_topic_a_process_creates_takes_the_registry_s_configuration() -> None:
    settings = ServiceSettings(topic_prefix="t.", topic_partitions=3)
    names = TopicNames("t.")
    specs = {
        s.name: s
        for s in topic_specs([names.dispatch_dead_letter, names.config_changes, "t.other"], settings)
    }
    assert specs[names.dispatch_dead_letter].config == {
        "cleanup.policy": "delete",
        "retention.ms": str(30 * topics.DAY_MS),
    }
    assert specs[names.config_changes].config["cleanup.policy"] == "compact"
    assert "retention.ms" not in specs[names.config_changes].config
    assert specs["t.other"].config == {}
    assert specs[names.dispatch_dead_letter].partitions == 3
