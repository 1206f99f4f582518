// The controller's eyes on the cluster: one client-node informer per watched kind keeps the
// current objects, and every change is reported (debounced) so the node views get recomputed.
// A kind whose CRD is not installed is skipped and looked for again; failures restart the
// informer with backoff, since client-node stops an informer on its first error.
import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { apiErrorMessage, getJson, httpStatusOf } from './kube-client.js';
import { collectionPath, WATCHED_KINDS, type KubeObject, type WatchedKind } from './kube-kinds.js';

export interface KubeWatchOptions {
  kubeConfig: KubeConfig;
  log: Logger;
  /** Called after changes, at most once per debounce period; read objects() then. Not called before start() resolves. */
  onChange: () => void;
  debounceMs?: number;
  /** Delay before restarting a failed informer: doubles from initialMs up to maxMs (also how often a missing CRD is looked for). */
  backoff?: { initialMs: number; maxMs: number };
}

export class KubeWatch {
  readonly #opts: KubeWatchOptions;
  readonly #kinds: KindWatch[] = [];
  #timer: NodeJS.Timeout | undefined;
  #synced = false;
  #stopped = false;

  constructor(opts: KubeWatchOptions) {
    this.#opts = opts;
  }

  /** True once every served kind has been listed. */
  get synced(): boolean {
    return this.#synced;
  }

  /** Resolves once every kind has listed once or was found not served (404); other failures are retried until they pass. */
  async start(): Promise<void> {
    const backoff = this.#opts.backoff ?? { initialMs: 250, maxMs: 30_000 };
    for (const kind of WATCHED_KINDS) this.#kinds.push(new KindWatch(kind, this.#opts.kubeConfig, this.#opts.log, backoff, () => this.#changed()));
    await Promise.all(this.#kinds.map((k) => k.ready));
    if (this.#stopped) return;
    this.#synced = true;
    const missing = this.#kinds.filter((k) => k.missing).map((k) => k.kind.kind);
    this.#opts.log.info({ objects: this.objects().length, missing }, 'Kubernetes watch synced');
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    for (const k of this.#kinds) k.stop();
  }

  /** The current objects of every served kind, apiVersion and kind set. Shared with the informers' caches: do not modify them. */
  objects(): KubeObject[] {
    return this.#kinds.flatMap((k) => k.objects());
  }

  #changed(): void {
    if (!this.#synced || this.#stopped || this.#timer) return;
    // Not pushed back by further changes: a steady stream of them still gets reported.
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#stopped) this.#opts.onChange();
    }, this.#opts.debounceMs ?? 20);
  }
}

/** client-node's Watch, except that a watch still connecting when stop() runs is closed once connected; ListWatch would keep it. */
class ClosableWatch extends Watch {
  #closed = false;

  close(): void {
    this.#closed = true;
  }

  override async watch(...args: Parameters<Watch['watch']>): Promise<AbortController> {
    const controller = await super.watch(...args);
    if (this.#closed) controller.abort();
    return controller;
  }
}

class KindWatch {
  readonly kind: WatchedKind;
  /** Resolves at the first list, or at the first 404 (kind not served). */
  readonly ready: Promise<void>;
  readonly #informer: ListWatch<KubernetesObject>;
  readonly #watch: ClosableWatch;
  readonly #log: Logger;
  readonly #backoff: { initialMs: number; maxMs: number };
  readonly #changed: () => void;
  #markReady!: () => void;
  #attempts = 0;
  #lastFailure = 0;
  #restart: NodeJS.Timeout | undefined;
  #stopped = false;
  #missing = false;

  constructor(kind: WatchedKind, kc: KubeConfig, log: Logger, backoff: { initialMs: number; maxMs: number }, changed: () => void) {
    this.kind = kind;
    this.#log = log;
    this.#backoff = backoff;
    this.#changed = changed;
    this.ready = new Promise((resolve) => (this.#markReady = resolve));
    const path = collectionPath(kind);
    this.#watch = new ClosableWatch(kc);
    this.#informer = new ListWatch(path, this.#watch, () => this.#list(kc, path), false);
    const typed = (obj: KubernetesObject): void => {
      // Items of a built-in list carry no apiVersion/kind; watch events do. These objects are the cache's own.
      obj.apiVersion ??= kind.apiVersion;
      obj.kind ??= kind.kind;
      this.#attempts = 0;
      this.#changed();
    };
    this.#informer.on('add', typed);
    this.#informer.on('update', typed);
    this.#informer.on('delete', () => this.#changed());
    this.#informer.on('error', (err: unknown) => this.#failed(err));
    this.#start();
  }

  /** The API server does not serve this kind (its CRD is not installed). */
  get missing(): boolean {
    return this.#missing;
  }

  objects(): KubeObject[] {
    return this.#missing ? [] : (this.#informer.list() as KubeObject[]);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#restart);
    this.#watch.close();
    void this.#informer.stop();
    this.#markReady();
  }

  async #list(kc: KubeConfig, path: string): Promise<KubernetesListObject<KubernetesObject>> {
    const list = (await getJson(kc, path)) as KubernetesListObject<KubernetesObject>;
    // Thrown after a stop() so that ListWatch does not go on to open a watch.
    if (this.#stopped) throw new Error('stopped');
    if (this.#missing) {
      this.#missing = false;
      this.#log.info({ kind: this.kind.kind, apiVersion: this.kind.apiVersion }, `${this.kind.kind} is now served; watching it`);
    }
    this.#attempts = 0;
    // After ListWatch has stored the items, which it does right after this promise settles.
    setImmediate(() => this.#markReady());
    return list;
  }

  #failed(err: unknown): void {
    if (this.#stopped) return;
    const { kind, apiVersion } = this.kind;
    const delay = this.#nextDelay();
    const status = httpStatusOf(err);
    if (status === 404) {
      if (!this.#missing) {
        this.#missing = true;
        this.#log.warn(
          { kind, apiVersion, path: collectionPath(this.kind) },
          `${kind} (${apiVersion}) is not served by the Kubernetes API: is its CRD installed? ${kind} resources are ignored until it is; looking again with backoff`,
        );
        if (this.#informer.list().length) this.#changed();
      }
      this.#markReady();
    } else if (status === 401 || status === 403) {
      this.#log.warn(
        { kind, apiVersion, err: apiErrorMessage(err), retryMs: delay },
        `not allowed to list and watch ${kind}: the controller's service account needs list and watch on ${this.kind.plural}; retrying`,
      );
    } else {
      // A dropped watch connection is routine (load balancers, API server restarts); repeated failures are not.
      const level = this.#attempts > 1 ? 'warn' : 'info';
      this.#log[level]({ kind, apiVersion, err: apiErrorMessage(err), retryMs: delay }, `watch of ${kind} interrupted; resuming`);
    }
    this.#restart = setTimeout(() => this.#start(), delay);
  }

  #start(): void {
    this.#informer.start().catch((err: unknown) => this.#failed(err));
  }

  /** Exponential with jitter; starts over when the last failure is older than the longest delay. */
  #nextDelay(): number {
    const now = Date.now();
    if (now - this.#lastFailure > this.#backoff.maxMs) this.#attempts = 0;
    this.#lastFailure = now;
    const base = Math.min(this.#backoff.maxMs, this.#backoff.initialMs * 2 ** this.#attempts++);
    return Math.round(base * (0.75 + Math.random() * 0.5));
  }
}
