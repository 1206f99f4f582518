// Agent side of the config stream: holds one stream to the controller open for this node,
// hands each snapshot to the configuration source and answers ACK or NACK, reconnects with
// jittered backoff; also carries the certificate requests of the CertManager.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { retryBackoffMs } from '../balance/backoff.js';
import { NodemeshError } from '../errors.js';
import type { SignerResult } from '../identity/cert-manager.js';
import type { Rejection } from '../state/model.js';
import { bearerMetadata, meshControl, statusName, type ConfigRequest, type ConfigSnapshot, type ConfigUpdate, type MeshControlClient } from './stream-proto.js';
import { resourceIdentity, type ViewResource } from './view-resource.js';

export type { ConfigSnapshot } from './stream-proto.js';

export interface ConfigStreamClientOptions {
  /** The controller, "host:port". */
  address: string;
  /** The name the controller's certificate carries (e.g. nodemesh-controller.nodemesh-system.svc). */
  serverName: string;
  /** The root that issued the controller's certificate. */
  rootPem: string;
  /** The service-account token; called on every (re)connect and request, as kubelet rotates it. */
  token: () => string;
  node: string;
  /** Applies a snapshot; the rejections it returns are the NACK (none: ACK). */
  onSnapshot: (snapshot: ConfigSnapshot) => Rejection[];
  log: Logger;
  /** Reconnect delays: the n-th consecutive failure waits a random time below min(base × 2^(n-1), max). */
  backoff?: { baseMs: number; maxMs: number };
  /** Deadline of a certificate request; 10 s by default. */
  signTimeoutMs?: number;
}

type ConfigCall = grpc.ClientDuplexStream<ConfigRequest, ConfigUpdate>;

const DEFAULT_BACKOFF = { baseMs: 1000, maxMs: 30_000 };

export class ConfigStreamClient {
  readonly #opts: ConfigStreamClientOptions;
  readonly #backoff: { baseMs: number; maxMs: number };
  readonly #client: MeshControlClient;
  #call: ConfigCall | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The last snapshot version accepted whole; 0 after a NACK, so a reconnect resends it. */
  #held = 0;
  /** The view as last received, by resource identity, and its version: what an incremental update applies to. */
  #view = new Map<string, ViewResource>();
  #viewVersion = 0;
  #failures = 0;
  /** The kind of the last failure, to log a failure once and not at every retry. */
  #problem: string | undefined;
  #connected = false;
  #started = false;
  #stopped = false;

  constructor(opts: ConfigStreamClientOptions) {
    this.#opts = opts;
    this.#backoff = opts.backoff ?? DEFAULT_BACKOFF;
    const { Client } = meshControl();
    // The channel's own reconnect backoff (up to 120 s by default) would keep failing calls
    // long after the controller is back; keep it within the stream's backoff.
    this.#client = new Client(opts.address, grpc.credentials.createSsl(Buffer.from(opts.rootPem)), {
      'grpc.ssl_target_name_override': opts.serverName,
      'grpc.default_authority': opts.serverName,
      'grpc.initial_reconnect_backoff_ms': this.#backoff.baseMs,
      'grpc.max_reconnect_backoff_ms': this.#backoff.maxMs,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
    });
  }

  /** The stream is open: the controller accepted this agent. */
  get connected(): boolean {
    return this.#connected;
  }

  /**
   * `held`: the snapshot already held (on disk) and accepted whole, which the controller need
   * not resend; its changes may then come as incremental updates.
   */
  start(held?: ConfigSnapshot): void {
    if (this.#started) return;
    this.#started = true;
    if (held) {
      this.#held = this.#viewVersion = held.version;
      this.#view = new Map(held.resources.map((r) => [resourceIdentity(r), r]));
    }
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const call = this.#call;
    this.#call = undefined;
    this.#connected = false;
    call?.cancel();
    this.#client.close();
  }

  /**
   * Asks the controller to sign a CSR (a CertManager Signer). Throws NM_ERR_CONTROL_SIGN with
   * the gRPC status and the controller's reason.
   */
  sign(csrPem: string, ttlSeconds: number): Promise<SignerResult> {
    const { address, signTimeoutMs = 10_000 } = this.#opts;
    const failed = (why: string, cause?: unknown): NodemeshError =>
      new NodemeshError('NM_ERR_CONTROL_SIGN', `controller ${address} did not sign the certificate: ${why}`, { cause });
    let metadata: grpc.Metadata;
    try {
      metadata = bearerMetadata(this.#opts.token());
    } catch (err) {
      return Promise.reject(failed(`cannot read the service-account token: ${(err as Error).message}`, err));
    }
    return new Promise((resolve, reject) => {
      this.#client.signCertificate({ csrPem, ttlSeconds }, metadata, { deadline: Date.now() + signTimeoutMs }, (err, answer) => {
        if (err) reject(failed(`${statusName(err.code)}: ${err.details}`, err));
        else resolve({ certChainPem: answer!.certChainPem, rootPem: answer!.rootPem });
      });
    });
  }

  #connect(): void {
    if (this.#stopped) return;
    let metadata: grpc.Metadata;
    try {
      metadata = bearerMetadata(this.#opts.token());
    } catch (err) {
      return this.#retry('token', `cannot read the service-account token: ${(err as Error).message}`);
    }
    const call = this.#client.streamConfig(metadata);
    this.#call = call;
    // The controller sends headers only once it accepted this agent for this node.
    call.on('metadata', () => {
      if (call !== this.#call) return;
      this.#connected = true;
      this.#failures = 0;
      const fields = { controller: this.#opts.address, node: this.#opts.node, holds: this.#held };
      this.#opts.log.info(fields, this.#problem === undefined ? 'config stream to the controller open' : 'config stream to the controller restored');
      this.#problem = undefined;
    });
    call.on('data', (update: ConfigUpdate) => {
      if (call !== this.#call) return;
      const snapshot = this.#merge(update);
      if (snapshot) this.#answer(call, snapshot);
      else this.#resync(call, update);
    });
    // Every end is reported by 'status'; 'error' only duplicates it for non-OK codes.
    call.on('error', () => undefined);
    call.on('status', (status: grpc.StatusObject) => {
      if (call !== this.#call) return;
      this.#call = undefined;
      this.#connected = false;
      this.#retry(statusName(status.code), `${statusName(status.code)}: ${status.details}`);
    });
    // The controller's next update applies to what this agent says it holds.
    this.#viewVersion = this.#held;
    call.write({ node: this.#opts.node, version: this.#held, rejections: [] });
  }

  /** The whole view the update makes; undefined for an incremental one on another base than the view held. */
  #merge(update: ConfigUpdate): ConfigSnapshot | undefined {
    if (update.incremental) {
      if (update.baseVersion !== this.#viewVersion) return undefined;
      for (const key of update.removed) this.#view.delete(resourceIdentity(key));
    } else {
      this.#view = new Map();
    }
    for (const r of update.resources) this.#view.set(resourceIdentity(r), r);
    this.#viewVersion = update.version;
    return { version: update.version, resources: [...this.#view.values()] };
  }

  /** An update this agent cannot apply: reconnect saying it holds nothing, to get the whole view. */
  #resync(call: ConfigCall, update: ConfigUpdate): void {
    this.#opts.log.warn(
      { version: update.version, baseVersion: update.baseVersion, holds: this.#viewVersion },
      `incremental update ${update.version} applies to version ${update.baseVersion}, not to the ${this.#viewVersion} held; asking for the whole view`,
    );
    this.#held = 0;
    this.#call = undefined;
    this.#connected = false;
    call.cancel();
    this.#connect();
  }

  #answer(call: ConfigCall, snapshot: ConfigSnapshot): void {
    const { log, node } = this.#opts;
    let rejections: Rejection[];
    try {
      rejections = this.#opts.onSnapshot(snapshot);
    } catch (err) {
      log.error({ version: snapshot.version, err: (err as Error).message }, 'applying a snapshot failed; NACKing it');
      rejections = [{ resource: `snapshot ${snapshot.version}`, field: '', reason: `the agent failed to apply it: ${(err as Error).message}` }];
    }
    this.#held = rejections.length ? 0 : snapshot.version;
    this.#failures = 0;
    call.write({ node, version: snapshot.version, rejections });
    log.debug({ version: snapshot.version, rejected: rejections.length }, rejections.length ? 'snapshot NACKed' : 'snapshot ACKed');
  }

  /** `kind` is what a change of state means: a status code, or "token". */
  #retry(kind: string, problem: string): void {
    if (this.#stopped) return;
    this.#failures++;
    const delay = retryBackoffMs(this.#failures, this.#backoff.baseMs, this.#backoff.maxMs);
    const fields = { controller: this.#opts.address, node: this.#opts.node, failures: this.#failures, retryInMs: delay };
    // A new kind of failure is worth a warning; the same one again at every retry is not
    // (details such as the last connection error change between retries).
    if (kind !== this.#problem) this.#opts.log.warn(fields, `config stream to the controller failed: ${problem}; retrying with backoff`);
    else this.#opts.log.debug(fields, `config stream to the controller still failing: ${problem}`);
    this.#problem = kind;
    this.#timer = setTimeout(() => this.#connect(), delay);
  }
}
