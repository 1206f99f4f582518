// The Kubernetes install in daemonset/: every document valid against the Kubernetes API
// schemas with no unknown field, CRDs structural and in line with the agent's own validation,
// each kustomization rendering exactly its files, least-privilege RBAC, and an image that runs
// the commands and flags the manifests give it. Needs kubectl (Debian: kubernetes-client).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { applyConfig } from '../agent/src/control/apply.js';
import { parseConfig } from '../agent/src/control/config-docs.js';
import { WATCHED_KINDS } from '../agent/src/controller/kube-kinds.js';
import { repoRoot } from '../agent/src/redirect/objects.js';

// ---- Lists the lead keeps in step with the code -------------------------------------------

/** The agent's connection drain on SIGTERM (drainMs in agent/src/cli/agent.ts). */
const DRAIN_SECONDS = 5;

// ---- Reading the manifests -----------------------------------------------------------------

type Obj = Record<string, any>;
const ROOT = repoRoot();
const DIR = path.join(ROOT, 'daemonset');
const KUSTOMIZATIONS = ['', 'istio-crds', 'uninstall'];

function yamlFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return yamlFiles(p);
    return e.name.endsWith('.yaml') && e.name !== 'kustomization.yaml' ? [p] : [];
  });
}

function parseDocs(text: string, where: string): Obj[] {
  return parseAllDocuments(text).map((d) => {
    assert.deepEqual(d.errors, [], `${where}: YAML errors`);
    return d.toJS() as Obj;
  }).filter((d) => d !== null);
}

const FILES = new Map(yamlFiles(DIR).map((f) => [path.relative(DIR, f), parseDocs(fs.readFileSync(f, 'utf8'), f)]));
const ALL = [...FILES.values()].flat();
const idOf = (d: Obj) => `${d.apiVersion} ${d.kind} ${d.metadata?.namespace ?? ''}/${d.metadata?.name}`;
const find = (kind: string, name: string): Obj => {
  const found = ALL.find((d) => d.kind === kind && d.metadata?.name === name);
  assert.ok(found, `no ${kind} ${name} in daemonset/`);
  return found;
};

// ---- Kubernetes API schemas ----------------------------------------------------------------

interface Validatable { validate(): void }
/** Model (kubernetes-models: types, required fields, formats) and client-node type name (field names). */
const MODELS: Record<string, [new (data: any) => Validatable, string]> = {
  'v1 Namespace': [Namespace, 'V1Namespace'],
  'v1 ServiceAccount': [ServiceAccount, 'V1ServiceAccount'],
  'v1 ConfigMap': [ConfigMap, 'V1ConfigMap'],
  'v1 Service': [Service, 'V1Service'],
  'apps/v1 Deployment': [Deployment, 'V1Deployment'],
  'apps/v1 DaemonSet': [DaemonSet, 'V1DaemonSet'],
  'rbac.authorization.k8s.io/v1 ClusterRole': [ClusterRole, 'V1ClusterRole'],
  'rbac.authorization.k8s.io/v1 ClusterRoleBinding': [ClusterRoleBinding, 'V1ClusterRoleBinding'],
  'rbac.authorization.k8s.io/v1 Role': [Role, 'V1Role'],
  'rbac.authorization.k8s.io/v1 RoleBinding': [RoleBinding, 'V1RoleBinding'],
  'apiextensions.k8s.io/v1 CustomResourceDefinition': [CustomResourceDefinition, 'V1CustomResourceDefinition'],
};

/**
 * Fields no API type has (a typo such as mountPropogation): kubernetes-models' schemas allow
 * extra fields, the API server's strict field validation does not. client-node's models list
 * every field of every type.
 */
function unknownFields(value: unknown, type: string, at: string, out: string[]): void {
  if (value === null || typeof value !== 'object') return;
  const list = /^Array<(.+)>$/.exec(type);
  if (list) return (value as unknown[]).forEach((v, i) => unknownFields(v, list[1]!, `${at}[${i}]`, out));
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) return Object.entries(value).forEach(([k, v]) => unknownFields(v, map[1]!, `${at}.${k}`, out));
  const model = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => Array<{ baseName: string; type: string }> }>)[type];
  if (!model?.getAttributeTypeMap) return;
  const attrs = model.getAttributeTypeMap();
  for (const [k, v] of Object.entries(value)) {
    const attr = attrs.find((a) => a.baseName === k);
    if (attr) unknownFields(v, attr.type, `${at}.${k}`, out);
    else out.push(`${at}.${k}`);
  }
}

describe('manifests against the Kubernetes API schemas', () => {
  for (const [file, docs] of FILES) {
    it(`${file}: every document is a known kind, valid, without unknown fields`, () => {
      assert.ok(docs.length > 0, 'no document');
      for (const doc of docs) {
        const entry = MODELS[`${doc.apiVersion} ${doc.kind}`];
        assert.ok(entry, `${idOf(doc)}: a kind this test does not know; add its model to MODELS`);
        const [Model, typeName] = entry;
        assert.doesNotThrow(() => new Model(doc).validate(), `${idOf(doc)} fails the Kubernetes schema`);
        const unknown: string[] = [];
        unknownFields(doc, typeName, doc.kind, unknown);
        assert.deepEqual(unknown, [], `${idOf(doc)}: fields the API does not have`);
        const namespaced = !['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition'].includes(doc.kind);
        assert.equal(doc.metadata.namespace, namespaced ? 'nodemesh-system' : undefined, `${idOf(doc)}: namespace`);
      }
    });
  }

  it('passes $(VAR) only from variables the container defines, and ConfigMap keys that exist', () => {
    const data = find('ConfigMap', 'nodemesh-config').data as Record<string, string>;
    for (const c of containers()) {
      const env = new Map<string, Obj>((c.env ?? []).map((e: Obj) => [e.name, e]));
      for (const arg of [...(c.command ?? []), ...(c.args ?? [])] as string[]) {
        for (const [, name] of arg.matchAll(/\$\(([A-Z_]+)\)/g)) assert.ok(env.has(name!), `${c.name}: $(${name}) is not in its env`);
      }
      for (const e of env.values()) {
        const ref = e.valueFrom?.configMapKeyRef;
        if (ref) assert.ok(ref.name === 'nodemesh-config' && ref.key in data, `${c.name}: env ${e.name} reads a missing ConfigMap key`);
      }
    }
  });
});

function podSpecs(): Array<[string, Obj]> {
  return ALL.filter((d) => d.kind === 'DaemonSet' || d.kind === 'Deployment').map((d) => [d.metadata.name, d.spec.template.spec]);
}
function containers(): Obj[] {
  return podSpecs().flatMap(([, spec]) => [...(spec.initContainers ?? []), ...spec.containers]);
}

// ---- CRDs ----------------------------------------------------------------------------------

const JUNCTORS = ['allOf', 'anyOf', 'oneOf', 'not'] as const;
const NOT_IN_JUNCTORS = ['type', 'description', 'default', 'additionalProperties', 'nullable'];

/** Kubernetes' structural schema rules (apiextensions: "Specifying a structural schema"). */
function structuralProblems(s: Obj, at: string, out: string[], inJunctor = false): void {
  const open = s['x-kubernetes-int-or-string'] === true || s['x-kubernetes-preserve-unknown-fields'] === true;
  if (inJunctor) {
    for (const k of NOT_IN_JUNCTORS) if (k in s) out.push(`${at}: ${k} inside a logical junctor`);
  } else if (!s.type && !open) out.push(`${at}: no type`);
  if ('x-kubernetes-preserve-unknown-fields' in s && s['x-kubernetes-preserve-unknown-fields'] !== true) out.push(`${at}: preserve-unknown-fields must be true`);
  if (s.properties && s.additionalProperties !== undefined) out.push(`${at}: properties and additionalProperties together`);
  if (s.type === 'array' && (!s.items || Array.isArray(s.items))) out.push(`${at}: an array needs one items schema`);
  for (const [k, v] of Object.entries((s.properties ?? {}) as Obj)) structuralProblems(v, `${at}.${k}`, out, inJunctor);
  if (s.items && !Array.isArray(s.items)) structuralProblems(s.items, `${at}[]`, out, inJunctor);
  for (const j of JUNCTORS) {
    for (const [i, branch] of (j === 'not' ? (s.not ? [s.not] : []) : (s[j] ?? [])).entries()) {
      structuralProblems(branch, `${at}.${j}[${i}]`, out, true);
      for (const k of Object.keys(branch.properties ?? {})) {
        if (!(k in (s.properties ?? {}))) out.push(`${at}.${j}[${i}]: property ${k} not declared outside the junctor`);
      }
    }
  }
}

/** What the API server would say of an object under a CRD schema (the subset our CRDs use). */
function schemaErrors(s: Obj, v: unknown, at: string, out: string[], strict = true): void {
  if (s['x-kubernetes-preserve-unknown-fields'] === true && !s.properties) return;
  const typeOk: Record<string, (x: unknown) => boolean> = {
    object: (x) => typeof x === 'object' && x !== null && !Array.isArray(x),
    array: Array.isArray,
    string: (x) => typeof x === 'string',
    integer: Number.isInteger,
    number: (x) => typeof x === 'number',
    boolean: (x) => typeof x === 'boolean',
  };
  if (s['x-kubernetes-int-or-string'] === true && !(Number.isInteger(v) || typeof v === 'string')) return void out.push(`${at}: not an integer or string`);
  if (s.type && !typeOk[s.type]!(v)) return void out.push(`${at}: not ${s.type}`);
  if (s.enum && !s.enum.includes(v)) out.push(`${at}: not one of the enum`);
  if (typeof v === 'number' && ((s.minimum !== undefined && v < s.minimum) || (s.maximum !== undefined && v > s.maximum))) out.push(`${at}: out of range`);
  if (typeof v === 'string') {
    if ((s.minLength !== undefined && v.length < s.minLength) || (s.maxLength !== undefined && v.length > s.maxLength)) out.push(`${at}: length`);
    if (s.pattern && !new RegExp(s.pattern).test(v)) out.push(`${at}: pattern`);
  }
  if (Array.isArray(v)) {
    if ((s.minItems !== undefined && v.length < s.minItems) || (s.maxItems !== undefined && v.length > s.maxItems)) out.push(`${at}: item count`);
    v.forEach((x, i) => s.items && schemaErrors(s.items, x, `${at}[${i}]`, out, strict));
  }
  if (typeOk.object!(v)) {
    const o = v as Obj;
    for (const r of s.required ?? []) if (!(r in o)) out.push(`${at}.${r}: required`);
    for (const [k, x] of Object.entries(o)) {
      if (s.properties?.[k]) schemaErrors(s.properties[k], x, `${at}.${k}`, out, strict);
      // Outside junctors the schema is the object's whole shape: the API server drops or
      // (with strict field validation, kubectl's default) refuses other fields.
      else if (s.properties && strict) out.push(`${at}.${k}: unknown field`);
    }
  }
  const passes = (b: Obj) => { const e: string[] = []; schemaErrors(b, v, at, e, false); return e.length === 0; };
  if (s.anyOf && !s.anyOf.some(passes)) out.push(`${at}: matches no anyOf branch`);
  if (s.oneOf && s.oneOf.filter(passes).length !== 1) out.push(`${at}: does not match exactly one oneOf branch`);
}

const crds = () => ALL.filter((d) => d.kind === 'CustomResourceDefinition');

describe('CRDs', () => {
  it('are named <plural>.<group>, store one served version, and have structural schemas', () => {
    assert.equal(crds().length, 5);
    for (const crd of crds()) {
      const { group, names, versions } = crd.spec;
      assert.equal(crd.metadata.name, `${names.plural}.${group}`);
      assert.equal(names.listKind, `${names.kind}List`);
      assert.equal(versions.filter((v: Obj) => v.storage).length, 1, `${crd.metadata.name}: one storage version`);
      for (const v of versions) {
        assert.ok(v.served && v.schema?.openAPIV3Schema, `${crd.metadata.name} ${v.name}: served, with a schema`);
        const problems: string[] = [];
        structuralProblems(v.schema.openAPIV3Schema, `${crd.metadata.name} ${v.name}`, problems);
        assert.deepEqual(problems, []);
      }
    }
  });

  it("serve the Istio and nodemesh kinds the controller watches, at the watched versions", () => {
    for (const w of WATCHED_KINDS.filter((k) => /istio\.io|nodemesh\.io/.test(k.apiVersion))) {
      const [group, version] = w.apiVersion.split('/');
      const crd = find('CustomResourceDefinition', `${w.plural}.${group}`);
      assert.equal(crd.spec.names.kind, w.kind);
      assert.ok(crd.spec.versions.some((v: Obj) => v.name === version && v.served), `${crd.metadata.name} serves ${version}`);
    }
  });

  // Each sample goes to the agent's validator and to the CRD schema; they must agree, except
  // for the checks listed as the agent's alone.
  const SERVICE = '[{ group: "", kind: Service, name: web }]';
  const fault = (spec: string) => `apiVersion: nodemesh.io/v1alpha1\nkind: FaultInjection\nmetadata: { name: f, namespace: shop }\nspec: ${spec}\n`;
  const limit = (spec: string) => `apiVersion: nodemesh.io/v1alpha1\nkind: LocalRateLimit\nmetadata: { name: l, namespace: shop }\nspec: ${spec}\n`;
  const samples: Array<[string, string, 'both accept' | 'both reject' | 'agent rejects']> = [
    ['every target kind, delay and abort', fault(`{ targetRefs: [{ group: "", kind: Service, name: web }, { group: gateway.networking.k8s.io, kind: HTTPRoute, name: api }, { group: gateway.networking.k8s.io, kind: GRPCRoute, name: cart }], delay: { fixedDelay: 1s500ms, percentage: 12.5 }, abort: { httpStatus: 503 } }`), 'both accept'],
    ['a gRPC status by name', fault(`{ targetRefs: ${SERVICE}, abort: { grpcStatus: UNAVAILABLE, percentage: 0 } }`), 'both accept'],
    ['a gRPC status by number', fault(`{ targetRefs: ${SERVICE}, abort: { grpcStatus: 8 } }`), 'both accept'],
    ['a token bucket', limit(`{ targetRefs: ${SERVICE}, tokenBucket: { maxTokens: 10, tokensPerFill: 5, fillInterval: 1s } }`), 'both accept'],
    ['a token bucket without tokensPerFill', limit(`{ targetRefs: ${SERVICE}, tokenBucket: { maxTokens: 4294967295, fillInterval: 100ms } }`), 'both accept'],
    ['no targetRefs', fault('{ abort: { httpStatus: 503 } }'), 'both reject'],
    ['empty targetRefs', fault('{ targetRefs: [], abort: { httpStatus: 503 } }'), 'both reject'],
    ['a target without group', fault('{ targetRefs: [{ kind: Service, name: web }], abort: { httpStatus: 503 } }'), 'both reject'],
    ['a route in the core group', fault('{ targetRefs: [{ group: "", kind: HTTPRoute, name: web }], abort: { httpStatus: 503 } }'), 'both reject'],
    ['a Gateway target', fault('{ targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }], abort: { httpStatus: 503 } }'), 'both reject'],
    ['a target in another namespace', fault('{ targetRefs: [{ group: "", kind: Service, name: web, namespace: front }], abort: { httpStatus: 503 } }'), 'both reject'],
    ['neither delay nor abort', fault(`{ targetRefs: ${SERVICE} }`), 'both reject'],
    ['a delay without fixedDelay', fault(`{ targetRefs: ${SERVICE}, delay: { percentage: 50 } }`), 'both reject'],
    ['a fractional duration', fault(`{ targetRefs: ${SERVICE}, delay: { fixedDelay: 1.5s } }`), 'both reject'],
    ['a percentage above 100', fault(`{ targetRefs: ${SERVICE}, delay: { fixedDelay: 1s, percentage: 150 } }`), 'both reject'],
    ['a percentage as a string', fault(`{ targetRefs: ${SERVICE}, abort: { httpStatus: 500, percentage: "50%" } }`), 'both reject'],
    ['both abort statuses', fault(`{ targetRefs: ${SERVICE}, abort: { httpStatus: 503, grpcStatus: UNAVAILABLE } }`), 'both reject'],
    ['no abort status', fault(`{ targetRefs: ${SERVICE}, abort: { percentage: 10 } }`), 'both reject'],
    ['an HTTP status of 100', fault(`{ targetRefs: ${SERVICE}, abort: { httpStatus: 100 } }`), 'both reject'],
    ['gRPC status OK', fault(`{ targetRefs: ${SERVICE}, abort: { grpcStatus: OK } }`), 'both reject'],
    ['gRPC status 17', fault(`{ targetRefs: ${SERVICE}, abort: { grpcStatus: 17 } }`), 'both reject'],
    ['an unknown spec field', fault(`{ targetRefs: ${SERVICE}, abort: { httpStatus: 503 }, selector: {} }`), 'both reject'],
    ['no token bucket', limit(`{ targetRefs: ${SERVICE} }`), 'both reject'],
    ['zero tokens', limit(`{ targetRefs: ${SERVICE}, tokenBucket: { maxTokens: 0, fillInterval: 1s } }`), 'both reject'],
    ['a bucket without fillInterval', limit(`{ targetRefs: ${SERVICE}, tokenBucket: { maxTokens: 1 } }`), 'both reject'],
    ['a delay of 0s', fault(`{ targetRefs: ${SERVICE}, delay: { fixedDelay: 0s } }`), 'agent rejects'],
    ['a target twice', fault(`{ targetRefs: [{ group: "", kind: Service, name: web }, { group: "", kind: Service, name: web }], abort: { httpStatus: 503 } }`), 'agent rejects'],
  ];
  for (const [what, yaml, expected] of samples) {
    it(`${expected === 'agent rejects' ? 'leave to the agent' : expected.replace('both', 'agree to')}: ${what}`, () => {
      const object = parseYaml(yaml) as Obj;
      const agentAccepts = applyConfig(null, parseConfig(yaml, 'sample'), { node: 'n', cgroupExists: () => true }).rejections.length === 0;
      const crd = find('CustomResourceDefinition', `${object.kind.toLowerCase()}s.nodemesh.io`);
      const errors: string[] = [];
      schemaErrors(crd.spec.versions[0].schema.openAPIV3Schema, object, object.kind, errors);
      assert.equal(agentAccepts, expected === 'both accept', `agent ${agentAccepts ? 'accepts' : 'rejects'}`);
      assert.equal(errors.length === 0, expected !== 'both reject', `schema: ${errors.join('; ') || 'accepts'}`);
    });
  }
});

// ---- Kustomize -----------------------------------------------------------------------------

function kustomize(dir: string): Obj[] {
  try {
    return parseDocs(execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 30_000 }), `kubectl kustomize ${dir}`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') assert.fail('kubectl is not installed: apt-get install kubernetes-client');
    throw err;
  }
}

describe('kustomizations', () => {
  it('list every manifest once, the Istio CRDs and the uninstall helper apart', () => {
    const listed = KUSTOMIZATIONS.flatMap((k) => {
      const kz = parseYaml(fs.readFileSync(path.join(DIR, k, 'kustomization.yaml'), 'utf8')) as Obj;
      assert.equal(kz.namespace, undefined, `${k || '.'}: resources name their namespace`);
      return (kz.resources as string[]).map((r) => path.join(k, r));
    });
    assert.deepEqual([...listed].sort(), [...FILES.keys()].sort());
  });

  for (const k of KUSTOMIZATIONS) {
    it(`kubectl kustomize daemonset/${k} renders its files' documents, with the image set`, () => {
      const kz = parseYaml(fs.readFileSync(path.join(DIR, k, 'kustomization.yaml'), 'utf8')) as Obj;
      const images = new Map<string, Obj>((kz.images ?? []).map((i: Obj) => [i.name, i]));
      const expected = (kz.resources as string[]).flatMap((r) => structuredClone(FILES.get(path.join(k, r))!));
      for (const doc of expected) {
        for (const c of [...(doc.spec?.template?.spec?.initContainers ?? []), ...(doc.spec?.template?.spec?.containers ?? [])]) {
          const img = images.get(c.image);
          assert.ok(img, `${idOf(doc)} ${c.name}: image ${c.image} is not set by the kustomization`);
          c.image = `${img.newName ?? c.image}:${img.newTag}`;
        }
      }
      const rendered = kustomize(path.join(DIR, k));
      const byId = (docs: Obj[]) => new Map(docs.map((d) => [idOf(d), d]));
      assert.deepEqual(byId(rendered), byId(expected));
    });
  }
});

// ---- RBAC ----------------------------------------------------------------------------------

describe('RBAC', () => {
  const roles = () => ALL.filter((d) => d.kind === 'Role' || d.kind === 'ClusterRole');

  it('lets the controller get, list and watch exactly the kinds it watches, and review tokens', () => {
    const rules = find('ClusterRole', 'nodemesh-controller').rules as Obj[];
    const read = rules.filter((r) => r.verbs.includes('watch'));
    for (const r of read) assert.deepEqual(r.verbs, ['get', 'list', 'watch']);
    const granted = read.flatMap((r) => r.apiGroups.flatMap((g: string) => r.resources.map((res: string) => `${g}/${res}`)));
    const watched = WATCHED_KINDS.map((w) => `${w.apiVersion.includes('/') ? w.apiVersion.split('/')[0] : ''}/${w.plural}`);
    assert.deepEqual(granted.sort(), watched.sort());
    assert.deepEqual(rules.filter((r) => !r.verbs.includes('watch')), [
      { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
    ]);
  });

  it("limits the controller's namespaced access to the CA Secret and the root ConfigMap", () => {
    const role = find('Role', 'nodemesh-controller');
    assert.deepEqual(role.rules, [
      { apiGroups: [''], resources: ['secrets'], resourceNames: ['nodemesh-ca'], verbs: ['get'] },
      { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
      { apiGroups: [''], resources: ['configmaps'], resourceNames: ['nodemesh-ca-root'], verbs: ['get', 'update'] },
      { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
    ]);
    for (const r of roles()) {
      for (const rule of r.rules) for (const field of ['apiGroups', 'resources', 'verbs']) assert.ok(!rule[field].includes('*'), `${idOf(r)}: a wildcard`);
    }
  });

  it('binds both roles to the controller and nothing to the agent, whose token is only for the controller', () => {
    const bindings = ALL.filter((d) => d.kind === 'RoleBinding' || d.kind === 'ClusterRoleBinding');
    assert.deepEqual(bindings.map((b) => `${b.kind} ${b.roleRef.name}`).sort(), ['ClusterRoleBinding nodemesh-controller', 'RoleBinding nodemesh-controller']);
    for (const b of bindings) {
      assert.ok(roles().some((r) => r.kind === b.roleRef.kind && r.metadata.name === b.roleRef.name), `${idOf(b)}: role exists`);
      assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: 'nodemesh-controller', namespace: 'nodemesh-system' }]);
    }
    assert.equal(find('ServiceAccount', 'nodemesh-agent').automountServiceAccountToken, false);
    const agent = find('DaemonSet', 'nodemesh-agent').spec.template.spec;
    assert.equal(agent.serviceAccountName, 'nodemesh-agent');
    assert.equal(agent.automountServiceAccountToken, false);
    const token = agent.volumes.find((v: Obj) => v.projected)?.projected.sources[0].serviceAccountToken;
    assert.deepEqual(token, { audience: 'nodemesh', expirationSeconds: 3600, path: 'token' });
  });
});

// ---- The agent and controller pods -----------------------------------------------------------

/** `--flag value` pairs of a container's args, after the subcommand. */
function flagValues(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  args.forEach((a, i) => a.startsWith('--') && out.set(a, args[i + 1] ?? ''));
  return out;
}

describe('agent and controller pods', () => {
  const ds = () => find('DaemonSet', 'nodemesh-agent').spec;
  const agentContainer = () => ds().template.spec.containers[0] as Obj;
  const mountOf = (c: Obj, volume: string) => c.volumeMounts.find((m: Obj) => m.name === volume)?.mountPath;

  it('run privileged only to mount bpffs; only the agent adds CAP_SYS_ADMIN, for what it uses', () => {
    for (const c of containers()) {
      const sc = c.securityContext ?? {};
      assert.equal(sc.privileged === true, c.name === 'mount-bpffs', `${c.name}: privileged`);
      if (c.name !== 'agent') assert.ok(!(sc.capabilities?.add ?? []).includes('SYS_ADMIN'), `${c.name}: SYS_ADMIN`);
    }
    // SYS_ADMIN and SYS_PTRACE: setns into pod network namespaces for the PERMISSIVE listener.
    assert.deepEqual(agentContainer().securityContext.capabilities, { drop: ['ALL'], add: ['BPF', 'NET_ADMIN', 'SYS_RESOURCE', 'SYS_ADMIN', 'SYS_PTRACE'] });
  });

  it('dial the controller Service, and find token, CA root and state where they are mounted', () => {
    const flags = flagValues(agentContainer().args);
    const svc = find('Service', 'nodemesh-controller');
    const port = svc.spec.ports.find((p: Obj) => p.name === 'grpc');
    assert.equal(flags.get('--controller'), `${svc.metadata.name}.${svc.metadata.namespace}.svc:${port.port}`);
    const controller = find('Deployment', 'nodemesh-controller').spec.template.spec.containers[0];
    assert.ok(controller.ports.some((p: Obj) => p.name === port.targetPort && p.containerPort === 15012));
    assert.equal(path.dirname(flags.get('--token-file')!), mountOf(agentContainer(), 'controller-token'));
    assert.equal(flags.get('--controller-ca'), `${mountOf(agentContainer(), 'ca-root')}/root-cert.pem`);
    assert.equal(flags.get('--state-dir'), mountOf(agentContainer(), 'state'));
    assert.equal(ds().template.spec.volumes.find((v: Obj) => v.name === 'ca-root').configMap.name, 'nodemesh-ca-root');
  });

  it('roll one node at a time, on every node, and give the drain time to finish', () => {
    const spec = ds().template.spec;
    assert.deepEqual(ds().updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    assert.deepEqual(spec.tolerations, [{ operator: 'Exists' }]);
    assert.ok(spec.hostNetwork && spec.dnsPolicy === 'ClusterFirstWithHostNet');
    assert.ok(spec.terminationGracePeriodSeconds > DRAIN_SECONDS + 5);
  });
});

// ---- The image -------------------------------------------------------------------------------

interface Copy { from?: string; sources: string[]; dest: string; intoDir: boolean }
interface Stage { name?: string; workdir: string; copies: Copy[]; runs: string[]; entrypoint?: string[] }

function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const line of lines) {
    const [op, ...rest] = line.split(/\s+/);
    const stage = stages.at(-1);
    if (op === 'FROM') stages.push({ name: rest[2], workdir: '/', copies: [], runs: [] });
    else if (op === 'WORKDIR') stage!.workdir = path.posix.resolve(stage!.workdir, rest[0]!);
    else if (op === 'RUN') stage!.runs.push(rest.join(' '));
    else if (op === 'ENTRYPOINT') stage!.entrypoint = JSON.parse(rest.join(' ')) as string[];
    else if (op === 'COPY') {
      const from = rest[0]?.startsWith('--from=') ? rest.shift()!.slice('--from='.length) : undefined;
      const [dest, sources] = [rest.at(-1)!, rest.slice(0, -1)];
      stage!.copies.push({ ...(from && { from }), sources, dest: path.posix.resolve(stage!.workdir, dest), intoDir: dest.endsWith('/') || sources.length > 1 });
    }
  }
  return stages;
}

/** Docker's ignore patterns, as far as ours use them: paths and single-level globs from the root. */
function ignored(rel: string, patterns: string[]): boolean {
  const parts = rel.split('/');
  return patterns.some((p) => {
    const re = new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
    return parts.some((_, i) => re.test(parts.slice(0, i + 1).join('/')));
  });
}

describe('the image built by daemonset/Dockerfile', () => {
  const stages = parseDockerfile(fs.readFileSync(path.join(DIR, 'Dockerfile'), 'utf8'));
  const build = stages[0]!;
  const runtime = stages.at(-1)!;
  const ignore = fs.readFileSync(path.join(DIR, 'Dockerfile.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  /** Build outputs: they exist in the build stage though the context leaves them out. */
  const BUILT = ['dist', 'node_modules'];
  let image = '';

  /** The runtime stage's files laid out in a temporary directory, node_modules pruned as `npm prune --omit=dev` does. */
  before(() => {
    image = fs.mkdtempSync(path.join(os.tmpdir(), 'nodemesh-image-'));
    for (const copy of runtime.copies) {
      for (const src of copy.sources) {
        const rel = path.posix.relative(build.workdir, src);
        const dest = copy.intoDir ? path.posix.join(copy.dest, path.posix.basename(rel)) : copy.dest;
        const target = path.join(image, path.posix.relative(runtime.workdir, dest));
        if (rel === 'node_modules') prunedNodeModules(target);
        else if (fs.existsSync(path.join(ROOT, rel))) fs.cpSync(path.join(ROOT, rel), target, { recursive: true });
      }
    }
  });
  after(() => fs.rmSync(image, { recursive: true, force: true }));

  function prunedNodeModules(target: string): void {
    const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    for (const [key, entry] of Object.entries(lock.packages)) {
      const name = /^node_modules\/((?:@[^/]+\/)?[^/]+)$/.exec(key)?.[1];
      if (!name || entry.dev) continue;
      fs.mkdirSync(path.dirname(path.join(target, name)), { recursive: true });
      fs.symlinkSync(fs.realpathSync(path.join(ROOT, 'node_modules', name)), path.join(target, name));
    }
  }

  const nodemesh = (...args: string[]) =>
    execFileSync(runtime.entrypoint![0]!, [path.join(image, path.posix.relative(runtime.workdir, runtime.entrypoint![1]!)), ...args], { encoding: 'utf8', timeout: 30_000 });

  it('copies only what exists in the repository, passes the ignore file, or is built', () => {
    for (const stage of stages) {
      for (const copy of stage.copies) {
        for (const src of copy.sources) {
          const rel = copy.from ? path.posix.relative(build.workdir, src) : src;
          if (rel === '.') continue;
          if (copy.from && BUILT.some((b) => rel === b || rel.startsWith(`${b}/`))) continue;
          assert.ok(fs.existsSync(path.join(ROOT, rel)), `COPY ${src}: ${rel} is not in the repository`);
          assert.ok(!ignored(rel, ignore), `COPY ${src}: ${rel} is left out by Dockerfile.dockerignore`);
        }
      }
    }
  });

  it("builds from sources that import nothing the build context leaves out", () => {
    const sources = ['agent', 'native'].flatMap((d) => fs.readdirSync(path.join(ROOT, d), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => path.join(d, f)));
    for (const file of sources) {
      for (const [, spec] of fs.readFileSync(path.join(ROOT, file), 'utf8').matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)) {
        const rel = path.relative(ROOT, path.resolve(ROOT, path.dirname(file), spec!));
        assert.ok(!ignored(rel, ignore), `${file} imports ${spec}, left out of the build context`);
      }
    }
  });

  it('starts the entrypoint with production dependencies only, and finds its eBPF objects', () => {
    assert.match(nodemesh('--help'), /agent \[options\]/);
    assert.match(nodemesh('agent', '--help'), /--cleanup/);
    const objectsModule = path.join(image, 'dist/agent/src/redirect/objects.js');
    const objDir = execFileSync(process.execPath, ['-e', `import(${JSON.stringify(objectsModule)}).then((m) => console.log(m.defaultObjDir()))`], { encoding: 'utf8' }).trim();
    assert.equal(objDir, path.join(image, 'bpf'));
    // Every prebuilt object of the repository, whichever program loads it.
    const objects = fs.readdirSync(path.join(ROOT, 'bpf')).filter((f) => f.endsWith('.bpf.o'));
    assert.ok(objects.length >= 4);
    for (const o of objects) assert.ok(fs.existsSync(path.join(objDir, o)), `${o} in the image`);
    const script = path.posix.relative(runtime.workdir, runtime.entrypoint![1]!);
    assert.ok(build.runs.some((r) => r.includes(`chmod +x ${script}`)), 'main.js executable, for the nodemesh symlink');
    assert.ok(runtime.runs.some((r) => r.includes(`ln -s ${runtime.entrypoint![1]} /usr/local/bin/nodemesh`)), '`nodemesh` on PATH for kubectl exec');
  });

  it('runs the subcommands and flags the manifests pass', () => {
    const commands = new Set([...nodemesh('--help').matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1]!));
    const flagsOf = new Map<string, Map<string, boolean>>();
    const known = (cmd: string) => {
      if (!flagsOf.has(cmd)) {
        const help = nodemesh(cmd, '--help');
        flagsOf.set(cmd, new Map([...help.matchAll(/^ {2}(?:-\w, )?(--[a-z0-9-]+)( <)?/gm)].map((m) => [m[1]!, m[2] !== undefined])));
      }
      return flagsOf.get(cmd)!;
    };
    for (const c of containers().filter((c) => c.image === 'nodemesh' && !c.command)) {
      const [cmd, ...args] = c.args as string[];
      assert.ok(commands.has(cmd!), `${c.name}: ${cmd} is not a nodemesh command`);
      const flags = known(cmd!);
      for (let i = 0; i < args.length; i++) {
        const takesValue = flags.get(args[i]!);
        assert.ok(takesValue !== undefined, `${c.name}: nodemesh ${cmd} has no flag ${args[i]}`);
        if (takesValue) assert.ok(args[++i] !== undefined && !args[i]!.startsWith('--'), `${c.name}: ${args[i - 1]} needs a value`);
      }
    }
  });
});
