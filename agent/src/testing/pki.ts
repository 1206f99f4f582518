// Test-only PKI: roots and leaves the mesh CA would never issue (foreign, expired, odd SANs),
// and a real TLS handshake on loopback.
import crypto, { type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import forge from 'node-forge';
import { certificateToPem, randomSerialHex, SAN_DNS, SAN_URI, signCertificate } from '../identity/x509.js';

export interface TestCa {
  certPem: string;
  keyPem: string;
  key: KeyObject;
  cert: forge.pki.Certificate;
}

const keys: KeyObject[] = [];
/** RSA keys are slow to make; tests share a few. */
export function testKey(i = 0): KeyObject {
  while (keys.length <= i) keys.push(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
  return keys[i]!;
}

const forgePublic = (key: KeyObject) =>
  forge.pki.publicKeyFromPem(crypto.createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString());

export function makeCa(opts: { cn: string; key?: KeyObject; issuer?: TestCa; ca?: boolean; notAfter?: Date }): TestCa {
  const key = opts.key ?? testKey(1);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forgePublic(key);
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = new Date(Date.now() - 3600e3);
  cert.validity.notAfter = opts.notAfter ?? new Date(Date.now() + 365 * 86400e3);
  cert.setSubject([{ name: 'commonName', value: opts.cn }]);
  cert.setIssuer((opts.issuer?.cert ?? cert).subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: opts.ca ?? true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
  ]);
  signCertificate(cert, opts.issuer?.key ?? key);
  return { certPem: certificateToPem(cert), keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(), key, cert };
}

export function issueLeaf(
  ca: TestCa,
  opts: { uris?: string[]; dnsNames?: string[]; key: KeyObject; notBefore?: Date; notAfter?: Date },
): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forgePublic(opts.key);
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = opts.notBefore ?? new Date(Date.now() - 60e3);
  cert.validity.notAfter = opts.notAfter ?? new Date(Date.now() + 3600e3);
  cert.setSubject([{ name: 'organizationName', value: 'test' }]);
  cert.setIssuer(ca.cert.subject.attributes);
  const altNames = [
    ...(opts.uris ?? []).map((value) => ({ type: SAN_URI, value })),
    ...(opts.dnsNames ?? []).map((value) => ({ type: SAN_DNS, value })),
  ];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    ...(altNames.length ? [{ name: 'subjectAltName', altNames }] : []),
  ]);
  signCertificate(cert, ca.key);
  return certificateToPem(cert);
}

export const pemOf = (key: KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }).toString();

// Every directory a test makes is removed when its process exits, pass or fail.
const made: string[] = [];
process.once('exit', () => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

export const tmpDir = (): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodemesh-identity-'));
  made.push(dir);
  return dir;
};

export interface HandshakeResult {
  /** The server accepted the connection (Node's TLS verified the client). */
  accepted?: tls.TLSSocket;
  serverError?: Error;
  /** Why Node's TLS refused the client's certificate (the server socket's authorizationError). */
  serverAuthorizationError?: string;
  clientError?: Error;
  /** What the client read: "ok" when the server answered. */
  received: string;
  alpn?: string | false | null;
  protocol?: string | null;
}

/** One connection on 127.0.0.1 between a server and a client built from the given options. */
export async function handshake(serverOptions: tls.TlsOptions, clientOptions: tls.ConnectionOptions): Promise<HandshakeResult> {
  const result: HandshakeResult = { received: '' };
  const server = tls.createServer(serverOptions);
  let done!: () => void;
  const serverDone = new Promise<void>((r) => (done = r));
  server.on('secureConnection', (socket) => {
    result.accepted = socket;
    socket.on('error', () => undefined);
    socket.end('ok');
    done();
  });
  server.on('tlsClientError', (err, socket) => {
    result.serverError = err;
    if (socket.authorizationError) result.serverAuthorizationError = String(socket.authorizationError);
    done();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const client = tls.connect({ ...clientOptions, host: '127.0.0.1', port });
  client.on('secureConnect', () => {
    result.alpn = client.alpnProtocol;
    result.protocol = client.getProtocol();
  });
  client.on('data', (d: Buffer) => (result.received += d.toString()));
  client.on('error', (err) => (result.clientError = err));
  // events.once would reject on 'error'; the error is a result here.
  const closed = new Promise((r) => client.on('close', r));
  const stuck = setTimeout(() => client.destroy(new Error('test handshake did not finish in 5 s')), 5000);
  await closed;
  clearTimeout(stuck);
  // A client refused by checkServerIdentity closes before the server hears of it.
  await Promise.race([serverDone, new Promise((r) => setTimeout(r, 500))]);
  server.close();
  return result;
}
