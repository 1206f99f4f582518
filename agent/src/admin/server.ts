// Admin API (:15000, loopback by default): read-only JSON views of the node for the CLI.
import { listen } from '../listen.js';
import http from 'node:http';
import { NodemeshError } from '../errors.js';

/** A route may read query parameters (filters); a bad one throws NM_ERR_CLI_ARGUMENT: a 400. */
export type AdminRoutes = Record<string, (query: URLSearchParams) => unknown>;

export class AdminServer {
  readonly #server: http.Server;

  constructor(routes: AdminRoutes) {
    this.#server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://admin');
      const path = url.pathname;
      const route = routes[path];
      if (req.method !== 'GET' || !route) {
        send(res, 404, { error: `no such admin endpoint: ${req.method} ${path}`, endpoints: Object.keys(routes) });
        return;
      }
      try {
        send(res, 200, route(url.searchParams));
      } catch (err) {
        send(res, err instanceof NodemeshError && err.code === 'NM_ERR_CLI_ARGUMENT' ? 400 : 500, { error: err instanceof Error ? err.message : String(err) });
      }
    });
  }

  listen(address: { host: string; port: number }): Promise<void> {
    return listen(this.#server, 'admin API', 'NM_ERR_ADMIN_LISTEN', address.host, address.port);
  }


  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2);
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${text}\n`);
}
