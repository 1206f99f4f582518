// Filters of `nodemesh flows` (--namespace, --pod, --service, --state), applied by the agent so
// a watching CLI fetches only the rows it shows. A row matches a pod or namespace at either end.
import { NodemeshError } from '../errors.js';
import type { FlowRow } from './flow-table.js';

export interface FlowFilter {
  namespace?: string;
  /** "name" (any namespace) or "namespace/name". */
  pod?: string;
  service?: string;
  state?: 'open' | 'closed';
}

export const FLOW_FILTER_KEYS = ['namespace', 'pod', 'service', 'state'] as const;

export function parseFlowFilter(query: URLSearchParams): FlowFilter {
  const filter: FlowFilter = {};
  for (const key of FLOW_FILTER_KEYS) {
    const value = query.get(key);
    if (value === null || value === '') continue;
    if (key === 'state') {
      if (value !== 'open' && value !== 'closed') throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--state must be open or closed, got "${value}"`);
      filter.state = value;
    } else {
      filter[key] = value;
    }
  }
  return filter;
}

/** `want` is "name" (any namespace) or "namespace/name"; `key` is "namespace/name". */
export const matchesName = (key: string | null | undefined, want: string): boolean =>
  !!key && (key === want || (!want.includes('/') && key.slice(key.indexOf('/') + 1) === want));

const namespaceOf = (key: string | null | undefined) => (key && key.includes('/') ? key.slice(0, key.indexOf('/')) : undefined);

// spiffe://<td>/ns/<namespace>/sa/<sa>
const identityNamespace = (id: string | undefined) => (id ? /\/ns\/([^/]+)\/sa\//.exec(id)?.[1] : undefined);

export function matchFlow(row: FlowRow, f: FlowFilter): boolean {
  if (f.state && row.state !== f.state) return false;
  if (f.service && !matchesName(row.destination.service, f.service)) return false;
  const pods = [row.source.pod, row.destination.pod, row.endpoint?.pod];
  if (f.pod && !pods.some((p) => matchesName(p, f.pod as string))) return false;
  if (f.namespace) {
    const namespaces = [...pods.map(namespaceOf), namespaceOf(row.destination.service), identityNamespace(row.source.identity)];
    if (!namespaces.includes(f.namespace)) return false;
  }
  return true;
}
