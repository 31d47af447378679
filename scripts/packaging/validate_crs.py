"""Validates custom resources against the openAPIV3Schema of their CRD.

    validate_crs.py --crd manifests/crd.yaml --crd charts/kadi/crds/shortlink.yaml \
        manifests/examples/*.yaml

kubernetes-validate knows only built-in kinds and skips ShortLinks, so this
checks them with jsonschema, and evaluates the CRD's CEL rules
(x-kubernetes-validations) with cel-python, as the API server would on
create. Transition rules (those using oldSelf) only apply to updates and are
skipped. A file whose name contains "invalid" is a deliberately broken
example and must be refused; if it passes only because a rule uses a
Kubernetes CEL extension that cel-python lacks, it is reported as undecided.

Exit status: 0 when every resource is as expected, 1 otherwise.
"""

import argparse
import pathlib
import sys

import celpy
import jsonschema
import yaml

CEL = celpy.Environment()


def load(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def crd_schemas(paths):
    """(apiVersion, kind) -> openAPIV3Schema, from CRD files."""
    schemas = {}
    for path in paths:
        for crd in load(path):
            if crd.get("kind") != "CustomResourceDefinition":
                raise SystemExit(f"{path}: {crd.get('kind')} is not a CustomResourceDefinition")
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                jsonschema.Draft7Validator.check_schema(schema)
                key = (f"{group}/{version['name']}", kind)
                if key in schemas and schemas[key] != schema:
                    raise SystemExit(f"{path}: {kind} {version['name']} differs from another CRD file")
                schemas[key] = schema
    return schemas


def errors_of(resource, schema):
    """(errors, rules that could not be evaluated) of one resource."""
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = []
    if not resource.get("metadata", {}).get("name"):
        errors.append("metadata.name: missing")
    for error in sorted(validator.iter_errors(resource), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path) or "(root)"
        errors.append(f"{where}: {error.message}")
    unsupported = []
    if not errors:
        cel_errors(resource, schema, "", errors, unsupported)
    return errors, unsupported


def cel_errors(value, schema, where, errors, unsupported):
    """Evaluates the CEL rules of `schema` and of its nested schemas."""
    for rule in schema.get("x-kubernetes-validations", []):
        expr = rule["rule"]
        if "oldSelf" in expr:
            continue  # a transition rule: it needs the stored object
        try:
            program = CEL.program(CEL.compile(expr))
            result = program.evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELParseError as e:
            unsupported.append(f"{where or '(root)'}: {expr}: {e}")
            continue
        except celpy.CELEvalError as e:
            if "undeclared reference" in str(e.args[0]):
                unsupported.append(f"{where or '(root)'}: {expr}: {e.args[0][:80]}")
                continue
            result = False  # the API server refuses a rule that errors
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            errors.append(f"{where or '(root)'}: {rule.get('message', expr)} (CEL: {expr})")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, sub in value.items():
            nested = properties.get(key)
            if nested is None and isinstance(schema.get("additionalProperties"), dict):
                nested = schema["additionalProperties"]
            if nested is not None:
                cel_errors(sub, nested, f"{where}.{key}" if where else key, errors, unsupported)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            cel_errors(item, schema["items"], f"{where}[{i}]", errors, unsupported)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crd", action="append", required=True, help="CRD file (repeatable)")
    parser.add_argument("resources", nargs="+", help="files with custom resources")
    args = parser.parse_args()

    schemas = crd_schemas(args.crd)
    bad = checked = 0
    for path in args.resources:
        expect_invalid = "invalid" in pathlib.Path(path).name
        for resource in load(path):
            key = (resource.get("apiVersion"), resource.get("kind"))
            if key not in schemas:
                continue  # a built-in kind; kubernetes-validate checks those
            checked += 1
            schema = schemas[key]
            name = f"{path}: {resource['kind']}/{resource.get('metadata', {}).get('name')}"
            errors, unsupported = errors_of(resource, schema)
            for rule in unsupported:
                print(f"note  {name}: rule not evaluated here: {rule}")
            if expect_invalid and errors:
                print(f"ok    {name} is refused as intended: {errors[0]}")
            elif expect_invalid and unsupported:
                print(f"note  {name} passes every rule evaluated here; undecided")
            elif expect_invalid:
                print(f"FAIL  {name} is meant to be invalid but passes the schema")
                bad += 1
            elif errors:
                bad += 1
                for error in errors:
                    print(f"FAIL  {name}: {error}")
            else:
                print(f"ok    {name}")
    if checked == 0:
        print("FAIL  no custom resource of a known CRD was found")
        bad += 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
