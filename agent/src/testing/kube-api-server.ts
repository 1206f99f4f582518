// A Kubernetes API server double for tests: plain HTTP on 127.0.0.1, the real REST paths,
// list/watch protocol (resourceVersion, ADDED/MODIFIED/DELETED/BOOKMARK events, 410 Expired
// after a compaction) and TokenReview, so that the unmodified @kubernetes/client-node runs
// against it. Test controls drop watches, compact history and make requests fail.
import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { API_RESOURCES, apiVersionOf, failureStatus, findResource, ObjectStore, StatusError, type ApiResource, type Json, type StoreEvent } from './kube-api-store.js';
import { TokenTable, type TokenInfo } from './kube-api-tokens.js';

export type { TokenInfo } from './kube-api-tokens.js';

export interface KubeApiServerOptions {
  /** How often a watch that allowed bookmarks gets one; 60 s like the real server. */
  bookmarkIntervalMs?: number;
  /** Events kept for watches to resume from; older ones are compacted away. */
  eventWindow?: number;
  /** The API server's own audiences: a TokenReview without spec.audiences checks against them. */
  apiAudiences?: string[];
}

/** An object reference for the in-process calls; namespaced kinds default to "default". */
export type ObjectRef = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [field: string]: unknown } };

interface Watcher {
  resource: ApiResource;
  namespace: string | undefined;
  bookmarks: boolean;
  res: ServerResponse;
  /** timeoutSeconds asked (0: none); the server ends the watch then. */
  timeoutSeconds: number;
  timer: NodeJS.Timeout | undefined;
  /** Open, but nothing reaches the client any more (a connection dead without a FIN). */
  stalled: boolean;
}

const TOKEN_REVIEWS = '/apis/authentication.k8s.io/v1/tokenreviews';
const REASONS: Record<number, string> = {
  400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'Conflict', 410: 'Expired',
  429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout',
};
const pathNotFound = (): Json => failureStatus(404, 'NotFound', 'the server could not find the requested resource', {});

export class KubeApiServer {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly #server: http.Server;
  readonly #store: ObjectStore;
  readonly #watchers = new Set<Watcher>();
  readonly #uninstalled = new Set<ApiResource>();
  readonly #lists = new Map<string, number>();
  readonly #failures = new Map<string, number[]>();
  readonly #tokens: TokenTable;
  readonly #bookmarkTimer: NodeJS.Timeout;

  private constructor(server: http.Server, opts: KubeApiServerOptions) {
    this.#server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    this.#store = new ObjectStore(opts.eventWindow ?? 10_000);
    this.#store.onEvent((e) => this.#broadcast(e));
    this.#tokens = new TokenTable(opts.apiAudiences ?? ['https://kubernetes.default.svc.cluster.local']);
    this.#bookmarkTimer = setInterval(() => this.#bookmark(false), opts.bookmarkIntervalMs ?? 60_000).unref();
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (res.headersSent) res.destroy();
        else this.#send(res, err instanceof StatusError ? err.status : failureStatus(500, 'InternalError', String(err)));
      });
    });
  }

  static async start(opts: KubeApiServerOptions = {}): Promise<KubeApiServer> {
    const server = http.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return new KubeApiServer(server, opts);
  }

  /** client-node refuses http:// servers unless skipTLSVerify is set; this config does so. */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromClusterAndUser({ name: 'kube-api-double', server: this.url, skipTLSVerify: true }, { name: 'test' });
    return kc;
  }

  get resourceVersion(): number {
    return this.#store.resourceVersion;
  }

  /**
   * Same effect as a POST, except that a metadata.uid given is kept (the API server assigns
   * one): a test can so seed pods whose cgroups the testbed's "kubelet" already named. Returns
   * the stored object (uid, creationTimestamp, resourceVersion set).
   */
  create(obj: ObjectRef & Json): Json {
    return this.#store.create(this.#resourceOf(obj), obj, obj.metadata.namespace ?? 'default', { keepUid: true });
  }

  /** Same effect as a PUT. */
  update(obj: ObjectRef & Json): Json {
    return this.#store.update(this.#resourceOf(obj), obj, obj.metadata.namespace ?? 'default');
  }

  /** Same effect as a DELETE. */
  remove(obj: ObjectRef): void {
    this.#store.remove(this.#resourceOf(obj), obj.metadata.namespace ?? 'default', obj.metadata.name);
  }

  get(obj: ObjectRef): Json {
    return this.#store.get(this.#resourceOf(obj), obj.metadata.namespace ?? 'default', obj.metadata.name);
  }

  /** Removes a CRD: its objects are deleted (DELETED events), its watches end, its paths answer 404. */
  uninstall(apiVersion: string, kind: string): void {
    const r = this.#resource(apiVersion, kind);
    if (!r.group) throw new Error(`${apiVersion} ${kind} is built in; only custom resources can be uninstalled`);
    for (const o of this.#store.list(r)) this.#store.remove(r, o.metadata.namespace ?? '', o.metadata.name);
    this.#uninstalled.add(r);
    for (const w of this.#watchers) if (w.resource === r) this.#endWatch(w, true);
  }

  install(apiVersion: string, kind: string): void {
    this.#uninstalled.delete(this.#resource(apiVersion, kind));
  }

  /** Ends every open watch: by default the connection is destroyed (a network failure); graceful ends the response as a server-side timeout does. */
  dropWatches(opts: { graceful?: boolean } = {}): number {
    const n = this.#watchers.size;
    for (const w of this.#watchers) this.#endWatch(w, opts.graceful ?? false);
    return n;
  }

  /**
   * Leaves every open watch open but silent, its server-side timeout included: what a client
   * sees when the connection died without a FIN or RST (a node or middlebox gone).
   */
  stallWatches(): number {
    for (const w of this.#watchers) {
      w.stalled = true;
      clearTimeout(w.timer);
    }
    return this.#watchers.size;
  }

  /** The timeoutSeconds of the open watches that asked for one, and how many asked for bookmarks. */
  watchParameters(): { timeoutSeconds: number[]; bookmarks: number } {
    const open = [...this.#watchers];
    return { timeoutSeconds: open.filter((w) => w.timeoutSeconds > 0).map((w) => w.timeoutSeconds), bookmarks: open.filter((w) => w.bookmarks).length };
  }

  /** Forgets every past event: a watch resuming from before now gets 410 Expired. */
  compact(): void {
    this.#store.compact();
  }

  /** Sends a BOOKMARK now to watches that allowed them, or to every watch with `all` (a client that never asks must still cope). */
  bookmark(opts: { all?: boolean } = {}): number {
    return this.#bookmark(opts.all ?? false);
  }

  /** Number of list (not watch) requests served for a path such as /api/v1/pods. */
  listRequests(path: string): number {
    return this.#lists.get(path) ?? 0;
  }

  get openWatches(): number {
    return this.#watchers.size;
  }

  /** The next request for `path` (any method, list or watch) fails with this HTTP status. */
  failNext(path: string, status: number): void {
    this.#failures.set(path, [...(this.#failures.get(path) ?? []), status]);
  }

  addToken(token: string, info: TokenInfo): void {
    this.#tokens.add(token, info);
  }

  async close(): Promise<void> {
    clearInterval(this.#bookmarkTimer);
    for (const w of this.#watchers) this.#endWatch(w, false);
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const failure = this.#failures.get(url.pathname)?.shift();
    if (failure !== undefined) return this.#send(res, failureStatus(failure, REASONS[failure] ?? 'Unknown', `injected failure ${failure} for ${url.pathname}`));
    if (url.pathname === TOKEN_REVIEWS && req.method === 'POST') return this.#send(res, this.#tokens.review(await readBody(req)), 201);

    const route = this.#route(url.pathname);
    if (!route) return this.#send(res, pathNotFound());
    const { resource: r, namespace, name } = route;
    const notAllowed = (): void => this.#send(res, failureStatus(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'));
    if (name === undefined) {
      if (req.method === 'GET') {
        if (url.searchParams.has('labelSelector') || url.searchParams.has('fieldSelector')) {
          return this.#send(res, failureStatus(400, 'BadRequest', 'the API server double implements no label or field selectors'));
        }
        return url.searchParams.get('watch') === 'true' ? this.#watch(res, r, namespace, url.searchParams) : this.#list(res, r, namespace, url.pathname);
      }
      if (req.method !== 'POST' || (r.namespaced && namespace === undefined)) return notAllowed();
      return this.#send(res, this.#store.create(r, await readBody(req), namespace ?? ''), 201);
    }
    const ns = namespace ?? '';
    switch (req.method) {
      case 'GET':
        return this.#send(res, this.#store.get(r, ns, name));
      case 'PUT': {
        const body = await readBody(req);
        if (body.metadata?.name !== name) {
          return this.#send(res, failureStatus(400, 'BadRequest', `the name of the object (${body.metadata?.name}) does not match the name on the URL (${name})`));
        }
        return this.#send(res, this.#store.update(r, body, ns));
      }
      case 'DELETE': {
        const gone = this.#store.remove(r, ns, name);
        const details = { name, ...(r.group ? { group: r.group } : {}), kind: r.plural, uid: gone.metadata.uid };
        return this.#send(res, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details });
      }
      default:
        return notAllowed();
    }
  }

  /** /api/v1/<plural>[/<name>], /api/v1/namespaces/<ns>/<plural>[/<name>], same under /apis/<group>/<version>. */
  #route(path: string): { resource: ApiResource; namespace?: string; name?: string } | undefined {
    const seg = path.split('/').filter(Boolean).map(decodeURIComponent);
    const [group, version, rest] = seg[0] === 'api' ? ['', seg[1], seg.slice(2)] : seg[0] === 'apis' ? [seg[1], seg[2], seg.slice(3)] : [];
    if (!rest) return undefined;
    const find = (plural: string | undefined, namespaced: boolean): ApiResource | undefined =>
      API_RESOURCES.find((r) => r.group === group && r.version === version && r.plural === plural && r.namespaced === namespaced && !this.#uninstalled.has(r));
    if (rest[0] === 'namespaces' && rest.length >= 3 && rest.length <= 4) {
      const resource = find(rest[2], true);
      return resource && { resource, namespace: rest[1], name: rest[3] };
    }
    if (rest.length === 1) {
      const resource = API_RESOURCES.find((r) => r.group === group && r.version === version && r.plural === rest[0] && !this.#uninstalled.has(r));
      return resource && { resource };
    }
    const resource = rest.length === 2 ? find(rest[0], false) : undefined;
    return resource && { resource, name: rest[1] };
  }

  #list(res: ServerResponse, r: ApiResource, namespace: string | undefined, path: string): void {
    this.#lists.set(path, this.listRequests(path) + 1);
    // Built-in lists carry no apiVersion/kind on their items; custom resource lists do.
    const items = this.#store.list(r, namespace).map((o) => (r.group ? o : withoutTypeMeta(o)));
    this.#send(res, { kind: `${r.kind}List`, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(this.#store.resourceVersion) }, items });
  }

  #watch(res: ServerResponse, r: ApiResource, namespace: string | undefined, query: URLSearchParams): void {
    const from = query.get('resourceVersion') ?? '';
    const since = from === '' || from === '0' ? undefined : Number(from);
    if (since !== undefined && !Number.isSafeInteger(since)) {
      return this.#send(res, failureStatus(400, 'BadRequest', `invalid resource version "${from}"`));
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    const events = since === undefined ? this.#store.list(r, namespace).map((object) => ({ type: 'ADDED', object })) : this.#store.eventsSince(r, since, namespace);
    if (!events) {
      // What the watch cache answers: 200, one ERROR event carrying the Status, end of stream.
      const status = failureStatus(410, 'Expired', `too old resource version: ${since} (${this.#store.floor})`);
      res.end(`${JSON.stringify({ type: 'ERROR', object: status })}\n`);
      return;
    }
    const timeoutSeconds = Math.max(0, Number(query.get('timeoutSeconds')) || 0);
    const watcher: Watcher = { resource: r, namespace, bookmarks: query.get('allowWatchBookmarks') === 'true', res, timeoutSeconds, timer: undefined, stalled: false };
    for (const e of events) res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
    this.#watchers.add(watcher);
    if (timeoutSeconds > 0) watcher.timer = setTimeout(() => this.#endWatch(watcher, true), timeoutSeconds * 1000);
    res.on('close', () => {
      clearTimeout(watcher.timer);
      this.#watchers.delete(watcher);
    });
  }

  #broadcast(e: StoreEvent): void {
    const line = `${JSON.stringify({ type: e.type, object: e.object })}\n`;
    for (const w of this.#watchers) {
      if (w.resource === e.resource && (w.namespace === undefined || w.namespace === e.object.metadata.namespace) && !w.stalled && !w.res.destroyed) w.res.write(line);
    }
  }

  #bookmark(all: boolean): number {
    let sent = 0;
    for (const w of this.#watchers) {
      if ((!w.bookmarks && !all) || w.stalled || w.res.destroyed) continue;
      const object = { kind: w.resource.kind, apiVersion: apiVersionOf(w.resource), metadata: { resourceVersion: String(this.#store.resourceVersion) } };
      w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object })}\n`);
      sent++;
    }
    return sent;
  }

  #endWatch(w: Watcher, graceful: boolean): void {
    this.#watchers.delete(w);
    if (graceful) w.res.end();
    else w.res.destroy();
  }

  #send(res: ServerResponse, body: Json, okStatus = 200): void {
    const code = body.kind === 'Status' && body.status === 'Failure' ? (body.code as number) : okStatus;
    res.writeHead(code, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  #resourceOf(obj: ObjectRef): ApiResource {
    const r = this.#resource(obj.apiVersion, obj.kind);
    if (this.#uninstalled.has(r)) throw new StatusError(pathNotFound());
    return r;
  }

  #resource(apiVersion: string, kind: string): ApiResource {
    const r = findResource(apiVersion, kind);
    if (!r) throw new Error(`the API server double serves no ${apiVersion} ${kind}`);
    return r;
  }
}

function withoutTypeMeta(o: Json): Json {
  const copy = { ...o };
  delete copy.apiVersion;
  delete copy.kind;
  return copy;
}

async function readBody(req: IncomingMessage): Promise<Json> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (body && typeof body === 'object' && !Array.isArray(body)) return body as Json;
  } catch {
    // answered below, as for a body that is not an object
  }
  throw new StatusError(failureStatus(400, 'BadRequest', 'the request body is not a JSON object'));
}
