"""Renders every kustomization of k8s/ and validates every object it renders.

Usage: validate.py KUBECTL SCHEMAS_DIR

KUBECTL renders (its built-in kustomize); SCHEMAS_DIR holds node_modules with the custom
resources' models and a copy of crds.mjs. What is rendered: each overlay, the base with each
component on its own (so that every component is checked whether or not an overlay uses it), and
k8s/platform/crossplane. Each object is checked by the first of these that knows its kind:

- the Kubernetes API (apps/v1, v1, ...): kubernetes-validate's strict schemas, which also reject
  fields the API does not have;
- a claim or composite of an XRD in k8s/platform/crossplane: that XRD's openAPIV3Schema, strict;
- a custom resource of an operator in crds.mjs's table: the operator's kubernetes-models
  validator (types, required fields, enums; unknown fields are not detected);
- a kind in METADATA_ONLY: only apiVersion, kind and metadata, because no package registry this
  project reaches has its schema (see docs/operations.md).

Any other kind, any invalid object and any render that fails make the exit status 1.
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
# Kinds whose schema none of the reachable registries (PyPI, npm, crates.io, Debian) publishes.
METADATA_ONLY = {
    ("dragonflydb.io/v1alpha1", "Dragonfly"): "dragonfly-operator publishes no schema package",
    ("operator.victoriametrics.com/v1beta1", "VMServiceScrape"): "victoria-metrics-operator publishes no schema package",
    ("apiextensions.crossplane.io/v1", "CompositeResourceDefinition"): "crossplane publishes no schema package",
}
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


def xrd_validators(kubernetes):
    """(apiVersion, kind) -> validator for the claims and composites of k8s/platform/crossplane."""
    validators = {}
    for path in sorted((K8S / "platform" / "crossplane").glob("*.yaml")):
        for xrd in yaml.safe_load_all(path.read_text()):
            if not xrd or xrd.get("kind") != "CompositeResourceDefinition":
                continue
            spec = xrd["spec"]
            for version in spec["versions"]:
                schema = strict(version["schema"]["openAPIV3Schema"])
                for field in CROSSPLANE_SPEC_FIELDS:
                    schema["properties"]["spec"]["properties"].setdefault(field, {})
                api_version = f"{spec['group']}/{version['name']}"
                kinds = [spec["names"]["kind"]] + ([spec["claimNames"]["kind"]] if "claimNames" in spec else [])
                for kind in kinds:
                    whole = dict(schema)
                    whole["properties"] = dict(schema["properties"])
                    whole["properties"].update({
                        "apiVersion": {"const": api_version},
                        "kind": {"const": kind},
                        "metadata": kubernetes.definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
                    })
                    whole["required"] = sorted(set(whole.get("required", [])) | {"apiVersion", "kind", "metadata"})
                    validators[(api_version, kind)] = (kubernetes.compile(whole), f"XRD {xrd['metadata']['name']}")
    return validators


def errors_of(validator, obj):
    return [
        f"{'.'.join(str(step) for step in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]


def main():
    kubectl, schemas = sys.argv[1], pathlib.Path(sys.argv[2])
    kubernetes = Kubernetes()
    xrds = xrd_validators(kubernetes)
    metadata_only = kubernetes.compile({
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": kubernetes.definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "spec": {"type": "object"},
        },
    })
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
                elif key in xrds:
                    validator, source = xrds[key]
                    how[key] = f"{source} (strict)"
                    problems = errors_of(validator, obj)
                elif key in METADATA_ONLY:
                    how[key] = f"metadata only: {METADATA_ONLY[key]}"
                    problems = errors_of(metadata_only, obj)
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
    for key in sorted(counts, key=lambda k: (how[k].startswith("metadata only"), k[1], k[0])):
        print(f"  {counts[key]:3}  {key[1]} ({key[0]}): {how[key]}")
    print(f"  {sum(counts.values()):3}  in all")
    if failures:
        print(f"\nscripts/validate-k8s: {len(failures)} problem(s):", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
