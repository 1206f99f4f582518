// The CLI's side of the admin API: one GET, errors that say where the agent was expected.
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
        if (res.statusCode === 400) {
          // The agent refused an argument: its message names the flag.
          reject(new NodemeshError('NM_ERR_CLI_ARGUMENT', (JSON.parse(body) as { error: string }).error));
          return;
        }
        if (res.statusCode !== 200) {
          reject(new NodemeshError('NM_ERR_ADMIN_UNREACHABLE', `admin API ${where}${path} answered ${res.statusCode}: ${body.trim()}`));
          return;
        }
        resolve(JSON.parse(body) as T);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        new NodemeshError(
          'NM_ERR_ADMIN_UNREACHABLE',
          `cannot reach the agent's admin API at ${where}: ${err.code ?? err.message}. ` +
            'Is `nodemesh agent` running on this node (and in this network namespace)? Use --admin to point elsewhere.',
        ),
      ),
    );
  });
}
