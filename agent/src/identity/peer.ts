// Who is on the other end of an mTLS connection: the SPIFFE id in the peer certificate's URI SAN,
// read after Node's TLS has verified the chain and dates against the mesh root.
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { parseSpiffeId, type SpiffeId } from './spiffe.js';
import { parseSubjectAltName } from './x509.js';

/** The peer's SPIFFE id, or why it has none we accept (an SVID carries exactly one URI SAN). */
export function identityOfPeer(cert: PeerCertificate | X509Certificate, trustDomain: string): SpiffeId | { reason: string } {
  const san = cert instanceof X509Certificate ? cert.subjectAltName : cert.subjectaltname;
  const uris = parseSubjectAltName(san).filter((e) => e.type === 'URI').map((e) => e.value);
  if (uris.length === 0) return { reason: 'the peer certificate has no URI SAN (no SPIFFE identity)' };
  if (uris.length > 1) return { reason: `the peer certificate has ${uris.length} URI SANs (${uris.join(', ')}); an SVID carries exactly one` };
  let id: SpiffeId;
  try {
    id = parseSpiffeId(uris[0]!);
  } catch (err) {
    return { reason: `the peer's URI SAN is not a workload identity: ${(err as Error).message}` };
  }
  if (id.trustDomain !== trustDomain) {
    return { reason: `the peer ${uris[0]} is in trust domain ${id.trustDomain}, not ${trustDomain}` };
  }
  return id;
}

/**
 * The identity of an authorized mTLS peer on a server socket (after 'secureConnection'), or why
 * it must be closed. Node's server has no verify callback, so this check follows the handshake.
 */
export function identityOfSocket(socket: TLSSocket, trustDomain: string): SpiffeId | { reason: string } {
  if (!socket.authorized) {
    return { reason: `the peer certificate was not verified: ${String(socket.authorizationError ?? 'no certificate')}` };
  }
  const cert = socket.getPeerX509Certificate();
  if (!cert) return { reason: 'the peer sent no certificate' };
  return identityOfPeer(cert, trustDomain);
}
