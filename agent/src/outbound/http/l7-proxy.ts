// The outbound L7 proxy: serves a client connection detected as HTTP/1.1 or HTTP/2 and, per
// request, applies the Gateway API route of the Service (match, filters, weighted backends),
// the nodemesh.io rate limits and faults, then forwards to an endpoint of the chosen backend
// through the pooled upstream connections, with the DestinationRule's balancer and circuit
// breakers, the route's timeouts and retries. Upgrade (WebSocket) and CONNECT requests from
// the app pass through as tunnels to an endpoint of the Service.
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import type { Logger } from 'pino';
import type { L7Connection } from '../outbound.js';
import { relay } from '../../transport/relay.js';
import { reset } from '../../transport/reset.js';
import { securityTo, type UpstreamDialer } from '../upstream-dial.js';
import type { Endpoint, MeshIndex, ServiceDestination } from '../../state/mesh-index.js';
import { objectKey, type MeshState, type RouteFilter, type RouteRule } from '../../state/model.js';
import { authorizationChanged } from '../../policy/index.js';
import { connectionTo, type Cluster, type Clusters } from '../cluster.js';
import type { HttpProtocol } from '../../http/detect.js';
import { h1Downstream, h2Downstream, malformedH1, type Downstream } from './downstream.js';
import { applyHeaderModifier, redirectLocation, rewriteUrl } from './filters.js';
import { DEFAULT_RETRY, forward, type LocalReply, type RetryPolicy } from './forwarder.js';
import { first, forwardHeaders, fromRaw, shadowAuthority, type HeaderMap } from '../../http/headers.js';
import { grpcTimeoutMs } from '../../http/grpc-status.js';
import { LocalPolicies, type PolicyTarget } from './local-policies.js';
import { flowEndpoint } from '../../telemetry/flow-table.js';
import type { RequestObserver, RequestRecord } from '../../telemetry/request-record.js';
import type { RequestTracer } from '../../telemetry/tracing.js';
import { RequestBody } from './request-body.js';
import { pickBackend, RouteTable } from './route-table.js';
import { UpstreamPool, type Dial } from './upstream-pool.js';
import { UpstreamError, type UpstreamRequest } from './upstream.js';

type MirrorFilter = Extract<RouteFilter, { type: 'RequestMirror' }>;

/** What the pipeline decided for one request, for its telemetry record. */
interface RouteInfo {
  requestId?: string;
  route?: string;
  backend?: { namespace: string; name: string; port: number };
  endpoint?: Endpoint;
  body?: RequestBody;
  retries: number;
}

/** Client connections idle this long are closed: Envoy's default idle timeout (1 h). */
const CLIENT_IDLE_MS = 3_600_000;

/** A mirror copy still unanswered after this long is given up. */
const MIRROR_TIMEOUT_MS = 30_000;

export interface L7Deps {
  index(): MeshIndex;
  dialer: UpstreamDialer;
  /** Shared with the L4 path: one balancer and outlier detection per destination. */
  clusters: Clusters;
  log: Logger;
  /** Told of every request once it is over (metrics, access log, tap). */
  observers?: readonly RequestObserver[];
  /** A span per request, its context sent upstream; without it trace headers pass unchanged. */
  tracing?: RequestTracer;
  random?: () => number;
}

export class L7Proxy {
  readonly #deps: L7Deps;
  readonly #h1: http.Server;
  readonly #connections = new WeakMap<net.Socket, L7Connection>();
  readonly #routes = new WeakMap<MeshIndex, RouteTable>();
  readonly #pool = new UpstreamPool();
  readonly #policies: LocalPolicies;
  readonly #random: () => number;
  /** The configuration of the last update. */
  #state: MeshState | undefined;

  constructor(deps: L7Deps) {
    this.#deps = deps;
    this.#random = deps.random ?? Math.random;
    this.#policies = new LocalPolicies({ random: this.#random });
    this.#h1 = http.createServer({ keepAliveTimeout: CLIENT_IDLE_MS, requestTimeout: 0, requireHostHeader: false });
    this.#h1.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const conn = this.#connections.get(req.socket);
      // After a 400 the connection serves nothing more, not even requests pipelined behind it.
      if (!conn) return;
      const malformed = malformedH1(req);
      if (malformed) {
        this.#connections.delete(req.socket);
        res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' });
        return void res.end(`Bad Request: ${malformed}`);
      }
      void this.#handle(conn, h1Downstream(req, res));
    });
    this.#h1.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => this.#tunnel(req, socket, head));
    this.#h1.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => this.#tunnel(req, socket, head));
  }

  /** Serves the connection's requests; resolves when the client connection is closed. */
  serve(conn: L7Connection): Promise<void> {
    const { socket } = conn;
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
    // Small answers must not wait for the client's delayed ACK (Nagle).
    socket.setNoDelay(true);
    if (conn.head.length > 0) socket.unshift(conn.head);
    if (conn.protocol === 'h1') {
      this.#connections.set(socket, conn);
      this.#h1.emit('connection', socket);
      socket.resume();
      return closed;
    }
    const session = http2.performServerHandshake(socket);
    // Start the socket reading without making it flow: the session takes the bytes from the
    // wire itself and, on the next tick, those the detection put back; a flowing socket would
    // hand the connection preface to no one.
    socket.read(0);
    // Malformed frames end in a GOAWAY from nghttp2; the session's error says nothing more.
    session.on('error', (err) => this.#deps.log.debug({ err: err.message }, 'l7: client HTTP/2 session error'));
    session.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void this.#handle(conn, h2Downstream(stream, headers, flags, rawHeaders)));
    // Idle clients go after Envoy's default idle timeout, as HTTP/1.1 ones do.
    session.setTimeout(CLIENT_IDLE_MS, () => session.close());
    return closed;
  }

  /**
   * A new configuration: pooled connections retire when what authorization depends on changed
   * (a connection admitted under the old policies must not carry new requests), and state of
   * destinations and policies no longer configured is dropped. Endpoint churn alone, the
   * usual change from Kubernetes, keeps the pool.
   */
  update(view: MeshIndex): void {
    if (this.#state && authorizationChanged(this.#state, view.state)) this.#pool.retireAll();
    this.#state = view.state;
    this.#policies.retain(view.state);
  }

  /** Pooled upstream HTTP/1.1 connections and HTTP/2 sessions, open now. */
  pooled(): { h1: number; h2: number } {
    return this.#pool.size;
  }

  close(): void {
    this.#pool.close();
  }

  async #handle(conn: L7Connection, ds: Downstream): Promise<void> {
    const startMs = Date.now();
    const started = performance.now();
    const info: RouteInfo = { retries: 0 };
    const { service, port } = conn.service;
    const span = this.#deps.tracing?.startClient(ds.headers, { namespace: service.namespace, name: service.name, port: port.port }, ds.method);
    try {
      await this.#route(conn, ds, info);
    } catch (err) {
      this.#deps.log.error({ err: (err as Error).message, path: ds.path }, 'l7: request failed in the proxy');
      if (ds.headSent()) ds.abort({ status: 500, flag: '-', message: 'internal proxy error' });
      else ds.reply({ status: 500, flag: '-', message: 'internal proxy error' });
    }
    const outcome = ds.outcome();
    const record: RequestRecord = {
      reporter: 'source',
      startMs,
      durationMs: performance.now() - started,
      protocol: ds.grpc ? 'grpc' : 'http',
      httpVersion: ds.protocol === 'h2' ? '2' : '1.1',
      method: ds.method,
      authority: ds.authority,
      path: ds.path,
      status: outcome.status,
      ...(outcome.grpcStatus !== undefined ? { grpcStatus: outcome.grpcStatus } : {}),
      responseFlags: outcome.flag === '-' && outcome.status === 0 ? 'DC' : outcome.flag,
      requestBytes: info.body?.size ?? 0,
      responseBytes: outcome.bytes,
      retries: info.retries,
      ...(info.requestId ? { requestId: info.requestId } : {}),
      ...(span ? { traceId: span.traceId, traceparent: span.traceparent } : {}),
      ...(info.route ? { route: info.route } : {}),
      source: { pod: conn.local.pod, ip: conn.flow.sourceIP, identity: this.#deps.dialer.identityOf(conn.local.pod).spiffe },
      destination: { service: info.backend ?? { namespace: conn.service.service.namespace, name: conn.service.service.name, port: conn.service.port.port }, ...(info.endpoint ? { endpoint: info.endpoint } : {}) },
      security: conn.flow.security,
      ...(conn.flow.authorization ? { authorization: conn.flow.authorization } : {}),
    };
    span?.end(record);
    for (const observer of this.#deps.observers ?? []) observer.request(record);
  }

  async #route(conn: L7Connection, ds: Downstream, info: RouteInfo): Promise<void> {
    const view = this.#deps.index();
    const clientNamespace = conn.local.pod.namespace;
    const parent = conn.service;
    const service = { namespace: parent.service.namespace, name: parent.service.name };
    let headers = ds.headers;
    forwardHeaders(headers, conn.flow.sourceIP);
    info.requestId = first(headers['x-request-id']);
    const decision = this.#table(view).decide(service, parent.port.port, clientNamespace, {
      method: ds.method,
      path: ds.path,
      headers,
      grpc: ds.grpc,
    });
    if (decision.kind === 'no-match') return ds.reply({ status: 404, flag: 'NR', message: `no route of ${objectKey(service.namespace, service.name)} matches ${ds.method} ${ds.path}` });

    const targets: PolicyTarget[] = [{ kind: 'Service', ...service }];
    if (decision.kind === 'match') targets.unshift({ kind: decision.route.kind, namespace: decision.route.namespace, name: decision.route.name });
    const limited = await this.#policies.apply(view.state, targets, ds.gone);
    if (ds.gone.aborted) return;
    if (limited) return ds.reply(limited);

    // The Service as configured now: the connection's own copy is from when it was accepted.
    let backend: ServiceDestination | undefined = view.serviceDestination(service.namespace, service.name, parent.port.port);
    let rule: RouteRule | undefined;
    let filters: readonly RouteFilter[] = [];
    let authority = ds.authority;
    let path = ds.path;
    if (decision.kind === 'match') {
      rule = decision.rule;
      info.route = `${decision.route.kind} ${objectKey(decision.route.namespace, decision.route.name)}`;
      const ref = pickBackend(rule, this.#random);
      backend = ref && view.serviceDestination(ref.namespace, ref.name, ref.port);
      filters = [...rule.filters, ...(ref?.filters ?? [])];
      for (const f of filters) {
        if (f.type === 'RequestRedirect') {
          const location = redirectLocation(f, { scheme: 'http', host: authority, path }, decision.match);
          return ds.reply({ status: f.statusCode, flag: '-', message: `redirect to ${location}`, headers: { location } });
        }
        if (f.type === 'URLRewrite') ({ host: authority, path } = rewriteUrl(f, { host: authority, path }, decision.match));
        if (f.type === 'RequestHeaderModifier') headers = applyHeaderModifier(headers, f.modifier);
      }
      if (!backend) {
        const what = ref ? `backend ${objectKey(ref.namespace, ref.name)}:${ref.port} does not exist` : 'the rule has no backend with weight';
        return ds.reply({ status: 500, flag: 'NR', message: `${decision.route.kind} ${objectKey(decision.route.namespace, decision.route.name)}: ${what}` });
      }
    }
    // The Service went away while this connection stayed open.
    if (!backend) return ds.reply({ status: 503, flag: 'NR', message: `${objectKey(service.namespace, service.name)} port ${parent.port.port} is no longer configured` });

    const body = new RequestBody(ds.body, ds.bodyEmpty);
    info.body = body;
    info.backend = { namespace: backend.service.namespace, name: backend.service.name, port: backend.port.port };
    const request = { method: ds.method, path, authority, headers, body };
    for (const f of filters) if (f.type === 'RequestMirror') this.#mirror(conn, view, f, request, ds);

    const cluster = this.#cluster(view, clientNamespace, backend);
    const overallMs = minDefined(rule?.timeouts?.requestMs, ds.grpc ? grpcTimeoutMs(first(headers['grpc-timeout'])) : undefined);
    const timeout = overallMs ? AbortSignal.timeout(overallMs) : undefined;
    const signal = timeout ? AbortSignal.any([ds.gone, timeout]) : ds.gone;
    const timedOut = (): LocalReply => ({ status: 504, flag: 'UT', message: `upstream request timeout after ${overallMs} ms`, grpcStatus: 4 });

    const result = await forward(this.#pool, {
      cluster,
      protocol: ds.protocol,
      request,
      retry: retryPolicy(rule),
      ...(rule?.timeouts?.backendRequestMs ? { perTryTimeoutMs: rule.timeouts.backendRequestMs } : {}),
      ...cluster.hashKey(headers, conn.flow.sourceIP),
      connect: (endpoint) => this.#connect(conn, view, endpoint, ds.protocol),
      signal,
    });
    info.retries = Math.max(0, result.attempts - 1);
    if ('endpoint' in result) info.endpoint = result.endpoint;
    if ('local' in result) {
      if (ds.gone.aborted) return;
      conn.flow.responseFlags = result.local.flag;
      return ds.reply(timeout?.aborted ? timedOut() : result.local);
    }
    conn.flow.endpoint = flowEndpoint(result.endpoint);
    conn.flow.security = securityTo(result.endpoint, view.nodeName);
    let out: HeaderMap = result.response.headers;
    for (const f of filters) if (f.type === 'ResponseHeaderModifier') out = applyHeaderModifier(out, f.modifier);
    const onTimeout = () => ds.abort(timedOut());
    timeout?.addEventListener('abort', onTimeout, { once: true });
    await ds.send(result.response, out);
    timeout?.removeEventListener('abort', onTimeout);
    result.done();
  }

  /** `protocol` is told to the destination, which then sees each request; a tunnel (Upgrade,
   * CONNECT) names none and stays bytes there. */
  #connect(conn: L7Connection, view: MeshIndex, endpoint: Endpoint, protocol?: HttpProtocol): { key: string; dial: Dial } {
    const key = `${objectKey(conn.local.pod.namespace, conn.local.pod.name)}|${endpoint.ip}:${endpoint.port}`;
    const dial: Dial = async () => {
      // Decisions of the destination on this connection (refusal, or a request denied on it
      // later) are told on the flow of the client connection that opened it.
      const flow = conn.flow;
      const report = {
        get security() {
          return flow.security;
        },
        set security(s) {
          flow.security = s;
        },
        get authorization() {
          return flow.authorization;
        },
        set authorization(a) {
          flow.authorization = a;
        },
      };
      const r = await this.#deps.dialer.open(view, conn.local, endpoint, conn.flow.sourceIP, report, protocol);
      if ('stream' in r) return r.stream;
      throw new UpstreamError('connect', r.reason, r.flag, r.status);
    };
    return { key, dial };
  }

  #table(view: MeshIndex): RouteTable {
    let table = this.#routes.get(view);
    if (!table) {
      table = new RouteTable(view.state);
      this.#routes.set(view, table);
    }
    return table;
  }

  #cluster(view: MeshIndex, clientNamespace: string, dest: ServiceDestination): Cluster {
    return this.#deps.clusters.get(view, clientNamespace, dest);
  }


  /** A copy to the mirror backend once the body is complete; its answer is discarded. */
  #mirror(conn: L7Connection, view: MeshIndex, f: MirrorFilter, request: UpstreamRequest, ds: Downstream): void {
    if (this.#random() * 100 >= f.percent) return;
    const dest = view.serviceDestination(f.backend.namespace, f.backend.name, f.backend.port);
    if (!dest) return;
    const cluster = this.#cluster(view, conn.local.pod.namespace, dest);
    request.body.whenComplete((bytes) => {
      const headers = { ...request.headers };
      if (bytes.length > 0) headers['content-length'] = String(bytes.length);
      void forward(this.#pool, {
        cluster,
        protocol: ds.protocol,
        request: { ...request, authority: shadowAuthority(request.authority), headers, body: RequestBody.of(bytes) },
        retry: { ...DEFAULT_RETRY, retries: 0 },
        connect: (endpoint) => this.#connect(conn, view, endpoint, ds.protocol),
        signal: AbortSignal.timeout(MIRROR_TIMEOUT_MS),
      }).then((r) => {
        if (!('response' in r)) return;
        r.response.body.once('close', r.done);
        r.response.body.resume();
      });
    });
  }

  /** Upgrade and CONNECT: the request head goes to an endpoint of the Service, then bytes flow. */
  #tunnel(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    const conn = this.#connections.get(socket);
    if (!conn) return void socket.destroy();
    const view = this.#deps.index();
    // The Service as configured now, balanced as its requests are (DestinationRule, ejections).
    const dest = view.serviceDestination(conn.service.service.namespace, conn.service.service.name, conn.service.port.port) ?? conn.service;
    const cluster = this.#cluster(view, conn.local.pod.namespace, dest);
    const endpoint = cluster.endpoints.pick({ ...cluster.hashKey(fromRaw(req.rawHeaders), conn.flow.sourceIP) });
    if (!endpoint) return void socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    void connectionTo(cluster, endpoint, () => this.#connect(conn, view, endpoint).dial()).then(
      async (upstream) => {
        const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
        for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
        upstream.result.write(`${lines.join('\r\n')}\r\n\r\n`);
        if (head.length > 0) upstream.result.write(head);
        await relay(socket, upstream.result);
        upstream.done();
      },
      () => reset(socket),
    );
  }
}

function retryPolicy(rule: RouteRule | undefined): RetryPolicy {
  const r = rule?.retry;
  if (!r) return DEFAULT_RETRY;
  return { retries: r.attempts ?? DEFAULT_RETRY.retries, codes: new Set(r.codes), backoffBaseMs: r.backoffMs ?? DEFAULT_RETRY.backoffBaseMs, asked: true };
}

function minDefined(...values: Array<number | undefined>): number | undefined {
  const set = values.filter((v): v is number => v !== undefined && v > 0);
  return set.length > 0 ? Math.min(...set) : undefined;
}
