// Validates custom resources against the kubernetes-models validators of their operators (JSON
// schemas generated from each operator's Go API types and compiled by Ajv). Reads a JSON array
// of objects from the file named by the first argument and prints a JSON array with, for each
// object in order, {"validator": "<package>@<version>"} or {"error": "..."}; an object whose
// group has no package here gets an error, never a pass.
//
// Run from the folder whose node_modules holds the packages of k8s/validate/package.json.

import { readFile } from "node:fs/promises";

// API group -> the npm package with its models (pinned in k8s/validate/package.json).
const PACKAGES = {
  "argoproj.io": "@kubernetes-models/argo-cd",
  "cert-manager.io": "@kubernetes-models/cert-manager",
  "external-secrets.io": "@kubernetes-models/external-secrets",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "postgresql.cnpg.io": "@kubernetes-models/cloudnative-pg",
};

const versions = {};
async function packageVersion(name) {
  if (!(name in versions)) {
    const manifest = JSON.parse(await readFile(`node_modules/${name}/package.json`, "utf8"));
    versions[name] = manifest.version;
  }
  return versions[name];
}

async function validate(object) {
  const [group, version] = String(object.apiVersion).split("/");
  const name = PACKAGES[group];
  if (!name || !version) {
    return { error: `no schema for ${object.apiVersion} ${object.kind}: its group has no models package` };
  }
  let model;
  try {
    model = await import(`${name}/${group}/${version}/${object.kind}`);
  } catch {
    return { error: `no schema for ${object.apiVersion} ${object.kind} in ${name}` };
  }
  const Model = model[object.kind];
  try {
    new Model(object).validate();
  } catch (error) {
    return { error: error.message };
  }
  return { validator: `${name}@${await packageVersion(name)}` };
}

const objects = JSON.parse(await readFile(process.argv[2], "utf8"));
const results = [];
for (const object of objects) {
  results.push(await validate(object));
}
process.stdout.write(JSON.stringify(results));
