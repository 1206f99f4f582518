// Configuration source in Kubernetes mode: snapshots from the controller's config stream,
// validated into a MeshState like the standalone file, with the configuration in force kept
// on disk so that a restart without the controller still serves and enforces it.
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { NodemeshError } from '../errors.js';
import type { SignerResult } from '../identity/cert-manager.js';
import type { MeshState, Rejection } from '../state/model.js';
import { applyConfig, type ApplyOptions } from './apply.js';
import type { ConfigDocument } from './config-docs.js';
import { isObj, type Obj } from './fields.js';
import { ConfigStreamClient, type ConfigSnapshot, type ConfigStreamClientOptions } from './stream-client.js';
import { readSnapshot, SNAPSHOT_FILE, writeSnapshot, type SavedSnapshot } from './stream-snapshot.js';
import { resourceIdentity, resourceLabel, type ViewResource } from './view-resource.js';

export interface StreamSourceOptions {
  /** This agent's node name. */
  node: string;
  log: Logger;
  /** Called with the first state, then whenever the accepted content or the rejections change. */
  onState: (state: MeshState) => void;
  /** The agent's persistent directory (a hostPath); holds snapshot.json. */
  stateDir: string;
  /**
   * snapshot.json is written at most this often (default 5 s), the last state always: a
   * large view changing many times a second would otherwise be rewritten whole each time.
   */
  saveIntervalMs?: number;
  client: Omit<ConfigStreamClientOptions, 'node' | 'log' | 'onSnapshot'>;
  /** Passed to applyConfig beside `node`: where the app wiring plugs in the pod cgroup lookup. */
  applyOptions?: Omit<ApplyOptions, 'node'>;
}


export class StreamSource {
  /** The on-disk snapshot. */
  readonly path: string;
  readonly #opts: StreamSourceOptions;
  readonly #client: ConfigStreamClient;
  #state: MeshState | null = null;
  /** Per resource, the raw version in force: kept for a rejected update, and written to disk. */
  #inForce = new Map<string, ViewResource>();
  #waiting: { resolve: () => void; reject: (err: Error) => void } | undefined;
  /** The snapshot to write once the save interval has passed since the last write. */
  #unsaved: SavedSnapshot | undefined;
  #saveTimer: NodeJS.Timeout | undefined;
  #lastSave = 0;

  constructor(opts: StreamSourceOptions) {
    this.#opts = opts;
    this.path = join(opts.stateDir, SNAPSHOT_FILE);
    this.#client = new ConfigStreamClient({ ...opts.client, node: opts.node, log: opts.log, onSnapshot: (s) => this.#onSnapshot(s) });
  }

  /** The last accepted state (null before the first one). */
  get state(): MeshState | null {
    return this.#state;
  }

  /** The stream to the controller is open. */
  get connected(): boolean {
    return this.#client.connected;
  }

  /** A CertManager Signer over the same controller connection. */
  sign(csrPem: string, ttlSeconds: number): Promise<SignerResult> {
    return this.#client.sign(csrPem, ttlSeconds);
  }

  /**
   * Serves the on-disk snapshot at once if there is a usable one and connects in the
   * background; otherwise resolves when the first snapshot arrives from the controller
   * (retrying meanwhile). Rejects with NM_ERR_CONTROL_STOPPED if stopped before that.
   */
  async start(): Promise<void> {
    const { log } = this.#opts;
    const saved = this.#readSaved();
    if (saved) {
      this.#apply(saved.version, saved.resources, 'the on-disk snapshot');
      log.info(
        { path: this.path, version: saved.version, savedAt: saved.savedAt.toISOString(), ageSeconds: Math.round((Date.now() - saved.savedAt.getTime()) / 1000) },
        'serving from the on-disk snapshot',
      );
      // After a NACK the controller must resend even an unchanged view, to hear the NACK again.
      // Accepted whole, the resources in force are the view as received.
      this.#client.start(saved.acked ? { version: saved.version, resources: saved.resources } : undefined);
      return;
    }
    const { address } = this.#opts.client;
    log.info({ controller: address, path: this.path }, `no on-disk snapshot: the agent waits for the controller at ${address}`);
    const first = new Promise<void>((resolve, reject) => (this.#waiting = { resolve, reject }));
    this.#client.start();
    await first;
  }

  stop(): void {
    this.#client.stop();
    this.#save();
    this.#waiting?.reject(
      new NodemeshError('NM_ERR_CONTROL_STOPPED', `stopped before the first configuration arrived from the controller at ${this.#opts.client.address}`),
    );
    this.#waiting = undefined;
  }

  /** Writes the snapshot not yet on disk, if any. */
  #save(): void {
    clearTimeout(this.#saveTimer);
    this.#saveTimer = undefined;
    const saved = this.#unsaved;
    if (!saved) return;
    this.#unsaved = undefined;
    this.#lastSave = Date.now();
    try {
      writeSnapshot(this.path, saved);
    } catch (err) {
      this.#opts.log.error({ path: this.path, code: (err as NodemeshError).code, err: (err as Error).message }, 'on-disk snapshot not written');
    }
  }

  #readSaved(): SavedSnapshot | undefined {
    const { log, node } = this.#opts;
    let saved: SavedSnapshot | undefined;
    try {
      saved = readSnapshot(this.path);
    } catch (err) {
      log.error({ path: this.path, code: (err as NodemeshError).code, err: (err as Error).message }, 'on-disk snapshot is corrupt; ignored');
      return undefined;
    }
    if (saved && saved.node !== node) {
      log.warn({ path: this.path, snapshotNode: saved.node, node }, `on-disk snapshot belongs to node ${saved.node}; ignored`);
      return undefined;
    }
    return saved;
  }

  #onSnapshot(snapshot: ConfigSnapshot): Rejection[] {
    const rejections = this.#apply(snapshot.version, snapshot.resources, `controller snapshot ${snapshot.version}`);
    const saved: SavedSnapshot = {
      node: this.#opts.node,
      version: snapshot.version,
      acked: rejections.length === 0,
      savedAt: new Date(),
      resources: [...this.#inForce.values()],
    };
    this.#unsaved = saved;
    const wait = this.#lastSave + (this.#opts.saveIntervalMs ?? 5000) - Date.now();
    if (wait <= 0) this.#save();
    else this.#saveTimer ??= setTimeout(() => this.#save(), wait).unref();
    this.#waiting?.resolve();
    this.#waiting = undefined;
    return rejections;
  }

  /** Validates the resources into the next state; returns the rejections (the NACK). */
  #apply(version: number, resources: readonly ViewResource[], from: string): Rejection[] {
    const { log, node } = this.#opts;
    const unreadable: Rejection[] = [];
    const docs: ConfigDocument[] = [];
    const parsed: Array<{ resource: ViewResource; origin: string }> = [];
    resources.forEach((resource, i) => {
      const origin = `${from} resource ${i + 1}`;
      const read = parseObject(resource.json);
      if ('error' in read) {
        unreadable.push({ resource: resourceLabel(resource), field: '', reason: `its JSON cannot be used: ${read.error}` });
        // The last good version stays in force, as for a resource that fails validation.
        const good = this.#inForce.get(resourceIdentity(resource));
        if (good) docs.push({ origin, value: JSON.parse(good.json) as unknown });
        return;
      }
      docs.push({ origin, value: read.value });
      parsed.push({ resource, origin });
    });
    const applied = applyConfig(this.#state, docs, { ...this.#opts.applyOptions, node });
    this.#inForce = this.#nextInForce(resources, parsed, applied.rejections);
    const rejections = [...unreadable, ...applied.rejections];
    const state: MeshState = { ...applied, rejections };

    const previous = this.#state;
    if (!previous || state.version !== previous.version || !isDeepStrictEqual(state.rejections, previous.rejections)) {
      for (const r of state.rejections) log.warn({ version, ...r }, `${r.resource} rejected: ${r.field ? `${r.field} ` : ''}${r.reason}`);
      this.#state = state;
      log.info(
        { from, version, stateVersion: state.version, pods: state.pods.size, services: state.services.size, rejected: state.rejections.length },
        'configuration loaded',
      );
      this.#opts.onState(state);
    }
    return rejections;
  }

  /** Accepted resources as received; a rejected or unreadable one keeps its last good version, if any. */
  #nextInForce(
    resources: readonly ViewResource[],
    parsed: ReadonlyArray<{ resource: ViewResource; origin: string }>,
    rejections: readonly Rejection[],
  ): Map<string, ViewResource> {
    const refused = new Set(rejections.map((r) => r.resource));
    // Validation names a resource "Kind ns/name", or by its origin when it has no usable name.
    const isRefused = ({ resource, origin }: { resource: ViewResource; origin: string }): boolean =>
      refused.has(resourceLabel(resource)) || rejections.some((r) => r.resource.endsWith(`(${origin})`));
    const accepted = new Set(parsed.filter((p) => !isRefused(p)).map((p) => p.resource));
    const next = new Map<string, ViewResource>();
    for (const resource of resources) {
      const key = resourceIdentity(resource);
      const kept = accepted.has(resource) ? resource : this.#inForce.get(key);
      if (kept) next.set(key, kept);
    }
    return next;
  }
}

/** The object the JSON holds, or why it cannot be used. */
function parseObject(json: string): { value: Obj } | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    return { error: (err as Error).message };
  }
  return isObj(value) ? { value } : { error: 'not a JSON object' };
}
