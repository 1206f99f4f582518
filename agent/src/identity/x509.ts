// X.509 plumbing shared by the CA and the agent: node-forge builds the ASN.1 structures (Node's
// crypto cannot), Node's crypto does the RSA signing (native, ~1 ms instead of forge's ~35 ms
// of blocked event loop).
import crypto, { type KeyObject } from 'node:crypto';
import forge from 'node-forge';

const SHA256_WITH_RSA = forge.pki.oids['sha256WithRSAEncryption'] as string;

// Exported by node-forge's x509.js but missing from @types/node-forge.
const pkiInternals = forge.pki as unknown as {
  getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1;
  getCertificationRequestInfo(csr: forge.pki.CertificateSigningRequest): forge.asn1.Asn1;
};

const toBinary = (asn: forge.asn1.Asn1): Buffer => Buffer.from(forge.asn1.toDer(asn).getBytes(), 'binary');

/** Signs a forge certificate with an RSA key held by Node (sha256WithRSAEncryption). */
export function signCertificate(cert: forge.pki.Certificate, key: KeyObject): void {
  cert.signatureOid = cert.siginfo.algorithmOid = SHA256_WITH_RSA;
  cert.tbsCertificate = pkiInternals.getTBSCertificate(cert);
  cert.signature = crypto.sign('sha256', toBinary(cert.tbsCertificate), key).toString('binary');
}

/** Signs a forge certification request with an RSA key held by Node. */
export function signCsr(csr: forge.pki.CertificateSigningRequest, key: KeyObject): void {
  csr.signatureOid = csr.siginfo.algorithmOid = SHA256_WITH_RSA;
  const info = pkiInternals.getCertificationRequestInfo(csr);
  csr.certificationRequestInfo = info;
  csr.signature = crypto.sign('sha256', toBinary(info), key).toString('binary');
}

/** A CSR asking for the given URI and DNS SANs; subject O=nodemesh. */
export function createCsr(opts: { uris: readonly string[]; dnsNames?: readonly string[]; privateKey: KeyObject }): string {
  const csr = forge.pki.createCertificationRequest();
  const publicKeyPem = crypto.createPublicKey(opts.privateKey).export({ type: 'spki', format: 'pem' }).toString();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  csr.setSubject([{ name: 'organizationName', value: 'nodemesh' }]);
  const altNames = [
    ...opts.uris.map((value) => ({ type: SAN_URI, value })),
    ...(opts.dnsNames ?? []).map((value) => ({ type: SAN_DNS, value })),
  ];
  csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames }] }]);
  signCsr(csr, opts.privateKey);
  return forge.pki.certificationRequestToPem(csr).replace(/\r\n/g, '\n');
}

// GeneralName tags (RFC 5280 4.2.1.6).
export const SAN_DNS = 2;
export const SAN_URI = 6;

/**
 * Positive, minimally encoded DER INTEGER of 16 bytes: the top bit is cleared (else negative)
 * and the first byte is never 0 (else non-minimal), leaving ~127 random bits.
 */
export function randomSerialHex(): string {
  const bytes = crypto.randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) || 0x01;
  return bytes.toString('hex');
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----/g;

/** The PEM certificate blocks of a file or chain, in order. */
export const pemCertificates = (text: string): string[] =>
  (text.match(PEM_CERT) ?? []).map((b) => `${b.replace(/\r\n/g, '\n')}\n`);

/** PEM with \n line ends (forge writes \r\n), so that PEMs compare equal as strings. */
export const certificateToPem = (cert: forge.pki.Certificate): string => forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n');

export interface SanEntry {
  type: string;
  value: string;
}

/**
 * Parses Node's `subjectaltname` string ("URI:spiffe://a, DNS:b"). Node JSON-quotes values
 * that contain separators or special characters, so a plain split on ", " would be fooled.
 */
export function parseSubjectAltName(text: string | undefined): SanEntry[] {
  const entries: SanEntry[] = [];
  if (!text) return entries;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      let end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      next = text.indexOf(', ', end);
    } else {
      next = text.indexOf(', ', colon);
      value = text.slice(colon + 1, next < 0 ? undefined : next);
    }
    entries.push({ type, value });
    if (next < 0) break;
    i = next + 2;
  }
  return entries;
}
