// Admin API (:15000, loopback by default): read-only JSON views of the node for the CLI, and
// newline-delimited JSON streams (tap) that last until the client goes away.
import { listen } from '../transport/listen.js';
import http from 'node:http';
import { NodemeshError } from '../errors.js';

/**
 * A streaming endpoint: `open` checks the query (a bad parameter throws, as for a view) and
 * starts calling `send`, one JSON line each; the stop it returns runs when the client leaves
 * or the server closes. A line that would only queue behind a slow reader is dropped.
 */
export class NdjsonRoute {
  readonly open: (query: URLSearchParams, send: (value: unknown) => void) => () => void;

  constructor(open: NdjsonRoute['open']) {
    this.open = open;
  }
}

/** A route may read query parameters (filters); a bad one throws NM_ERR_CLI_ARGUMENT: a 400. */
export type AdminRoutes = Record<string, ((query: URLSearchParams) => unknown) | NdjsonRoute>;

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
        if (route instanceof NdjsonRoute) stream(res, route, url.searchParams);
        else send(res, 200, route(url.searchParams));
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

function stream(res: http.ServerResponse, route: NdjsonRoute, query: URLSearchParams): void {
  const stop = route.open(query, (value) => {
    if (!res.writableNeedDrain && !res.destroyed) res.write(`${JSON.stringify(value)}\n`);
  });
  res.on('close', stop);
  // Headers now, so the client knows the stream is open before the first line.
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' }).flushHeaders();
}
