// Builds the next MeshState from the parsed documents and the previous state: each resource
// is validated alone, a rejected one keeps its last good version, everything else takes the
// new content. Pure, so the file source and the controller stream share it.
import { statSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import type { MeshState, Rejection } from '../state/model.js';
import type { ConfigDocument } from './config-docs.js';
import { FieldErrors, isObj, show } from './fields.js';
import { ACCEPTED_KINDS, kindNamed, lookupKind } from './kinds/index.js';
import { readMetadata, type AnyKindValidator, type CollectionName, type Collections, type ValidationContext } from './resource.js';

export interface ApplyOptions {
  /** This agent's node name. */
  node: string;
  /** Defaults to "is a directory on this machine"; tests point it elsewhere. */
  cgroupExists?: (path: string) => boolean;
  podCgroup?: ValidationContext['podCgroup'];
}

type Building = { [C in CollectionName]: Map<string, Collections[C]> };

export function applyConfig(
  previous: MeshState | null,
  docs: readonly ConfigDocument[],
  opts: ApplyOptions,
): MeshState {
  const ctx: ValidationContext = {
    node: opts.node,
    cgroupExists: opts.cgroupExists ?? isDirectory,
    ...(opts.podCgroup && { podCgroup: opts.podCgroup }),
  };
  const next: Building = {
    nodes: new Map(),
    namespaces: new Map(),
    pods: new Map(),
    services: new Map(),
    endpointSlices: new Map(),
    authorizationPolicies: new Map(),
    peerAuthentications: new Map(),
    httpRoutes: new Map(),
    grpcRoutes: new Map(),
    destinationRules: new Map(),
    faultInjections: new Map(),
    localRateLimits: new Map(),
  };
  const rejections: Rejection[] = [];
  const seen = new Map<string, string>();

  const keepLastGood = (kind: AnyKindValidator, identity: { key: string } | undefined): void => {
    const lastGood = identity && previous?.[kind.collection].get(identity.key);
    if (lastGood) (next[kind.collection] as Map<string, typeof lastGood>).set(identity.key, lastGood);
  };

  for (const doc of docs) {
    const { value, origin } = doc;
    if (!isObj(value)) {
      rejections.push({ resource: origin, field: '', reason: `must be a mapping with apiVersion, kind and metadata, got ${show(value)}` });
      continue;
    }
    const { apiVersion, kind: kindName } = value;
    const kind = typeof apiVersion === 'string' && typeof kindName === 'string' ? lookupKind(apiVersion, kindName) : undefined;
    if (!kind) {
      const named = kindNamed(kindName);
      rejections.push({
        resource: `${String(kindName)} ${nameOf(value.metadata) ?? `(${origin})`}`,
        field: named ? 'apiVersion' : 'kind',
        reason: `unknown kind ${String(apiVersion)} ${String(kindName)}; accepted: ${ACCEPTED_KINDS}`,
      });
      // A known kind under a wrong apiVersion is that resource, rejected: its last good version stays.
      if (named) keepLastGood(named, readMetadata(value, named, new FieldErrors()).identity);
      continue;
    }

    const errors = new FieldErrors();
    const { meta, identity } = readMetadata(value, kind, errors);
    const resource = identity?.label ?? `${kind.kind} (${origin})`;
    if (identity) {
      const typedKey = `${kind.collection} ${identity.key}`;
      const first = seen.get(typedKey);
      if (first) {
        rejections.push({ resource, field: 'metadata.name', reason: `duplicate: already declared in ${first}; the first one applies` });
        continue;
      }
      seen.set(typedKey, origin);
    }
    const entry = kind.validate(value, meta, errors, ctx);
    if (entry && errors.list.length === 0 && identity) {
      (next[kind.collection] as Map<string, typeof entry>).set(identity.key, entry);
      continue;
    }
    for (const e of errors.list) rejections.push({ resource, ...e });
    keepLastGood(kind, identity);
  }

  addImplicitNamespaces(next);
  const changed = !previous || (Object.keys(next) as CollectionName[]).some((c) => !isDeepStrictEqual(previous[c], next[c]));
  return {
    version: !previous ? 1 : changed ? previous.version + 1 : previous.version,
    ...next,
    rejections,
  };
}

/** A namespace used by a pod or a service exists even when not declared; it is not enrolled. */
function addImplicitNamespaces(next: Building): void {
  for (const { namespace } of [...next.pods.values(), ...next.services.values()]) {
    if (!next.namespaces.has(namespace)) next.namespaces.set(namespace, { name: namespace, labels: {}, enrolled: false });
  }
}

/** "ns/name" or "name" of an object whose kind is unknown, if it has one. */
function nameOf(metadata: unknown): string | undefined {
  if (!isObj(metadata) || typeof metadata.name !== 'string') return undefined;
  return typeof metadata.namespace === 'string' ? `${metadata.namespace}/${metadata.name}` : metadata.name;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
