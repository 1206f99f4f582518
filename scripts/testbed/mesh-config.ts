// Builds standalone configuration files for the agents under test, from the testbed's own
// description plus the Services a test declares.
import { writeFileSync, renameSync } from 'node:fs';
import { parseAllDocuments, stringify } from 'yaml';
import type { Testbed } from './testbed.js';

export interface ServiceSpec {
  name: string;
  namespace: string;
  clusterIP: string;
  selector: Record<string, string>;
  ports: Array<{ name?: string; port: number; targetPort: number | string; appProtocol?: string }>;
}

export type Doc = Record<string, any>;

export function testbedDocs(tb: Testbed): Doc[] {
  return parseAllDocuments(tb.nodeYaml()).map((d) => d.toJSON() as Doc).filter(Boolean);
}

export function serviceDoc(s: ServiceSpec): Doc {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: s.name, namespace: s.namespace },
    spec: { clusterIP: s.clusterIP, selector: s.selector, ports: s.ports.map((p) => ({ protocol: 'TCP', ...p })) },
  };
}

/** Replaces the file in one step, as an editor or a ConfigMap update would. */
export function writeConfig(file: string, docs: Doc[] | string): void {
  const text = typeof docs === 'string' ? docs : docs.map((d) => stringify(d)).join('---\n');
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}
