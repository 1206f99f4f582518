// The CLI's side of the admin API: one GET or one NDJSON stream, errors that say where the
// agent was expected.
import http from 'node:http';
import { NodemeshError } from '../errors.js';

export function parseAddress(value: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `${flag} must be HOST:PORT (e.g. 127.0.0.1:15000), got "${value}"`);
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

export function adminGet<T>(address: { host: string; port: number }, path: string, timeoutMs = 5000): Promise<T> {
  const where = `${address.host}:${address.port}`;
  return new Promise((resolve, reject) => {
    const req = http.get({ ...address, path, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        if (res.statusCode !== 200) {
          reject(refusal(res.statusCode, body, `${where}${path}`));
          return;
        }
        resolve(JSON.parse(body) as T);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => reject(unreachable(where, err)));
  });
}

function refusal(status: number | undefined, body: string, what: string): NodemeshError {
  // 400: the agent refused an argument; its message names the flag.
  if (status === 400) return new NodemeshError('NM_ERR_CLI_ARGUMENT', (JSON.parse(body) as { error: string }).error);
  return new NodemeshError('NM_ERR_ADMIN_UNREACHABLE', `admin API ${what} answered ${status}: ${body.trim()}`);
}

function unreachable(where: string, err: NodeJS.ErrnoException): NodemeshError {
  return new NodemeshError(
    'NM_ERR_ADMIN_UNREACHABLE',
    `cannot reach the agent's admin API at ${where}: ${err.code ?? err.message}. ` +
      'Is `nodemesh agent` running on this node (and in this network namespace)? Use --admin to point elsewhere.',
  );
}

export interface AdminStream {
  /** Resolves after stop(); rejects when the agent cannot be reached, refuses, or ends the stream. */
  done: Promise<void>;
  stop(): void;
}

/** GET a newline-delimited JSON stream; each value goes to `onValue` as its line arrives. */
export function adminStream<T>(address: { host: string; port: number }, path: string, onValue: (value: T) => void): AdminStream {
  const where = `${address.host}:${address.port}`;
  let stopped = false;
  let req: http.ClientRequest | undefined;
  const done = new Promise<void>((resolve, reject) => {
    req = http.get({ ...address, path }, (res) => {
      let buffered = '';
      res.setEncoding('utf8');
      if (res.statusCode !== 200) {
        res.on('data', (chunk: string) => (buffered += chunk));
        res.on('end', () => reject(refusal(res.statusCode, buffered, `${where}${path}`)));
        return;
      }
      res.on('data', (chunk: string) => {
        buffered += chunk;
        for (let nl = buffered.indexOf('\n'); nl >= 0 && !stopped; nl = buffered.indexOf('\n')) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line) onValue(JSON.parse(line) as T);
        }
      });
      res.on('error', () => undefined);
      res.on('close', () =>
        stopped ? resolve() : reject(new NodemeshError('NM_ERR_ADMIN_UNREACHABLE', `the agent at ${where} ended the ${path.split('?')[0]} stream (agent stopped?)`)),
      );
    });
    req.on('error', (err: NodeJS.ErrnoException) => (stopped ? resolve() : reject(unreachable(where, err))));
  });
  return {
    done,
    stop: () => {
      stopped = true;
      req?.destroy();
    },
  };
}
