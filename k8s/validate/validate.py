"""Renders every kustomization of k8s/ and validates every object it renders.

Usage: validate.py KUBECTL SCHEMAS_DIR

KUBECTL renders (its built-in kustomize); SCHEMAS_DIR holds node_modules with the custom
resources' models and a copy of crds.mjs. What is rendered: each overlay, the base with each
component on its own (so that every component is checked whether or not an overlay uses it), and
k8s/platform/crossplane. Each object is checked by the first of these that knows its kind:

- the Kubernetes API (apps/v1, v1, ...): kubernetes-validate's strict schemas, which also reject
  fields the API does not have;
- a Crossplane CompositeResourceDefinition (XRD): its own shape (the fields of Crossplane's v1
  XRD, nothing else), then as the CustomResourceDefinitions Crossplane generates from it (the
  composite's and the claim's), against Kubernetes' strict CustomResourceDefinition schema and
  the API server's rules for their openAPIV3Schema (structural schemas; see crd_schema_problems);
- a claim or composite of an XRD in k8s/platform/crossplane: that XRD's openAPIV3Schema, strict;
- a custom resource of an operator in crds.mjs's table: the operator's kubernetes-models
  validator (types, required fields, enums; unknown fields are not detected).

Any other kind (there is no "metadata only" fallback), any invalid object and any render that
fails make the exit status 1.
"""

import collections
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import importlib_resources
import jsonschema
import referencing
import yaml

K8S = pathlib.Path(__file__).resolve().parent.parent
# The oldest Kubernetes the manifests are meant for.
KUBERNETES_VERSION = "1.32.0"
KUBERNETES_GROUPS = {"", "apps", "autoscaling", "batch", "policy"}
XRD = ("apiextensions.crossplane.io/v1", "CompositeResourceDefinition")
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
COMPOSITION_REF = {
    "type": "object", "required": ["name"], "additionalProperties": False,
    "properties": {"name": {"type": "string"}},
}
# The fields of Crossplane's v1 CompositeResourceDefinition (apiextensions.crossplane.io/v1), as
# JSON Schema. Where a field goes into the generated CRDs unchanged (names, claimNames, conversion,
# each version's schema and additionalPrinterColumns) only its type is checked here: the strict
# CustomResourceDefinition schema checks the rest.
XRD_VERSION_SHAPE = {
    "type": "object",
    "required": ["name", "referenceable", "served"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "referenceable": {"type": "boolean"},
        "served": {"type": "boolean"},
        "deprecated": {"type": "boolean"},
        "deprecationWarning": {"type": "string"},
        "schema": {"type": "object"},
        "additionalPrinterColumns": {"type": "array"},
    },
}
XRD_SPEC_SHAPE = {
    "type": "object",
    "required": ["group", "names", "versions"],
    "additionalProperties": False,
    "properties": {
        "group": {"type": "string"},
        "names": {"type": "object"},
        "claimNames": {"type": "object"},
        "connectionSecretKeys": {"type": "array", "items": {"type": "string"}},
        "defaultCompositionRef": COMPOSITION_REF,
        "enforcedCompositionRef": COMPOSITION_REF,
        "defaultCompositionUpdatePolicy": {"enum": ["Automatic", "Manual"]},
        "defaultCompositeDeletePolicy": {"enum": ["Background", "Foreground"]},
        "versions": {"type": "array", "minItems": 1, "items": XRD_VERSION_SHAPE},
        "conversion": {"type": "object"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"labels": STRING_MAP, "annotations": STRING_MAP},
        },
    },
}
# What the API server accepts as an openAPIV3Schema's `type`.
SCHEMA_TYPES = ["array", "boolean", "integer", "number", "object", "string"]
# JSONSchemaProps fields a structural schema must not use.
NOT_STRUCTURAL = ["$ref", "$schema", "id", "definitions", "dependencies", "patternProperties", "additionalItems"]
# Fields Crossplane adds to the spec of every claim and composite resource.
CROSSPLANE_SPEC_FIELDS = [
    "compositionRef", "compositionSelector", "compositionUpdatePolicy", "compositionRevisionRef",
    "compositionRevisionSelector", "publishConnectionDetailsTo", "writeConnectionSecretToRef",
    "resourceRef", "resourceRefs", "claimRef",
]
NAMESPACE = """apiVersion: builtin
kind: NamespaceTransformer
metadata:
  name: quantatom-namespace
  namespace: quantatom
unsetOnly: true
"""


def renders(scratch):
    """(name, directory) of every kustomization to render."""
    targets = [(f"overlays/{d.name}", d) for d in sorted((K8S / "overlays").iterdir()) if d.is_dir()]
    for component in sorted((K8S / "components").iterdir()):
        if not component.is_dir():
            continue
        folder = scratch / component.name
        folder.mkdir()
        (folder / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            # kustomize takes relative paths only.
            "resources": [os.path.relpath(K8S / "base", folder)],
            "components": [os.path.relpath(component, folder)],
            "transformers": [NAMESPACE],
        }))
        targets.append((f"base + components/{component.name}", folder))
    targets.append(("platform/crossplane", K8S / "platform" / "crossplane"))
    return targets


class Kubernetes:
    """kubernetes-validate's strict schemas of one Kubernetes version, loaded once."""

    def __init__(self):
        root = importlib_resources.files("kubernetes_validate") / "kubernetes-json-schema"
        self.folder = root / f"v{KUBERNETES_VERSION}-local-strict"
        definitions = json.loads((self.folder / "_definitions.json").read_text())
        self.registry = referencing.Resource.from_contents(definitions) @ referencing.Registry()
        self.validators = {}

    def definition(self, name):
        return {"$ref": f"https://kubernetes.io/api/_definitions.json#/$defs/{name}"}

    def validator(self, api_version, kind):
        key = (api_version, kind)
        if key not in self.validators:
            group_version = api_version.split("/")
            prefix = group_version[0].split(".")[0] + "-" if len(group_version) == 2 else ""
            schema_file = self.folder / f"{kind.lower()}-{prefix}{group_version[-1]}.json"
            if not schema_file.is_file():
                self.validators[key] = None
            else:
                schema = json.loads(schema_file.read_text())
                self.validators[key] = self.compile(schema)
        return self.validators[key]

    def compile(self, schema):
        return jsonschema.Draft202012Validator(schema, registry=self.registry)


def strict(schema):
    """An openAPIV3Schema as JSON Schema that refuses fields it does not list, as the API server
    prunes them (except where x-kubernetes-preserve-unknown-fields keeps them)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: strict(value) for key, value in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        converted["additionalProperties"] = False
    if schema.get("nullable"):
        converted = {"anyOf": [{"type": "null"}, converted]}
    return converted


def crd_schema_problems(kubernetes, schema, path, field=True, root=True):
    """The API server's checks of a CRD version's openAPIV3Schema that kubernetes-validate's
    CustomResourceDefinition schema leaves out: it knows JSONSchemaProps' fields and their JSON
    types, not their values, so `type: strin` passes it. Checked here, as the API server does
    (a subset of its rules, the ones that matter to hand-written schemas):
    - each `type` is one of SCHEMA_TYPES;
    - the schema is structural: an object at the root; a type for the root, each property,
      additionalProperties and items (unless x-kubernetes-int-or-string or
      x-kubernetes-preserve-unknown-fields stands in); items for every array; none of
      NOT_STRUCTURAL; additionalProperties neither beside properties nor false; no
      uniqueItems: true;
    - each default is valid under its schema, unknown fields included."""
    if not isinstance(schema, dict):
        return [f"{path}: must be a schema (an object)"]
    problems = [f"{path}.{key}: Forbidden: not allowed in a structural schema"
                for key in NOT_STRUCTURAL if key in schema]
    kind = schema.get("type")
    if kind is not None and kind not in SCHEMA_TYPES:
        problems.append(f"{path}.type: Unsupported value: {json.dumps(kind)}: supported values: "
                        + ", ".join(json.dumps(t) for t in SCHEMA_TYPES))
    elif kind is None and field and not (schema.get("x-kubernetes-int-or-string")
                                         or schema.get("x-kubernetes-preserve-unknown-fields")):
        problems.append(f"{path}.type: Required value: must not be empty for specified fields")
    if root and kind in SCHEMA_TYPES and kind != "object":
        problems.append(f"{path}.type: Invalid value: {json.dumps(kind)}: must be object at the root")
    if kind == "array" and "items" not in schema:
        problems.append(f"{path}.items: Required value: must be specified for an array")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive")
    if schema.get("additionalProperties") is False:
        problems.append(f"{path}.additionalProperties: Forbidden: must not be false in a structural schema")
    if schema.get("uniqueItems") is True:
        problems.append(f"{path}.uniqueItems: Forbidden: uniqueItems cannot be set to true")
    children = [(f"{path}.properties.{name}", child, True) for name, child in (schema.get("properties") or {}).items()]
    if isinstance(schema.get("items"), list):
        problems.append(f"{path}.items: Forbidden: must be a schema, not a list of schemas")
    elif "items" in schema:
        children.append((f"{path}.items", schema["items"], True))
    if isinstance(schema.get("additionalProperties"), dict):
        children.append((f"{path}.additionalProperties", schema["additionalProperties"], True))
    for junctor in ("allOf", "anyOf", "oneOf"):
        children += [(f"{path}.{junctor}.{i}", child, False) for i, child in enumerate(schema.get(junctor) or [])]
    if "not" in schema:
        children.append((f"{path}.not", schema["not"], False))
    for child_path, child, child_field in children:
        problems += crd_schema_problems(kubernetes, child, child_path, child_field, root=False)
    if "default" in schema and not problems:
        problems += [f"{path}.default: Invalid value: {problem.removeprefix('(top): ')}"
                     for problem in errors_of(kubernetes.compile(strict(schema)), schema["default"])]
    return problems


def generated_crds(xrd):
    """The CustomResourceDefinitions Crossplane makes from a (well-formed) v1 XRD: the composite's
    (cluster-scoped) and, with claimNames, the claim's (namespaced). Crossplane adds its own
    fields (spec.compositionRef, status.conditions, ...) to each version's schema and its
    printer columns; what is checked here is what the XRD brings."""
    spec = xrd["spec"]
    versions = []
    for version in spec["versions"]:
        generated = {"name": version["name"], "served": version["served"], "storage": version["referenceable"]}
        for field in ("deprecated", "deprecationWarning", "schema", "additionalPrinterColumns"):
            if field in version:
                generated[field] = version[field]
        versions.append(generated)
    crds = []
    for names, scope in [(spec["names"], "Cluster"), (spec.get("claimNames"), "Namespaced")]:
        if names is None:
            continue
        metadata = {"name": f"{names.get('plural', '?')}.{spec['group']}"}
        metadata.update(spec.get("metadata", {}))
        crd = {
            "apiVersion": CRD[0],
            "kind": CRD[1],
            "metadata": metadata,
            "spec": {"group": spec["group"], "names": names, "scope": scope, "versions": versions},
        }
        if "conversion" in spec:
            crd["spec"]["conversion"] = spec["conversion"]
        crds.append(crd)
    return crds


def xrd_problems(kubernetes, xrd):
    """Problems of a CompositeResourceDefinition: its shape, then its generated CRDs."""
    shape = kubernetes.compile({
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": XRD[0]},
            "kind": {"const": XRD[1]},
            "metadata": kubernetes.definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "spec": XRD_SPEC_SHAPE,
            "status": {"type": "object"},
        },
    })
    problems = errors_of(shape, xrd)
    if problems:
        return problems
    spec = xrd["spec"]
    expected = f"{spec['names'].get('plural', '?')}.{spec['group']}"
    if xrd["metadata"].get("name") != expected:
        problems.append(f"metadata.name: Invalid value: {json.dumps(xrd['metadata'].get('name'))}: "
                        f"must be spec.names.plural + \".\" + spec.group ({expected})")
    if sum(1 for version in spec["versions"] if version["referenceable"]) != 1:
        problems.append("spec.versions: Invalid value: exactly one version must be referenceable")
    names = [version["name"] for version in spec["versions"]]
    if len(set(names)) != len(names):
        problems.append("spec.versions: Duplicate value: version names must be unique")
    crd_validator = kubernetes.validator(*CRD)
    for crd in generated_crds(xrd):
        where = f"as CRD {crd['metadata']['name']}"
        crd_problems = errors_of(crd_validator, crd)
        if not crd_problems:
            for i, version in enumerate(crd["spec"]["versions"]):
                if "openAPIV3Schema" in version.get("schema", {}):
                    crd_problems += crd_schema_problems(
                        kubernetes, version["schema"]["openAPIV3Schema"], f"spec.versions.{i}.schema.openAPIV3Schema")
        problems += [f"{where}: {problem}" for problem in crd_problems]
    return problems


def xrd_validators(kubernetes):
    """(apiVersion, kind) -> (validator, source) for the claims and composites of
    k8s/platform/crossplane. The validator is None for those of an XRD that has problems (its
    schema cannot be trusted to validate with); the XRD itself reports them."""
    validators = {}
    for path in sorted((K8S / "platform" / "crossplane").glob("*.yaml")):
        for xrd in yaml.safe_load_all(path.read_text()):
            if not isinstance(xrd, dict) or xrd.get("kind") != XRD[1]:
                continue
            source = f"XRD {xrd.get('metadata', {}).get('name', '?')}"
            invalid = bool(xrd_problems(kubernetes, xrd))
            spec = xrd.get("spec") if isinstance(xrd.get("spec"), dict) else {}
            kinds = [names.get("kind") for names in (spec.get("names"), spec.get("claimNames"))
                     if isinstance(names, dict)]
            versions = spec.get("versions") if isinstance(spec.get("versions"), list) else []
            for version in versions:
                if not isinstance(version, dict):
                    continue
                api_version = f"{spec.get('group')}/{version.get('name')}"
                if invalid:
                    validators.update({(api_version, kind): (None, source) for kind in kinds})
                    continue
                schema = strict(version.get("schema", {}).get("openAPIV3Schema", {"type": "object"}))
                schema.setdefault("properties", {}).setdefault("spec", {"type": "object"})
                for field in CROSSPLANE_SPEC_FIELDS:
                    schema["properties"]["spec"].setdefault("properties", {}).setdefault(field, {})
                for kind in kinds:
                    whole = dict(schema)
                    whole["properties"] = dict(schema["properties"])
                    whole["properties"].update({
                        "apiVersion": {"const": api_version},
                        "kind": {"const": kind},
                        "metadata": kubernetes.definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
                    })
                    whole["required"] = sorted(set(whole.get("required", [])) | {"apiVersion", "kind", "metadata"})
                    validators[(api_version, kind)] = (kubernetes.compile(whole), source)
    return validators


def errors_of(validator, obj):
    try:
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    except (jsonschema.exceptions.SchemaError, jsonschema.exceptions.UnknownType) as error:
        # A schema of our own making (an XRD's) that jsonschema cannot apply.
        return [f"(top): the schema cannot be applied: {str(error).splitlines()[0]}"]
    return [f"{'.'.join(str(step) for step in error.absolute_path) or '(top)'}: {error.message}" for error in errors]


def main():
    kubectl, schemas = sys.argv[1], pathlib.Path(sys.argv[2])
    kubernetes = Kubernetes()
    xrds = xrd_validators(kubernetes)
    failures = []
    counts = collections.Counter()
    how = {}
    crds = []  # (render, object) for crds.mjs
    with tempfile.TemporaryDirectory() as scratch:
        targets = renders(pathlib.Path(scratch))
        for name, folder in targets:
            rendered = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True)
            if rendered.returncode != 0:
                failures.append(f"{name}: kustomize failed:\n{rendered.stderr.strip()}")
                continue
            objects = [o for o in yaml.safe_load_all(rendered.stdout) if o is not None]
            if not objects:
                failures.append(f"{name}: renders nothing")
            for obj in objects:
                api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
                label = f"{name}: {kind} {obj.get('metadata', {}).get('name', '?')}"
                key = (api_version, kind)
                group = api_version.split("/")[0] if "/" in api_version else ""
                if group in KUBERNETES_GROUPS or group.endswith(".k8s.io"):
                    validator = kubernetes.validator(api_version, kind)
                    if validator is None:
                        failures.append(f"{label}: Kubernetes {KUBERNETES_VERSION} has no {api_version} {kind}")
                        continue
                    how[key] = f"Kubernetes {KUBERNETES_VERSION} (strict), kubernetes-validate"
                    problems = errors_of(validator, obj)
                elif key == XRD:
                    how[key] = (f"as the CRDs Crossplane generates: Kubernetes {KUBERNETES_VERSION} "
                                "CustomResourceDefinition (strict) and structural schema")
                    problems = xrd_problems(kubernetes, obj)
                elif key in xrds:
                    validator, source = xrds[key]
                    if validator is None:
                        failures.append(f"{label}: not validated: {source} has problems (see its own)")
                        continue
                    how[key] = f"{source} (strict)"
                    problems = errors_of(validator, obj)
                else:
                    crds.append((label, obj))
                    continue
                counts[key] += 1
                failures.extend(f"{label}: {problem}" for problem in problems)
        if crds:
            batch = pathlib.Path(scratch) / "crds.json"
            batch.write_text(json.dumps([obj for _, obj in crds]))
            checked = subprocess.run(["node", "crds.mjs", str(batch)], cwd=schemas, capture_output=True, text=True)
            if checked.returncode != 0:
                failures.append(f"crds.mjs failed:\n{checked.stderr.strip()}")
            else:
                for (label, obj), result in zip(crds, json.loads(checked.stdout)):
                    key = (obj["apiVersion"], obj["kind"])
                    if "error" in result:
                        failures.append(f"{label}: {result['error']}")
                    else:
                        how[key] = result["validator"]
                        counts[key] += 1

    print(f"Rendered {len(targets)} kustomizations: " + ", ".join(name for name, _ in targets))
    print("Objects validated, by kind:")
    for key in sorted(counts, key=lambda k: (k[1], k[0])):
        print(f"  {counts[key]:3}  {key[1]} ({key[0]}): {how[key]}")
    print(f"  {sum(counts.values()):3}  in all")
    if failures:
        print(f"\nscripts/validate-k8s: {len(failures)} problem(s):", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
