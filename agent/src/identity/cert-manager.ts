// The agent's certificates: one key and short-lived certificate per local identity plus the node
// identity, renewed at half life; the current certificate stays in use while renewal fails.
import crypto, { type KeyObject, X509Certificate } from 'node:crypto';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { NodemeshError } from '../errors.js';
import type { CertStore } from './cert-store.js';
import { identityOfPeer } from './peer.js';
import { formatSpiffeId, nodeIdentity, parseSpiffeId } from './spiffe.js';
import { createCsr, pemCertificates } from './x509.js';

const generateKeyPair = promisify(crypto.generateKeyPair);
// setTimeout fires at once beyond 2^31-1 ms (~24.8 days).
const MAX_TIMER_MS = 2 ** 31 - 1;

/** What the control plane answers to a CSR (MeshCA#sign's result fits). */
export interface SignerResult {
  certChainPem: string;
  rootPem: string;
}

export type Signer = (csrPem: string, ttlSeconds: number) => Promise<SignerResult>;

export interface CertManagerOptions {
  node: string;
  trustDomain: string;
  signer: Signer;
  /** Requested lifetime of each certificate; 24 h by default. */
  lifetimeSeconds?: number;
  log: Logger;
  /** First retry delay after a failed request (doubled per failure, jittered); 1 s by default. */
  retryBaseMs?: number;
  /** Longest retry delay; 60 s by default. */
  retryMaxMs?: number;
  /** Keeps certificates across restarts: a stored one still valid is used until renewed. */
  store?: CertStore;
}

export interface Credentials {
  key: string;
  /** Leaf first, then intermediates. */
  cert: string;
  /** The mesh root. */
  ca: string;
  /** Uppercase hex. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export type CertState = 'pending' | 'valid' | 'renewing' | 'expired' | 'failed';

export interface IdentityStatus {
  identity: string;
  serial?: string;
  notBefore?: Date;
  notAfter?: Date;
  state: CertState;
  lastError?: string;
}

interface Waiter {
  resolve: (c: Credentials) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface Entry {
  identity: string;
  dnsNames: string[];
  current?: Credentials;
  /** Key and CSR of the request under way, kept across retries. */
  pending?: { privateKey: KeyObject; csrPem: string };
  inFlight: boolean;
  failures: number;
  lastError?: string;
  timer?: NodeJS.Timeout;
  expiryTimer?: NodeJS.Timeout;
  removed: boolean;
  waiters: Set<Waiter>;
}

export class CertManager {
  readonly nodeIdentity: string;
  readonly #trustDomain: string;
  readonly #signer: Signer;
  readonly #lifetimeSeconds: number;
  readonly #retryBaseMs: number;
  readonly #retryMaxMs: number;
  readonly #log: Logger;
  readonly #store: CertStore | undefined;
  readonly #entries = new Map<string, Entry>();
  readonly #rotateListeners = new Set<(identity: string) => void>();
  #stopped = false;

  constructor(opts: CertManagerOptions) {
    this.#trustDomain = opts.trustDomain;
    this.#signer = opts.signer;
    this.#lifetimeSeconds = opts.lifetimeSeconds ?? 86400;
    this.#retryBaseMs = opts.retryBaseMs ?? 1000;
    this.#retryMaxMs = opts.retryMaxMs ?? 60_000;
    this.#log = opts.log;
    this.#store = opts.store;
    this.nodeIdentity = formatSpiffeId(nodeIdentity(opts.trustDomain));
    this.#add(this.nodeIdentity, [opts.node]);
  }

  /**
   * The workload identities (SPIFFE URIs) this node needs: new ones are requested, those no
   * longer listed are dropped. The node identity is always held. Throws
   * NM_ERR_IDENTITY_SPIFFE_ID, changing nothing, if one is malformed or of another trust domain.
   */
  setIdentities(ids: Iterable<string>): void {
    const wanted = new Set<string>([this.nodeIdentity]);
    for (const uri of ids) {
      const id = parseSpiffeId(uri);
      if (id.trustDomain !== this.#trustDomain) {
        throw new NodemeshError('NM_ERR_IDENTITY_SPIFFE_ID', `${uri} is not in this mesh's trust domain ${this.#trustDomain}`);
      }
      wanted.add(formatSpiffeId(id));
    }
    for (const [identity, entry] of this.#entries) {
      if (wanted.has(identity)) continue;
      this.#entries.delete(identity);
      entry.removed = true;
      this.#store?.remove(identity);
      clearTimeout(entry.timer);
      clearTimeout(entry.expiryTimer);
      for (const w of entry.waiters) this.#settle(entry, w, new NodemeshError('NM_ERR_IDENTITY_NOT_READY', `${identity} is no longer needed on this node`));
      this.#log.info({ identity }, `dropped certificate of ${identity}`);
    }
    for (const identity of wanted) if (!this.#entries.has(identity)) this.#add(identity, []);
  }

  /** Key, chain and root for `identity`, if a certificate valid now is held. */
  credentials(identity: string): Credentials | undefined {
    const current = this.#entries.get(identity)?.current;
    const now = Date.now();
    return current && current.notBefore.getTime() <= now && now < current.notAfter.getTime() ? current : undefined;
  }

  nodeCredentials(): Credentials | undefined {
    return this.credentials(this.nodeIdentity);
  }

  /**
   * Resolves with the credentials once a valid certificate is held; rejects after `timeoutMs`.
   * The only timer left ref'd: it is bounded, and someone awaits it (an unref'd one would let
   * a start-up `await ready()` end the process silently when the control plane is down).
   */
  ready(identity: string, timeoutMs: number): Promise<Credentials> {
    const entry = this.#entries.get(identity);
    if (!entry) {
      return Promise.reject(new NodemeshError('NM_ERR_IDENTITY_NOT_READY', `${identity} was not requested (setIdentities)`));
    }
    const now = this.credentials(identity);
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const why = entry.lastError ? `last error: ${entry.lastError}` : 'the control plane has not answered';
          this.#settle(entry, waiter, new NodemeshError('NM_ERR_IDENTITY_NOT_READY', `no certificate for ${identity} after ${timeoutMs} ms; ${why}`));
        }, timeoutMs),
      };
      entry.waiters.add(waiter);
    });
  }

  /** `listener(identity)` runs whenever an identity gets a new certificate (the first included). */
  onRotate(listener: (identity: string) => void): () => void {
    this.#rotateListeners.add(listener);
    return () => this.#rotateListeners.delete(listener);
  }

  status(): IdentityStatus[] {
    const now = Date.now();
    return [...this.#entries.values()].map((e) => {
      const c = e.current;
      let state: CertState;
      if (!c) state = e.lastError ? 'failed' : 'pending';
      else if (now >= c.notAfter.getTime()) state = 'expired';
      else state = e.inFlight || e.lastError ? 'renewing' : 'valid';
      return {
        identity: e.identity,
        ...(c && { serial: c.serial, notBefore: c.notBefore, notAfter: c.notAfter }),
        state,
        ...(e.lastError !== undefined && { lastError: e.lastError }),
      };
    });
  }

  stop(): void {
    this.#stopped = true;
    for (const entry of this.#entries.values()) {
      clearTimeout(entry.timer);
      clearTimeout(entry.expiryTimer);
      for (const w of entry.waiters) this.#settle(entry, w, new NodemeshError('NM_ERR_IDENTITY_NOT_READY', 'certificate manager stopped'));
    }
  }

  #add(identity: string, dnsNames: string[]): void {
    const entry: Entry = { identity, dnsNames, inFlight: false, failures: 0, removed: false, waiters: new Set() };
    this.#entries.set(identity, entry);
    if (!this.#restore(entry)) void this.#issue(entry);
  }

  /** Installs the stored certificate of the entry if it passes the checks of a fresh answer. */
  #restore(entry: Entry): boolean {
    const stored = this.#store?.load(entry.identity);
    if (!stored) return false;
    try {
      const creds = this.#accept(entry, stored, crypto.createPrivateKey(stored.key));
      this.#install(entry, creds, 'restored');
      return true;
    } catch (err) {
      this.#log.info({ identity: entry.identity, err: (err as Error).message }, `stored certificate of ${entry.identity} not usable; requesting a new one`);
      return false;
    }
  }

  async #issue(entry: Entry): Promise<void> {
    if (this.#stopped || entry.removed || entry.inFlight) return;
    entry.inFlight = true;
    try {
      // Async keygen runs on the libuv pool: RSA 2048 takes ~100 ms, too long to block the proxy.
      // A fresh key per certificate: a leaked key is only good until the next rotation.
      // Retries reuse the pending key and CSR: keygen is the expensive part of an attempt.
      if (!entry.pending) {
        const { privateKey } = await generateKeyPair('rsa', { modulusLength: 2048 });
        entry.pending = { privateKey, csrPem: createCsr({ uris: [entry.identity], dnsNames: entry.dnsNames, privateKey }) };
      }
      const { privateKey, csrPem } = entry.pending;
      const answer = await this.#signer(csrPem, this.#lifetimeSeconds);
      if (this.#stopped || entry.removed) return;
      const creds = this.#accept(entry, answer, privateKey);
      delete entry.pending;
      this.#store?.save({ identity: entry.identity, key: creds.key, certChainPem: answer.certChainPem, rootPem: answer.rootPem });
      this.#install(entry, creds, entry.current ? 'renewed' : 'got');
    } catch (err) {
      if (this.#stopped || entry.removed) return;
      this.#failed(entry, err as Error);
    } finally {
      entry.inFlight = false;
    }
  }

  /** Checks the answer is what we asked for before using it. */
  #accept(entry: Entry, answer: SignerResult, privateKey: KeyObject): Credentials {
    const bad = (why: string) => new NodemeshError('NM_ERR_IDENTITY_BAD_CERT', `certificate issued for ${entry.identity}: ${why}`);
    const chainPem = pemCertificates(answer.certChainPem);
    if (chainPem.length === 0) throw bad('the control plane answered with no PEM certificate');
    const chain = chainPem.map((pem) => new X509Certificate(pem));
    const root = new X509Certificate(answer.rootPem);
    const leaf = chain[0]!;
    if (!leaf.checkPrivateKey(privateKey)) throw bad('it does not match the key of our CSR');
    const id = identityOfPeer(leaf, this.#trustDomain);
    if ('reason' in id) throw bad(id.reason);
    if (formatSpiffeId(id) !== entry.identity) throw bad(`it names ${formatSpiffeId(id)}`);
    for (const dns of entry.dnsNames) if (leaf.checkHost(dns) === undefined) throw bad(`it lacks the DNS SAN ${dns}`);
    const issuers = [...chain.slice(1), root];
    for (let i = 0; i < chain.length; i++) {
      if (!chain[i]!.checkIssued(issuers[i]!) || !chain[i]!.verify(issuers[i]!.publicKey)) {
        throw bad('it does not chain to the mesh root the control plane sent');
      }
    }
    const notAfter = new Date(leaf.validTo);
    if (notAfter.getTime() <= Date.now()) throw bad(`it expired on ${notAfter.toISOString()}`);
    return {
      key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      cert: chainPem.join(''),
      ca: answer.rootPem,
      serial: leaf.serialNumber,
      notBefore: new Date(leaf.validFrom),
      notAfter,
    };
  }

  #install(entry: Entry, creds: Credentials, how: 'got' | 'renewed' | 'restored'): void {
    entry.current = creds;
    entry.failures = 0;
    delete entry.lastError;
    const now = Date.now();
    // Half of the remaining life, not of notBefore..notAfter: notBefore is back-dated for clock
    // skew, which for short lifetimes would put "half life" in the past. ±5% jitter spreads
    // the renewals of identities issued together.
    // At least 1 s: a CA close to its own expiry caps notAfter, and must not cause a busy loop.
    const renewIn = Math.max(1000, ((creds.notAfter.getTime() - now) / 2) * (0.95 + Math.random() * 0.1));
    this.#schedule(entry, renewIn);
    clearTimeout(entry.expiryTimer);
    entry.expiryTimer = setTimeout(() => {
      if (entry.current === creds) {
        this.#log.error(
          { identity: entry.identity, serial: creds.serial, lastError: entry.lastError },
          `certificate of ${entry.identity} expired and was not renewed; new connections with this identity fail until the control plane answers`,
        );
      }
    }, Math.min(creds.notAfter.getTime() - now, MAX_TIMER_MS)).unref();
    this.#log.info(
      { identity: entry.identity, serial: creds.serial, notAfter: creds.notAfter.toISOString(), renewInMs: Math.round(renewIn) },
      how === 'restored' ? `using the stored certificate of ${entry.identity}` : `${how} certificate for ${entry.identity}`,
    );
    for (const w of entry.waiters) this.#settle(entry, w, creds);
    for (const listener of this.#rotateListeners) {
      try {
        listener(entry.identity);
      } catch (err) {
        this.#log.error({ err, identity: entry.identity }, 'certificate rotation listener failed');
      }
    }
  }

  #failed(entry: Entry, err: Error): void {
    entry.failures += 1;
    entry.lastError = err.message;
    const ceiling = Math.min(this.#retryMaxMs, this.#retryBaseMs * 2 ** (entry.failures - 1));
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    const valid = this.credentials(entry.identity);
    this.#log.warn(
      { identity: entry.identity, failures: entry.failures, retryInMs: Math.round(delay), err: err.message },
      valid
        ? `renewing the certificate of ${entry.identity} failed; still using serial ${valid.serial} until ${valid.notAfter.toISOString()}`
        : `requesting a certificate for ${entry.identity} failed; is the control plane reachable?`,
    );
    this.#schedule(entry, delay);
  }

  #schedule(entry: Entry, delayMs: number): void {
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => void this.#issue(entry), Math.max(0, Math.min(delayMs, MAX_TIMER_MS))).unref();
  }

  #settle(entry: Entry, waiter: Waiter, outcome: Credentials | Error): void {
    clearTimeout(waiter.timer);
    entry.waiters.delete(waiter);
    if (outcome instanceof Error) waiter.reject(outcome);
    else waiter.resolve(outcome);
  }
}
