// Test support for the HBONE tests: a throwaway PKI made with the openssl CLI in a temp dir
// (two CAs, SPIFFE leaf certificates, an expired one), an echo server and a log that records.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type tls from 'node:tls';
import { pino, type Logger } from 'pino';
import { formatAuthority, type HostPort } from '../hbone/protocol.js';
import type { HboneOpenResult } from '../hbone/server.js';
import { tcpConnect } from '../transport/tcp-connect.js';

export interface Issued {
  key: string;
  cert: string;
  keyFile: string;
  certFile: string;
}

export interface TestCa {
  name: string;
  cert: string;
  certFile: string;
  /** Signs a leaf with these SANs; `expired` makes it valid only in 2020. */
  issue(name: string, san: { uris?: string[]; dns?: string[] }, opts?: { expired?: boolean }): Issued;
}

export interface TestPki {
  dir: string;
  newCa(name: string): TestCa;
  cleanup(): void;
}

const openssl = (args: string[], cwd: string) => execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });

export function makePki(): TestPki {
  const dir = mkdtempSync(path.join(tmpdir(), 'nodemesh-hbone-pki-'));
  return {
    dir,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
    newCa(name) {
      const caDir = path.join(dir, name);
      mkdirSync(path.join(caDir, 'newcerts'), { recursive: true });
      writeFileSync(path.join(caDir, 'index.txt'), '');
      writeFileSync(path.join(caDir, 'serial'), '1000\n');
      // `openssl ca` rather than `x509 -req`: OpenSSL 3.0 can only back-date through -startdate.
      writeFileSync(
        path.join(caDir, 'ca.cnf'),
        [
          '[ca]',
          'default_ca = test',
          '[test]',
          `database = ${caDir}/index.txt`,
          `new_certs_dir = ${caDir}/newcerts`,
          `serial = ${caDir}/serial`,
          'default_md = sha256',
          'policy = any',
          'unique_subject = no',
          '[any]',
          'organizationName = optional',
          'commonName = optional',
          '',
        ].join('\n'),
      );
      openssl(
        ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt',
          '-days', '2', '-subj', `/O=nodemesh-test/CN=${name}`,
          '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
        caDir,
      );
      const certFile = path.join(caDir, 'ca.crt');
      return {
        name,
        certFile,
        cert: readFileSync(certFile, 'utf8'),
        issue(leaf, san, opts = {}) {
          const sans = [...(san.uris ?? []).map((u) => `URI:${u}`), ...(san.dns ?? []).map((d) => `DNS:${d}`)];
          writeFileSync(
            path.join(caDir, `${leaf}.ext`),
            [
              'basicConstraints = critical,CA:FALSE',
              'keyUsage = critical,digitalSignature,keyEncipherment',
              'extendedKeyUsage = serverAuth,clientAuth',
              `subjectAltName = ${sans.join(',')}`,
              '',
            ].join('\n'),
          );
          openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${leaf}.key`,
            '-out', `${leaf}.csr`, '-subj', `/O=nodemesh-test/CN=${leaf}`], caDir);
          const validity = opts.expired ? ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z'] : ['-days', '1'];
          openssl(['ca', '-batch', '-config', 'ca.cnf', '-cert', 'ca.crt', '-keyfile', 'ca.key', '-in', `${leaf}.csr`,
            '-out', `${leaf}.crt`, '-notext', '-extfile', `${leaf}.ext`, ...validity], caDir);
          const keyFile = path.join(caDir, `${leaf}.key`);
          const leafCertFile = path.join(caDir, `${leaf}.crt`);
          return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(leafCertFile, 'utf8'), keyFile, certFile: leafCertFile };
        },
      };
    },
  };
}

/** The certificate's SPIFFE URI SAN, if it has exactly one. */
export function spiffeIdOf(cert: tls.PeerCertificate): string | undefined {
  const uris = (cert.subjectaltname ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:spiffe://'))
    .map((s) => s.slice('URI:'.length));
  return uris.length === 1 ? uris[0] : undefined;
}

/** A peerIdentity callback accepting SPIFFE ids of one trust domain. */
export function acceptTrustDomain(trustDomain: string) {
  return (cert: tls.PeerCertificate): string | { reason: string } => {
    const id = spiffeIdOf(cert);
    if (!id) return { reason: 'no single SPIFFE URI SAN in the certificate' };
    const td = id.slice('spiffe://'.length).split('/')[0];
    return td === trustDomain ? id : { reason: `trust domain ${td} is not ${trustDomain}` };
  };
}

export interface RecordingLog {
  log: Logger;
  lines: Array<Record<string, unknown>>;
}

export function recordingLog(level = 'debug'): RecordingLog {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

export interface EchoServer {
  port: number;
  /** Server-side sockets, in accept order. */
  sockets: net.Socket[];
  /** Errors seen on server-side sockets (e.g. ECONNRESET when a tunnel was reset). */
  errors: NodeJS.ErrnoException[];
  close(): Promise<void>;
}

/** Echoes bytes; answers FIN with FIN once it has echoed everything (half-close aware). */
export async function startEcho(onSocket?: (s: net.Socket) => boolean): Promise<EchoServer> {
  const sockets: net.Socket[] = [];
  const errors: NodeJS.ErrnoException[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    s.on('error', (e: NodeJS.ErrnoException) => errors.push(e));
    if (onSocket?.(s)) return;
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    errors,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A port nothing listens on (bound then released). */

export interface Received {
  data: Buffer;
  ended: boolean;
  error?: NodeJS.ErrnoException;
}

/** Reads until end, error or close. */
export function readAll(s: NodeJS.ReadableStream & NodeJS.EventEmitter): Promise<Received> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let ended = false;
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      ended = true;
      resolve({ data: Buffer.concat(chunks), ended });
    });
    s.on('error', (error: NodeJS.ErrnoException) => resolve({ data: Buffer.concat(chunks), ended, error }));
    s.on('close', () => resolve({ data: Buffer.concat(chunks), ended }));
  });
}

/** The HBONE server's `open` step in tests: connect to the target; 503 when it refuses or is unreachable, 504 when it does not answer in time. */
export async function dialTarget(target: HostPort, timeoutMs: number): Promise<HboneOpenResult> {
  const r = await tcpConnect(target, `connect to ${formatAuthority(target)}`, timeoutMs);
  return 'socket' in r ? { stream: r.socket } : { status: r.failed === 'timeout' ? 504 : 503, reason: r.reason };
}
