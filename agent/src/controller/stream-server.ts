// Controller side of the config stream (:15012, TLS): authenticates each agent by its
// service-account token, streams its node's view as versioned snapshots, records ACK/NACK,
// and signs workload certificates on the same server.
import fs from 'node:fs';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { NodemeshError } from '../errors.js';
import type { SignerResult } from '../identity/cert-manager.js';
import type { Rejection } from '../state/model.js';
import {
  bearerToken,
  meshControl,
  type CertificateRequest,
  type CertificateResponse,
  type ConfigRequest,
  type ConfigUpdate,
} from '../control/stream-proto.js';
import { ServingCertificate, type ServingPair } from './serving-certificate.js';
import { diffResources, type ViewResource } from '../control/view-resource.js';

export interface NodeView {
  resources: readonly ViewResource[];
  /** Changes when, and only when, the resources change. */
  hash: string;
}

export interface ConfigStreamServerOptions {
  /** The server's first TLS key and certificate chain (PEM); replaceServingCertificate() renews them. */
  credentials: ServingPair;
  /** Checks a service-account token (TokenReview): the node the agent runs on, or why not. */
  authenticate: (token: string) => Promise<{ node: string } | { reason: string }>;
  /** The node's current view; undefined when the controller does not know the node. */
  viewOf: (node: string) => NodeView | undefined;
  /** Signs for `node`, or throws with the reason (the node-authorization rule lives here). */
  sign: (node: string, csrPem: string, ttlSeconds: number) => Promise<SignerResult>;
  log: Logger;
}

export interface AgentStreamStatus {
  node: string;
  /** The agent's address as gRPC sees it, e.g. "10.0.0.7:43122". */
  peer: string;
  connectedSince: Date;
  /** 0 until the first snapshot was sent (or found already held). */
  versionSent: number;
  versionAcked: number;
  /** The last NACK, until a later version is ACKed. */
  nack?: { version: number; rejections: Rejection[] };
}

type Call = grpc.ServerDuplexStream<ConfigRequest, ConfigUpdate>;

interface AgentStream extends AgentStreamStatus {
  call: Call;
  /** The view the agent has at versionSent (sent on this stream, or held as it said): the base of an incremental update. */
  sent?: readonly ViewResource[];
  /** A write is waiting for 'drain': the newest view is sent then, older ones are skipped. */
  blocked: boolean;
}

const fail = (code: grpc.status, details: string): grpc.ServerErrorResponse => Object.assign(new Error(details), { code, details });

export class ConfigStreamServer {
  readonly #opts: ConfigStreamServerOptions;
  readonly #server: grpc.Server;
  readonly #serving: ServingCertificate;
  readonly #streams = new Set<AgentStream>();
  /** Per node, the version given to its current view hash. */
  readonly #versions = new Map<string, { hash: string; version: number }>();
  #address: string | undefined;

  constructor(opts: ConfigStreamServerOptions) {
    this.#opts = opts;
    this.#serving = new ServingCertificate(opts.credentials);
    // Pings find agents that vanished without closing their connection (node powered off),
    // so that status() does not list them for hours.
    this.#server = new grpc.Server({ 'grpc.keepalive_time_ms': 30_000, 'grpc.keepalive_timeout_ms': 10_000 });
    this.#server.addService(meshControl().service, {
      streamConfig: (call: Call) => void this.#serve(call),
      signCertificate: (
        call: grpc.ServerUnaryCall<CertificateRequest, CertificateResponse>,
        done: grpc.sendUnaryData<CertificateResponse>,
      ) => void this.#sign(call, done),
    });
  }

  /** "host:port" (the bound port when 0 was asked) or "unix:PATH" once listening. */
  get address(): string | undefined {
    return this.#address;
  }

  /**
   * `target`: "host:port" or "unix:PATH" (a socket file, reachable across network namespaces).
   * Throws NM_ERR_CONTROL_LISTEN when it cannot be bound.
   */
  async listen(target: string): Promise<void> {
    if (target.startsWith('unix:')) await removeStaleSocket(target.slice('unix:'.length));
    const creds = this.#serving.credentials();
    const bound = await new Promise<number>((resolve, reject) => {
      this.#server.bindAsync(target, creds, (err, p) => (err ? reject(err) : resolve(p)));
    }).catch((err: Error) => {
      throw new NodemeshError(
        'NM_ERR_CONTROL_LISTEN',
        `cannot listen for agents on ${target}: ${err.message}; is another controller running there?`,
        { cause: err },
      );
    });
    this.#address = target.startsWith('unix:') ? target : target.replace(/:\d+$/, `:${bound}`);
    this.#opts.log.info({ address: this.#address }, 'controller listening for agents (config stream and certificate signing)');
  }

  /** New connections get this key and certificate; the open streams go on. */
  replaceServingCertificate(pair: ServingPair): void {
    this.#serving.replace(pair);
  }

  /** Views may have changed: every connected agent whose view hash changed gets a new snapshot. */
  refresh(): void {
    for (const stream of this.#streams) this.#sync(stream);
  }

  status(): AgentStreamStatus[] {
    return [...this.#streams]
      .map(({ node, peer, connectedSince, versionSent, versionAcked, nack }) => ({ node, peer, connectedSince, versionSent, versionAcked, ...(nack ? { nack } : {}) }))
      .sort((a, b) => a.node.localeCompare(b.node) || a.peer.localeCompare(b.peer));
  }

  /** Ends every stream at once: agents keep their configuration and reconnect to the next controller. */
  close(): void {
    this.#server.forceShutdown();
    this.#streams.clear();
  }

  async #serve(call: Call): Promise<void> {
    const { log } = this.#opts;
    const peer = call.getPeer();
    const refuse = (code: grpc.status, details: string, node?: string): void => {
      log.warn({ peer, node, code: grpc.status[code] }, `config stream refused: ${details}`);
      call.emit('error', fail(code, details));
    };
    const first = firstMessage(call);
    const node = await this.#authenticate(call.metadata, peer).catch((err: grpc.ServerErrorResponse) => {
      refuse(err.code!, err.details!);
      return undefined;
    });
    if (node === undefined) return;
    const hello = await first;
    if (call.cancelled) return;
    if (!hello?.node) return refuse(grpc.status.INVALID_ARGUMENT, 'the first ConfigRequest must name the node', node);
    if (hello.node !== node) {
      return refuse(grpc.status.PERMISSION_DENIED, `the agent of node ${node} may not read the view of node ${hello.node}`, node);
    }
    const view = this.#opts.viewOf(node);
    if (!view) return refuse(grpc.status.NOT_FOUND, `node ${node} is not known to the controller (no Node object seen yet)`, node);

    const stream: AgentStream = { node, peer, connectedSince: new Date(), versionSent: 0, versionAcked: 0, call, blocked: false };
    this.#streams.add(stream);
    const gone = (): void => {
      if (this.#streams.delete(stream)) log.info({ node, peer }, `agent of node ${node} disconnected`);
    };
    call.on('cancelled', gone);
    call.on('end', () => {
      gone();
      call.end();
    });
    call.on('data', (answer: ConfigRequest) => this.#answered(stream, answer));
    call.sendMetadata(new grpc.Metadata());
    log.info({ node, peer, holds: hello.version }, `agent of node ${node} connected`);

    const version = this.#versionOf(node, view);
    if (hello.version === version) {
      stream.versionSent = stream.versionAcked = version;
      stream.sent = view.resources;
      log.debug({ node, peer, version }, 'agent already holds the current view; not resent');
    } else {
      this.#send(stream, version, view);
    }
    call.resume();
  }

  /** The token's node; rejects with the gRPC status to answer. */
  async #authenticate(metadata: grpc.Metadata, peer: string): Promise<string> {
    const token = bearerToken(metadata);
    if (!token) throw fail(grpc.status.UNAUTHENTICATED, 'no "authorization: Bearer <service-account token>" metadata');
    let verdict: { node: string } | { reason: string };
    try {
      verdict = await this.#opts.authenticate(token);
    } catch (err) {
      this.#opts.log.error({ peer, err: (err as Error).message }, 'cannot check an agent token');
      throw fail(grpc.status.UNAVAILABLE, `the controller cannot check the token now: ${(err as Error).message}`);
    }
    if ('reason' in verdict) throw fail(grpc.status.UNAUTHENTICATED, `token refused: ${verdict.reason}`);
    return verdict.node;
  }

  #sync(stream: AgentStream): void {
    if (stream.blocked) return;
    const view = this.#opts.viewOf(stream.node);
    // A node that disappeared keeps its agent's last snapshot: nothing better to send.
    if (!view) return;
    const version = this.#versionOf(stream.node, view);
    if (version !== stream.versionSent) this.#send(stream, version, view);
  }

  /** The changes since the view the agent has when they are fewer than the whole view, else the whole view. */
  #send(stream: AgentStream, version: number, view: NodeView): void {
    const resources = view.resources;
    const delta = stream.sent && diffResources(stream.sent, resources);
    const incremental = delta !== undefined && delta.changed.length + delta.removed.length < resources.length;
    const update: ConfigUpdate = incremental
      ? { version, resources: delta.changed, incremental, baseVersion: stream.versionSent, removed: delta.removed }
      : { version, resources: [...resources], incremental, baseVersion: 0, removed: [] };
    const fields = { node: stream.node, peer: stream.peer, version, resources: resources.length };
    if (incremental) {
      const changes = { ...fields, changed: delta.changed.length, removed: delta.removed.length, baseVersion: stream.versionSent };
      this.#opts.log.info(changes, `snapshot ${version} sent to the agent of node ${stream.node}: the changes since ${stream.versionSent}`);
    } else {
      this.#opts.log.info(fields, `snapshot ${version} sent to the agent of node ${stream.node}`);
    }
    stream.versionSent = version;
    stream.sent = resources;
    if (stream.call.write(update)) return;
    stream.blocked = true;
    stream.call.once('drain', () => {
      stream.blocked = false;
      this.#sync(stream);
    });
  }

  /**
   * A new hash gets the controller's clock in ms, or one more than the node's last version
   * if that is larger: increasing per node, also across controller restarts.
   */
  #versionOf(node: string, view: NodeView): number {
    const known = this.#versions.get(node);
    if (known?.hash === view.hash) return known.version;
    const version = Math.max((known?.version ?? 0) + 1, Date.now());
    this.#versions.set(node, { hash: view.hash, version });
    return version;
  }

  #answered(stream: AgentStream, answer: ConfigRequest): void {
    const { log } = this.#opts;
    const { node, peer } = stream;
    const { version, rejections } = answer;
    if (rejections.length === 0) {
      stream.versionAcked = Math.max(stream.versionAcked, version);
      if (stream.nack && stream.nack.version <= version) delete stream.nack;
      log.debug({ node, peer, version }, `agent of node ${node} ACKed version ${version}`);
      return;
    }
    stream.nack = { version, rejections };
    for (const r of rejections) {
      log.warn(
        { node, peer, version, resource: r.resource, field: r.field, reason: r.reason },
        `agent of node ${node} NACKed version ${version}: ${r.resource} rejected: ${r.field ? `${r.field} ` : ''}${r.reason}`,
      );
    }
  }

  async #sign(call: grpc.ServerUnaryCall<CertificateRequest, CertificateResponse>, done: grpc.sendUnaryData<CertificateResponse>): Promise<void> {
    const peer = call.getPeer();
    let node: string;
    try {
      node = await this.#authenticate(call.metadata, peer);
    } catch (err) {
      this.#opts.log.warn({ peer, err: (err as Error).message }, 'certificate request refused');
      return done(err as grpc.ServerErrorResponse);
    }
    const { csrPem, ttlSeconds } = call.request;
    try {
      const { certChainPem, rootPem } = await this.#opts.sign(node, csrPem, ttlSeconds);
      done(null, { certChainPem, rootPem });
    } catch (err) {
      const code = (err as NodemeshError).code === 'NM_ERR_IDENTITY_CSR' ? grpc.status.INVALID_ARGUMENT : grpc.status.PERMISSION_DENIED;
      done(fail(code, (err as Error).message));
    }
  }
}

/**
 * The agent's first message, read before the handler listens for answers: the stream is
 * paused after it so that no answer is lost meanwhile. undefined if the call ends first.
 */
function firstMessage(call: Call): Promise<ConfigRequest | undefined> {
  return new Promise((resolve) => {
    call.once('data', (message: ConfigRequest) => {
      call.pause();
      resolve(message);
    });
    call.once('end', () => resolve(undefined));
    call.once('cancelled', () => resolve(undefined));
  });
}

/** A socket file left by a controller that was killed answers no connection: remove it. */
async function removeStaleSocket(path: string): Promise<void> {
  if (!fs.statSync(path, { throwIfNoEntry: false })?.isSocket()) return;
  const refused = await new Promise<boolean>((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => (probe.destroy(), resolve(false)));
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
  if (refused) fs.rmSync(path, { force: true });
}
