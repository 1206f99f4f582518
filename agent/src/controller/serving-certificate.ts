// The certificate the controller presents to agents, replaceable while it serves: grpc-js
// reads it from a CertificateProvider, so a renewed certificate applies to new connections
// and the open config streams go on.
import * as grpc from '@grpc/grpc-js';

export interface ServingPair {
  key: string;
  cert: string;
}

type IdentityUpdate = grpc.experimental.IdentityCertificateUpdate;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

export class ServingCertificate implements grpc.experimental.CertificateProvider {
  #identity: IdentityUpdate;
  readonly #listeners = new Set<IdentityListener>();

  constructor(pair: ServingPair) {
    this.#identity = identityOf(pair);
  }

  /** New TLS connections present this pair from now on; open ones keep the one they had. */
  replace(pair: ServingPair): void {
    this.#identity = identityOf(pair);
    for (const listener of this.#listeners) listener(this.#identity);
  }

  /** Server credentials that follow replace(). No client certificate is asked: agents authenticate with tokens. */
  credentials(): grpc.ServerCredentials {
    return grpc.experimental.createCertificateProviderServerCredentials(this, null, false);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#listeners.add(listener);
    // Not at once: grpc-js registers its own watcher only after adding this listener.
    process.nextTick(() => this.#listeners.has(listener) && listener(this.#identity));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#listeners.delete(listener);
  }

  /** No CA: the server verifies no client certificate. */
  addCaCertificateListener(): void {}

  removeCaCertificateListener(): void {}
}

/**
 * Calls renew at half of the time left before notAfter, then again for the date it returns;
 * never sooner than minDelayMs (a CA near its end caps every lifetime).
 */
export function renewAtHalfLife(notAfter: Date, renew: () => Date, minDelayMs = 60_000): { stop: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const schedule = (until: Date): void => {
    timer = setTimeout(() => schedule(renew()), Math.max(minDelayMs, (until.getTime() - Date.now()) / 2)).unref();
  };
  schedule(notAfter);
  return { stop: () => clearTimeout(timer) };
}

const identityOf = ({ key, cert }: ServingPair): IdentityUpdate => ({ privateKey: Buffer.from(key), certificate: Buffer.from(cert) });
