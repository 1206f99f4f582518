// The controller's eyes on the cluster: per watched kind, a reflector as client-go has it
// keeps the current objects (list, then watch from the list's resourceVersion; 410 Expired
// lists again; failures back off and resume), and every change is reported (debounced) so the
// node views get recomputed. The wire protocol is client-node's Watch; the loop is ours and
// sequential per kind, so that no restart can race another (client-node's ListWatch stops
// for good on an error and leaves restarting to its user).
// A kind whose CRD is not installed is skipped and looked for again.
import { Watch, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { apiErrorMessage, getJson, httpStatusOf, KubeApiError } from './kube-client.js';
import { collectionPath, WATCHED_KINDS, type KubeObject, type WatchedKind } from './kube-kinds.js';

export interface KubeWatchOptions {
  kubeConfig: KubeConfig;
  log: Logger;
  /** Called after changes, at most once per debounce period; read objects() then. Not called before start() resolves. */
  onChange: () => void;
  debounceMs?: number;
  /** Delay before restarting a failed informer: doubles from initialMs up to maxMs (also how often a missing CRD is looked for). */
  backoff?: { initialMs: number; maxMs: number };
  /**
   * Each watch asks the server to end it after a random time between this and twice this,
   * as client-go's reflector does (default 300 s); one still open 10% past that sits on a
   * connection that died silently, and is cut. The next watch resumes where it left off.
   */
  watchTimeoutSeconds?: number;
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
    const settings = { backoff: this.#opts.backoff ?? { initialMs: 250, maxMs: 30_000 }, watchTimeoutSeconds: this.#opts.watchTimeoutSeconds ?? 300 };
    for (const kind of WATCHED_KINDS) this.#kinds.push(new KindWatch(kind, this.#opts.kubeConfig, this.#opts.log, settings, () => this.#changed()));
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

interface KindSettings {
  backoff: { initialMs: number; maxMs: number };
  watchTimeoutSeconds: number;
}

class KindWatch {
  readonly kind: WatchedKind;
  /** Resolves at the first list, or at the first 404 (kind not served). */
  readonly ready: Promise<void>;
  readonly #kc: KubeConfig;
  readonly #path: string;
  readonly #log: Logger;
  readonly #settings: KindSettings;
  readonly #changed: () => void;
  #markReady!: () => void;
  /** By namespace/name. Replaced, never modified, when an object changes. */
  #objects = new Map<string, KubeObject>();
  /** Where the next watch resumes from; '' to list first. */
  #resourceVersion = '';
  #attempts = 0;
  #lastFailure = 0;
  #missing = false;
  #stopped = false;
  /** Ends the open watch, or the pause before the next attempt. */
  #interrupt: (() => void) | undefined;

  constructor(kind: WatchedKind, kc: KubeConfig, log: Logger, settings: KindSettings, changed: () => void) {
    this.kind = kind;
    this.#kc = kc;
    this.#path = collectionPath(kind);
    this.#log = log;
    this.#settings = settings;
    this.#changed = changed;
    this.ready = new Promise((resolve) => (this.#markReady = resolve));
    void this.#run();
  }

  /** The API server does not serve this kind (its CRD is not installed). */
  get missing(): boolean {
    return this.#missing;
  }

  objects(): KubeObject[] {
    return [...this.#objects.values()];
  }

  stop(): void {
    this.#stopped = true;
    this.#interrupt?.();
    this.#markReady();
  }

  /** The one loop of this kind: list when there is no resourceVersion to resume from, watch, and again. */
  async #run(): Promise<void> {
    while (!this.#stopped) {
      try {
        if (!this.#resourceVersion) await this.#list();
        await this.#watch();
      } catch (err) {
        if (this.#stopped) return;
        await this.#pause(this.#failed(err));
      }
    }
  }

  async #list(): Promise<void> {
    const list = (await getJson(this.#kc, this.#path)) as { metadata?: { resourceVersion?: string }; items?: KubeObject[] };
    if (this.#stopped) return;
    if (this.#missing) {
      this.#missing = false;
      this.#log.info({ kind: this.kind.kind, apiVersion: this.kind.apiVersion }, `${this.kind.kind} is now served; watching it`);
    }
    const next = new Map<string, KubeObject>();
    let changed = false;
    for (const item of list.items ?? []) {
      const obj = this.#typed(item);
      const key = keyOf(obj);
      const known = this.#objects.get(key);
      // An unchanged object stays the same object, so the views' per-object caches keep it.
      if (known && sameVersion(known, obj)) next.set(key, known);
      else (next.set(key, obj), (changed = true));
    }
    if (next.size !== this.#objects.size || [...this.#objects.keys()].some((k) => !next.has(k))) changed = true;
    this.#objects = next;
    this.#resourceVersion = list.metadata?.resourceVersion ?? '';
    this.#attempts = 0;
    this.#markReady();
    if (changed) this.#changed();
  }

  /**
   * One watch from #resourceVersion, resolved when it ends cleanly (server timeout, 410 Expired
   * seen) and rejected when it fails. A watch still open well past its timeoutSeconds sits on a
   * dead connection: it is cut, and the next one resumes.
   */
  #watch(): Promise<void> {
    const { watchTimeoutSeconds } = this.#settings;
    const timeoutSeconds = watchTimeoutSeconds + Math.floor(Math.random() * watchTimeoutSeconds);
    return new Promise<void>((resolve, reject) => {
      let ended = false;
      let failure: Error | undefined;
      let abort: AbortController | undefined;
      const done = (err: unknown): void => {
        if (ended) return;
        ended = true;
        clearTimeout(guard);
        this.#interrupt = undefined;
        abort?.abort();
        if (failure ?? err) reject(failure ?? err);
        else resolve();
      };
      // Ended from our side (stop, or a watch past its timeout): a clean end, whatever the stream then reports.
      const cut = (): void => done(null);
      const guard = setTimeout(() => {
        this.#log.warn(
          { kind: this.kind.kind, apiVersion: this.kind.apiVersion, timeoutSeconds },
          `watch of ${this.kind.kind} outlived its timeout with no end from the server; resuming on a new connection`,
        );
        cut();
      }, timeoutSeconds * 1100);
      this.#interrupt = cut;
      const onEvent = (type: string, obj: KubeObject): void => {
        if (ended) return;
        if (type === 'ERROR') {
          const status = obj as unknown as { code?: number; message?: string };
          // 410: the history this watch resumes from is compacted away; list again.
          if (status.code === 410) this.#resourceVersion = '';
          else failure = new KubeApiError(status.code ?? 0, `watch ${this.#path}: ${status.code} ${status.message ?? ''}`.trim());
          return;
        }
        this.#event(type, obj);
      };
      const query = { resourceVersion: this.#resourceVersion, allowWatchBookmarks: true, timeoutSeconds };
      new Watch(this.#kc).watch(this.#path, query, onEvent, done).then(
        (controller) => {
          abort = controller;
          if (ended) controller.abort();
        },
        (err: unknown) => done(err),
      );
    });
  }

  #event(type: string, obj: KubeObject): void {
    if (type === 'ADDED' || type === 'MODIFIED') {
      const typed = this.#typed(obj);
      const key = keyOf(typed);
      const known = this.#objects.get(key);
      if (!known || !sameVersion(known, typed)) {
        this.#objects.set(key, typed);
        this.#changed();
      }
    } else if (type === 'DELETED') {
      if (this.#objects.delete(keyOf(obj))) this.#changed();
    } else if (type !== 'BOOKMARK') {
      return;
    }
    this.#attempts = 0;
    const version = obj.metadata?.resourceVersion;
    if (typeof version === 'string' && version) this.#resourceVersion = version;
  }

  /**
   * Items of a built-in list carry no apiVersion/kind; watch events do. managedFields, often
   * the largest part of an object and read by nothing here, is not kept (as Istio's informers
   * drop it).
   */
  #typed(obj: KubeObject): KubeObject {
    obj.apiVersion ??= this.kind.apiVersion;
    obj.kind ??= this.kind.kind;
    delete obj.metadata.managedFields;
    return obj;
  }

  /** Logs the failure and returns how long to wait before the next attempt. */
  #failed(err: unknown): number {
    const { kind, apiVersion } = this.kind;
    const delay = this.#nextDelay();
    const status = httpStatusOf(err);
    if (status === 404) {
      this.#resourceVersion = '';
      if (!this.#missing) {
        this.#missing = true;
        this.#log.warn(
          { kind, apiVersion, path: this.#path },
          `${kind} (${apiVersion}) is not served by the Kubernetes API: is its CRD installed? ${kind} resources are ignored until it is; looking again with backoff`,
        );
        if (this.#objects.size) {
          this.#objects = new Map();
          this.#changed();
        }
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
    return delay;
  }

  #pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(end, ms);
      function end(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#interrupt = end;
    }).finally(() => (this.#interrupt = undefined));
  }

  /** Exponential with jitter; starts over when the last failure is older than the longest delay. */
  #nextDelay(): number {
    const now = Date.now();
    const { backoff } = this.#settings;
    if (now - this.#lastFailure > backoff.maxMs) this.#attempts = 0;
    this.#lastFailure = now;
    const base = Math.min(backoff.maxMs, backoff.initialMs * 2 ** this.#attempts++);
    return Math.round(base * (0.75 + Math.random() * 0.5));
  }
}

const keyOf = (o: KubeObject): string => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
const sameVersion = (a: KubeObject, b: KubeObject): boolean =>
  a.metadata.resourceVersion !== undefined && a.metadata.resourceVersion === b.metadata.resourceVersion;
