// The benchmark's anchor: the same hop as the mesh's L7 path, made by a C proxy. HAProxy on
// each node's host, one thread each, HTTP mode: the client pod talks plain HTTP/1.1 to the
// one on its node, which keeps connections to the other node's HAProxy over TLS 1.3 with
// certificates both ways (reused across requests), which keeps connections to the pod.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Testbed } from '../testbed/testbed.js';

/** Where the client node's HAProxy listens, and the server node's for TLS. */
const FRONT_PORT = 18080;
const TLS_PORT = 18443;
const READY_MS = 5000;

/** What the client pod asks for. */
export const haproxyUrl = (tb: Testbed): string => `http://${tb.nodeIP('n1')}:${FRONT_PORT}/`;

export interface HaproxyPair {
  /** The two HAProxy processes (client node, server node), for their CPU. */
  pids: number[];
  stop(): Promise<void>;
}

/** A CA and, signed by it, the server node's and the client node's certificates (PEM: cert then key). */
function makeCertificates(dir: string): { ca: string; server: string; client: string } {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=bench-ca', '-keyout', 'ca.key', '-out', 'ca.pem');
  const leaf = (name: string) => {
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', `${name}.crt`);
    const pem = path.join(dir, `${name}.pem`);
    writeFileSync(pem, execFileSync('cat', [`${name}.crt`, `${name}.key`], { cwd: dir }));
    return pem;
  };
  return { ca: path.join(dir, 'ca.pem'), server: leaf('server-node'), client: leaf('client-node') };
}

const config = (frontend: string, server: string) => `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend in
  ${frontend}
  default_backend out
backend out
  ${server}
`;

async function start(tb: Testbed, node: string, file: string, port: number): Promise<ChildProcess> {
  const child = tb.spawn({ node }, ['haproxy', '-db', '-f', file]);
  let output = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const deadline = Date.now() + READY_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`haproxy on ${node} exited ${child.exitCode}: ${output}`);
    const probe = await tb.exec({ node }, ['sh', '-c', `ss -ltn | grep -q ':${port} '`]);
    if (probe.code === 0) return child;
    if (Date.now() > deadline) throw new Error(`haproxy on ${node} not listening within ${READY_MS} ms: ${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts the pair in front of `backend` (the pod's ip:port), client node `n1`, server node `n2`. */
export async function startHaproxyPair(tb: Testbed, backend: string): Promise<HaproxyPair> {
  const dir = tb.scratchDir;
  const certs = makeCertificates(dir);
  const serverNode = tb.nodeIP('n2');
  const tls = `ssl crt ${certs.client} ca-file ${certs.ca} verify required ssl-min-ver TLSv1.3 sni str(server-node) verifyhost server-node alpn http/1.1`;
  const clientFile = path.join(dir, 'haproxy-client.cfg');
  const serverFile = path.join(dir, 'haproxy-server.cfg');
  writeFileSync(clientFile, config(`bind ${tb.nodeIP('n1')}:${FRONT_PORT}`, `server n2 ${serverNode}:${TLS_PORT} ${tls}`));
  writeFileSync(serverFile, config(`bind ${serverNode}:${TLS_PORT} ssl crt ${certs.server} ca-file ${certs.ca} verify required ssl-min-ver TLSv1.3 alpn http/1.1`, `server pod ${backend}`));
  const children = [await start(tb, 'n2', serverFile, TLS_PORT), await start(tb, 'n1', clientFile, FRONT_PORT)];
  return {
    pids: [children[1]!.pid!, children[0]!.pid!],
    stop: async () => {
      for (const child of children) {
        if (child.exitCode !== null) continue;
        child.kill();
        await new Promise((r) => child.once('exit', r));
      }
    },
  };
}
