// The agent's on-disk copy of the configuration in force, so that an agent restarted while
// the controller is down serves and enforces what it had. Written whole or not at all.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { NodemeshError } from '../errors.js';
import { isObj } from './fields.js';
import type { ViewResource } from './view-resource.js';

export const SNAPSHOT_FILE = 'snapshot.json';
const FORMAT = 1;

export interface SavedSnapshot {
  node: string;
  /** The controller's version of the snapshot. */
  version: number;
  /** The agent accepted the snapshot whole; after a NACK the controller must resend it. */
  acked: boolean;
  savedAt: Date;
  /** The resources in force: as received, except that a rejected one keeps its last good version. */
  resources: ViewResource[];
}

const corrupt = (path: string, why: string, cause?: unknown): NodemeshError =>
  new NodemeshError('NM_ERR_CONTROL_SNAPSHOT', `on-disk snapshot ${path} ignored: ${why}`, { cause });

/** undefined when there is no file; throws NM_ERR_CONTROL_SNAPSHOT when it cannot be used. */
export function readSnapshot(path: string): SavedSnapshot | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw corrupt(path, `cannot read it: ${(err as Error).message}`, err);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw corrupt(path, `not JSON (${(err as Error).message})`, err);
  }
  if (!isObj(data) || data.format !== FORMAT) throw corrupt(path, `not a nodemesh snapshot of format ${FORMAT}`);
  const { node, version, acked, savedAt, resources } = data;
  const saved = typeof savedAt === 'string' ? new Date(savedAt) : new Date(NaN);
  if (typeof node !== 'string' || !Number.isSafeInteger(version) || typeof acked !== 'boolean' || Number.isNaN(saved.getTime())) {
    throw corrupt(path, 'node, version, acked or savedAt is missing or malformed');
  }
  if (!Array.isArray(resources) || !resources.every(isResource)) throw corrupt(path, 'resources is not a list of resources');
  return { node, version: version as number, acked, savedAt: saved, resources };
}

/** Write to a temporary file, then rename over the old one. Throws NM_ERR_CONTROL_SNAPSHOT. */
export function writeSnapshot(path: string, snapshot: SavedSnapshot): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const { node, version, acked, savedAt, resources } = snapshot;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    rmSync(tmp, { force: true });
    // 0600: the snapshot lists every workload and policy of the node.
    writeFileSync(tmp, JSON.stringify({ format: FORMAT, node, version, acked, savedAt: savedAt.toISOString(), resources }), { mode: 0o600, flag: 'wx' });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new NodemeshError(
      'NM_ERR_CONTROL_SNAPSHOT',
      `cannot write the on-disk snapshot ${path}: ${(err as Error).message}; the agent's state directory must be writable and persistent`,
      { cause: err },
    );
  }
}

function isResource(r: unknown): r is ViewResource {
  return isObj(r) && ['apiVersion', 'kind', 'namespace', 'name', 'json'].every((k) => typeof r[k] === 'string');
}
