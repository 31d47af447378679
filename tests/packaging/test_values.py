"""values.yaml documents every value with `# --`, the schema knows every
value and refuses bad ones, and docs/deploy.md lists them all."""

import json
import re

import yaml

from conftest import CHART, NAMESPACE, REPO, helm
import values_reference

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):(?: |$)")


def test_every_value_has_a_description():
    lines = (CHART / "values.yaml").read_text().splitlines()
    missing = []
    for n, line in enumerate(lines):
        m = KEY.match(line)
        if not m:
            continue
        # The comment block right above the key must start with `# --`.
        above = n - 1
        block = []
        while above >= 0 and lines[above].strip().startswith("#"):
            block.insert(0, lines[above].strip())
            above -= 1
        if not any(b.startswith("# -- ") for b in block):
            missing.append(f"line {n + 1}: {m['key']}")
    assert not missing, "values without a `# --` description:\n" + "\n".join(missing)


def leaf_paths(node, prefix=()):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaf_paths(value, prefix + (key,))
    else:
        yield prefix


def schema_at(schema, path):
    for key in path:
        if isinstance(schema.get("additionalProperties"), dict):
            return schema  # a free-form map, such as labels
        props = schema.get("properties", {})
        assert key in props, f"schema has no {'.'.join(path)}"
        schema = props[key]
    return schema


def test_schema_describes_every_value_and_allows_nothing_else():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path in leaf_paths(values):
        schema_at(schema, path)
    assert schema["additionalProperties"] is False


def fails(*args):
    result = helm("template", "x", str(CHART), "--namespace", NAMESPACE, *args, check=False)
    return result.returncode != 0


def test_schema_refuses_typos_and_unsafe_values():
    assert fails("--set", "app.replica=3")
    assert fails("--set", "autoscaling.minReplicas=1")
    assert fails("--set", "podDisruptionBudget.maxUnavailable=0")
    assert fails("--set", "postgresql.auth.password=p@ss/word")
    assert fails("--set", "log.format=yaml")
    assert fails("--set", "externalDatabase.url=mysql://x")


def test_impossible_combinations_are_refused():
    assert fails("--set", "postgresql.enabled=false")  # no database at all
    assert fails("--set", "externalDatabase.existingSecret=db")  # two databases
    assert fails("--set", "ingress.enabled=true")  # no host


def test_docs_list_every_value():
    doc = (REPO / "docs" / "deploy.md").read_text()
    expected = values_reference.table((CHART / "values.yaml").read_text())
    assert values_reference.current_table(doc) == expected, (
        "docs/deploy.md's values reference is stale: "
        "run .ci-cache/venv/bin/python tests/packaging/values_reference.py --write"
    )
