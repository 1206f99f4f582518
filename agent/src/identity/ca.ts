// The mesh CA, run by the control plane: the root of trust of every HBONE connection. It signs a
// node's CSR only for identities that node may hold; its key never leaves this class.
import crypto, { type KeyObject, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import forge from 'node-forge';
import type { Logger } from 'pino';
import { NodemeshError } from '../errors.js';
import {
  checkTrustDomain,
  CONTROLLER_SERVICE_ACCOUNT,
  formatSpiffeId,
  isNodeIdentity,
  NODE_NAMESPACE,
  parseSpiffeId,
  principalOf,
  type SpiffeId,
} from './spiffe.js';
import { certificateToPem, pemCertificates, randomSerialHex, SAN_DNS, SAN_URI, signCertificate } from './x509.js';

export const CA_CERT_FILE = 'ca-cert.pem';
export const CA_KEY_FILE = 'ca-key.pem';

/** Leaf certificates start this much in the past so that peers with a slow clock accept them. */
export const CLOCK_SKEW_SECONDS = 60;
const ROOT_YEARS = 10;
const MAX_TTL_SECONDS = 30 * 86400;
const MIN_RSA_BITS = 2048;

export interface MeshCAOptions {
  /** Holds ca-cert.pem and ca-key.pem: user supplied, or written here on first start. */
  dir: string;
  trustDomain: string;
  log: Logger;
}

/** true, or the reason to refuse; 'node' is the node identity, already checked to name the node. */
export type Authorize = (node: string, id: SpiffeId | 'node') => true | string;

export interface SignRequest {
  /** The requesting node, as authenticated by the transport that carried the CSR. */
  node: string;
  csrPem: string;
  ttlSeconds: number;
  authorize: Authorize;
}

export interface SignedCertificate {
  /** Leaf first, then the intermediates (if the CA is one); never the root. */
  certChainPem: string;
  rootPem: string;
  /** Uppercase hex, as Node's X509Certificate#serialNumber prints it. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** The SPIFFE URI certified. */
  identity: string;
}

export class MeshCA {
  readonly trustDomain: string;
  /** The self-signed root peers trust (the last certificate of ca-cert.pem). */
  readonly rootPem: string;
  readonly #key: KeyObject;
  readonly #cert: forge.pki.Certificate;
  readonly #intermediatesPem: string;
  readonly #keyId: string;
  readonly #log: Logger;

  private constructor(opts: MeshCAOptions, key: KeyObject, chainPem: readonly string[]) {
    this.trustDomain = opts.trustDomain;
    this.#log = opts.log;
    this.#key = key;
    this.#cert = forge.pki.certificateFromPem(chainPem[0]!);
    this.rootPem = chainPem[chainPem.length - 1]!;
    this.#intermediatesPem = chainPem.length > 1 ? chainPem.slice(0, -1).join('') : '';
    const ski = this.#cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
    this.#keyId = ski?.subjectKeyIdentifier
      ? forge.util.hexToBytes(ski.subjectKeyIdentifier)
      : this.#cert.generateSubjectKeyIdentifier().getBytes();
  }

  /** Loads the CA from `dir`, or creates a root there when neither file exists. */
  static loadOrCreate(opts: MeshCAOptions): MeshCA {
    checkTrustDomain(opts.trustDomain);
    const certPath = path.join(opts.dir, CA_CERT_FILE);
    const keyPath = path.join(opts.dir, CA_KEY_FILE);
    const haveCert = fs.existsSync(certPath);
    const haveKey = fs.existsSync(keyPath);
    if (haveCert && haveKey) return MeshCA.#load(opts, certPath, keyPath);
    if (haveCert || haveKey) {
      const [present, missing] = haveCert ? [certPath, keyPath] : [keyPath, certPath];
      throw new NodemeshError(
        'NM_ERR_IDENTITY_CA_LOAD',
        `${present} exists but ${missing} does not: supply both files of the CA, or remove ${present} to let nodemesh create a new root (every certificate issued so far would stop being trusted)`,
      );
    }
    return MeshCA.#create(opts, certPath, keyPath);
  }

  static #load(opts: MeshCAOptions, certPath: string, keyPath: string): MeshCA {
    const fail = (file: string, why: string, cause?: unknown): NodemeshError =>
      new NodemeshError('NM_ERR_IDENTITY_CA_LOAD', `mesh CA ${file}: ${why}`, { cause });
    const chainPem = pemCertificates(fs.readFileSync(certPath, 'utf8'));
    if (chainPem.length === 0) throw fail(certPath, 'no PEM certificate (-----BEGIN CERTIFICATE-----) in the file');
    let chain: X509Certificate[];
    try {
      chain = chainPem.map((pem) => new X509Certificate(pem));
    } catch (err) {
      throw fail(certPath, `not a valid certificate: ${(err as Error).message}`, err);
    }
    const keyPem = fs.readFileSync(keyPath, 'utf8');
    if (/ENCRYPTED/.test(keyPem)) {
      throw fail(keyPath, 'the key is encrypted; nodemesh needs it unencrypted (protect the file with mode 0600 instead)');
    }
    let key: KeyObject;
    try {
      key = crypto.createPrivateKey(keyPem);
    } catch (err) {
      throw fail(keyPath, `not a PEM private key: ${(err as Error).message}`, err);
    }
    if (key.asymmetricKeyType !== 'rsa') {
      throw fail(keyPath, `a ${key.asymmetricKeyType ?? 'unknown'} key; the mesh CA supports RSA keys only (node-forge)`);
    }
    const ca = chain[0]!;
    const now = Date.now();
    if (!ca.ca) throw fail(certPath, `${ca.subject.replace(/\n/g, ', ')} is not a CA certificate (basicConstraints CA:TRUE is missing)`);
    if (!ca.checkPrivateKey(key)) throw fail(keyPath, `the key does not belong to the certificate in ${certPath}`);
    if (Date.parse(ca.validTo) <= now) throw fail(certPath, `the CA certificate expired on ${new Date(ca.validTo).toISOString()}`);
    if (Date.parse(ca.validFrom) > now + CLOCK_SKEW_SECONDS * 1000) {
      throw fail(certPath, `the CA certificate is not valid before ${new Date(ca.validFrom).toISOString()}; check the clock`);
    }
    let forgeCert: forge.pki.Certificate;
    try {
      forgeCert = forge.pki.certificateFromPem(chainPem[0]!);
    } catch (err) {
      throw fail(certPath, `cannot be read by node-forge: ${(err as Error).message}`, err);
    }
    const usage = forgeCert.getExtension('keyUsage') as { keyCertSign?: boolean } | undefined;
    if (usage && !usage.keyCertSign) throw fail(certPath, 'the CA certificate lacks keyUsage keyCertSign');
    for (let i = 0; i + 1 < chain.length; i++) {
      if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey)) {
        throw fail(certPath, `certificate ${i + 1} is not issued by certificate ${i + 2}; list the CA first, then its issuers up to the root`);
      }
    }
    const root = chain[chain.length - 1]!;
    if (!root.checkIssued(root) || !root.verify(root.publicKey)) {
      throw fail(certPath, 'the last certificate must be the self-signed root that peers will trust');
    }
    const mode = fs.statSync(keyPath).mode & 0o777;
    if (mode & 0o077) opts.log.warn({ path: keyPath }, `mesh CA key is readable by group or others (mode ${mode.toString(8)}); chmod 600 it`);
    const daysLeft = Math.floor((Date.parse(ca.validTo) - now) / 86400e3);
    if (daysLeft < 30) opts.log.warn({ path: certPath, notAfter: ca.validTo }, `mesh CA certificate expires in ${daysLeft} days`);
    opts.log.info({ dir: opts.dir, subject: ca.subject.replace(/\n/g, ', '), notAfter: ca.validTo, chain: chain.length }, 'loaded mesh CA');
    return new MeshCA(opts, key, chainPem);
  }

  static #create(opts: MeshCAOptions, certPath: string, keyPath: string): MeshCA {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
    cert.serialNumber = randomSerialHex();
    const now = Date.now();
    cert.validity.notBefore = new Date(now - CLOCK_SKEW_SECONDS * 1000);
    cert.validity.notAfter = new Date(now);
    cert.validity.notAfter.setUTCFullYear(cert.validity.notAfter.getUTCFullYear() + ROOT_YEARS);
    const name = [
      { name: 'organizationName', value: 'nodemesh' },
      { name: 'commonName', value: `nodemesh root ${opts.trustDomain}` },
    ];
    cert.setSubject(name);
    cert.setIssuer(name);
    cert.setExtensions([
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ]);
    signCertificate(cert, privateKey);
    const certPem = certificateToPem(cert);
    try {
      fs.mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
      // Key first: a crash in between leaves a key without a certificate, which the next start
      // reports instead of silently minting a second root.
      writeAtomically(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
      writeAtomically(certPath, certPem, 0o644);
    } catch (err) {
      throw new NodemeshError(
        'NM_ERR_IDENTITY_CA_WRITE',
        `cannot write the new mesh CA to ${opts.dir}: ${(err as Error).message}; the directory must be writable and persistent, or supply ${CA_CERT_FILE} and ${CA_KEY_FILE}`,
        { cause: err },
      );
    }
    opts.log.info({ dir: opts.dir, notAfter: cert.validity.notAfter.toISOString() }, `created mesh CA root for trust domain ${opts.trustDomain}; back up ${keyPath}`);
    return new MeshCA(opts, privateKey, [certPem]);
  }

  /**
   * Signs a CSR for a workload identity of this trust domain, or for the node identity of the
   * requesting node. Throws NM_ERR_IDENTITY_CSR for a malformed request and
   * NM_ERR_IDENTITY_NOT_AUTHORIZED when the node may not hold the identity.
   */
  sign(req: SignRequest): SignedCertificate {
    const { id, dnsNames, publicKey } = this.#readCsr(req);
    const uri = formatSpiffeId(id);
    const refuse = (reason: string): NodemeshError => {
      this.#log.warn({ node: req.node, identity: uri }, `refused to sign ${uri} for node ${req.node}: ${reason}`);
      return new NodemeshError('NM_ERR_IDENTITY_NOT_AUTHORIZED', `refused to sign ${uri} for node ${req.node}: ${reason}`);
    };
    const forNode = isNodeIdentity(id);
    if (forNode) {
      if (dnsNames.length !== 1 || dnsNames[0] !== req.node) {
        throw refuse(`the node identity must carry exactly one DNS SAN equal to the requesting node, got [${dnsNames.join(', ')}]`);
      }
    } else if (dnsNames.length) {
      throw this.#badCsr(req, `a workload identity carries no DNS SAN, got [${dnsNames.join(', ')}]`);
    }
    const verdict = req.authorize(req.node, forNode ? 'node' : id);
    if (verdict !== true) throw refuse(verdict);

    const signed = this.#issue(publicKey, uri, forNode ? [req.node] : [], req.ttlSeconds);
    this.#log.info(
      { node: req.node, identity: uri, serial: signed.serial, notAfter: signed.notAfter.toISOString() },
      `signed ${principalOf(id)} for node ${req.node}`,
    );
    return signed;
  }

  /**
   * A serving certificate for the controller's config stream, with its own key: the SPIFFE id
   * of the controller's service account and the DNS names agents dial.
   */
  issueServing(dnsNames: readonly string[], ttlSeconds: number): SignedCertificate & { key: string } {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: MIN_RSA_BITS });
    const uri = formatSpiffeId({ trustDomain: this.trustDomain, namespace: NODE_NAMESPACE, serviceAccount: CONTROLLER_SERVICE_ACCOUNT });
    const forgeKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
    const signed = this.#issue(forgeKey, uri, dnsNames, ttlSeconds);
    return { ...signed, key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
  }

  #issue(publicKey: forge.pki.PublicKey, uri: string, dnsNames: readonly string[], ttlSeconds: number): SignedCertificate {
    // X.509 times have whole seconds; round here so the dates returned are the certificate's.
    const now = Math.floor(Date.now() / 1000) * 1000;
    const caNotAfter = this.#cert.validity.notAfter;
    const cert = forge.pki.createCertificate();
    cert.publicKey = publicKey;
    cert.serialNumber = randomSerialHex();
    cert.validity.notBefore = new Date(now - CLOCK_SKEW_SECONDS * 1000);
    cert.validity.notAfter = new Date(Math.min(now + ttlSeconds * 1000, caNotAfter.getTime()));
    cert.setSubject([{ name: 'organizationName', value: 'nodemesh' }]);
    cert.setIssuer(this.#cert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames: [{ type: SAN_URI, value: uri }, ...dnsNames.map((value) => ({ type: SAN_DNS, value }))] },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: this.#keyId },
    ]);
    signCertificate(cert, this.#key);
    return {
      certChainPem: certificateToPem(cert) + this.#intermediatesPem,
      rootPem: this.rootPem,
      serial: cert.serialNumber.toUpperCase(),
      notBefore: cert.validity.notBefore,
      notAfter: cert.validity.notAfter,
      identity: uri,
    };
  }

  #readCsr(req: SignRequest): { id: SpiffeId; dnsNames: string[]; publicKey: forge.pki.PublicKey } {
    if (!Number.isInteger(req.ttlSeconds) || req.ttlSeconds < 1 || req.ttlSeconds > MAX_TTL_SECONDS) {
      throw this.#badCsr(req, `ttl ${req.ttlSeconds} s is not a whole number of seconds between 1 and ${MAX_TTL_SECONDS}`);
    }
    let csr: forge.pki.CertificateSigningRequest;
    try {
      csr = forge.pki.certificationRequestFromPem(req.csrPem);
    } catch (err) {
      throw this.#badCsr(req, `cannot read it (RSA keys only): ${(err as Error).message}`);
    }
    const bits = (csr.publicKey as forge.pki.rsa.PublicKey | null)?.n.bitLength() ?? 0;
    if (bits < MIN_RSA_BITS) throw this.#badCsr(req, `RSA key of ${bits} bits, at least ${MIN_RSA_BITS} required`);
    let signatureOk = false;
    try {
      signatureOk = csr.verify();
    } catch {
      signatureOk = false;
    }
    if (!signatureOk) throw this.#badCsr(req, 'its signature does not verify with its public key');

    const request = csr.getAttribute({ name: 'extensionRequest' }) as { extensions?: Array<Record<string, unknown>> } | null;
    const san = request?.extensions?.find((e) => e['name'] === 'subjectAltName') as
      | { altNames?: Array<{ type: number; value: string }> }
      | undefined;
    const altNames = san?.altNames ?? [];
    const uris = altNames.filter((n) => n.type === SAN_URI).map((n) => n.value);
    const dnsNames = altNames.filter((n) => n.type === SAN_DNS).map((n) => n.value);
    const other = altNames.filter((n) => n.type !== SAN_URI && n.type !== SAN_DNS);
    if (other.length) throw this.#badCsr(req, `only URI and DNS SANs are accepted, got SAN types ${other.map((n) => n.type).join(', ')}`);
    if (uris.length !== 1) throw this.#badCsr(req, `it must carry exactly one URI SAN, got ${uris.length}${uris.length ? ` (${uris.join(', ')})` : ''}`);
    let id: SpiffeId;
    try {
      id = parseSpiffeId(uris[0]!);
    } catch (err) {
      throw this.#badCsr(req, (err as Error).message);
    }
    if (id.trustDomain !== this.trustDomain) {
      throw this.#badCsr(req, `${uris[0]} is in trust domain ${id.trustDomain}, this CA signs for ${this.trustDomain}`);
    }
    return { id, dnsNames, publicKey: csr.publicKey! };
  }

  #badCsr(req: SignRequest, why: string): NodemeshError {
    this.#log.warn({ node: req.node }, `rejected CSR from node ${req.node}: ${why}`);
    return new NodemeshError('NM_ERR_IDENTITY_CSR', `CSR from node ${req.node} rejected: ${why}`);
  }
}

function writeAtomically(file: string, data: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode, flag: 'wx' });
  fs.renameSync(tmp, file);
}
