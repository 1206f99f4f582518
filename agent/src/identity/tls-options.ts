// Node tls options for the mTLS between node proxies (HBONE): TLS 1.3 only, ALPN h2, the mesh
// root as the only trust anchor, and the peer's SPIFFE identity checked on both sides.
import tls from 'node:tls';
import { NodemeshError } from '../errors.js';
import { identityOfPeer } from './peer.js';
import { formatSpiffeId, isNodeIdentity, nodeIdentity } from './spiffe.js';

/** What a side presents: a key, its certificate chain and the root it trusts. */
export interface TlsCredentials {
  key: string;
  /** Leaf first, then intermediates. */
  cert: string;
  /** The mesh root. */
  ca: string;
}

const common = (creds: TlsCredentials) =>
  ({
    key: creds.key,
    cert: creds.cert,
    ca: creds.ca,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ALPNProtocols: ['h2'],
  }) as const;

/**
 * Server side: a client certificate chaining to the mesh root is required. Check the client's
 * trust domain with identityOfSocket() on 'secureConnection'. On rotation, hand new options to
 * server.setSecureContext().
 */
export function serverTlsOptions(creds: TlsCredentials): tls.TlsOptions {
  return { ...common(creds), requestCert: true, rejectUnauthorized: true };
}

/**
 * Client side, dialling the HBONE server of `node`: the server must present the node identity
 * of our trust domain with a DNS SAN equal to the node name (the SNI sent).
 */
export function clientTlsOptions(creds: TlsCredentials, opts: { node: string; trustDomain: string }): tls.ConnectionOptions {
  const expected = formatSpiffeId(nodeIdentity(opts.trustDomain));
  return {
    ...common(creds),
    servername: opts.node,
    rejectUnauthorized: true,
    checkServerIdentity: (host, cert) => {
      const hostError = tls.checkServerIdentity(host, cert);
      if (hostError) return hostError;
      const id = identityOfPeer(cert, opts.trustDomain);
      if ('reason' in id) return new NodemeshError('NM_ERR_IDENTITY_PEER', `node ${opts.node}: ${id.reason}`);
      if (!isNodeIdentity(id)) {
        return new NodemeshError('NM_ERR_IDENTITY_PEER', `node ${opts.node} presented ${formatSpiffeId(id)}, expected the node identity ${expected}`);
      }
      return undefined;
    },
  };
}
