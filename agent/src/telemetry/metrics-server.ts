// Prometheus listener (:15020): `/metrics`, and `/stats/prometheus` where Istio's scrape
// configuration and annotations look for a mesh proxy's metrics. Each scrape first refreshes
// the values that are read from their owners rather than counted as they happen.
import http from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { addressOf, listen } from '../transport/listen.js';

export const METRICS_PATHS = ['/metrics', '/stats/prometheus'];

const MISNAMED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export class MetricsServer {
  readonly registry = new Registry();
  readonly #server: http.Server;
  readonly #refreshers: Array<() => void> = [];

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Gauges named like counters fail `promtool check metrics`; nodejs_active_handles and
    // nodejs_active_requests (by type) carry the same numbers under valid names.
    for (const name of MISNAMED_DEFAULTS) this.registry.removeSingleMetric(name);
    this.#server = http.createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://metrics').pathname;
      if (req.method !== 'GET' || !METRICS_PATHS.includes(path)) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`metrics are at ${METRICS_PATHS.join(' and ')}\n`);
        return;
      }
      void this.#scrape().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    });
  }

  /** Runs before every scrape. */
  onScrape(refresh: () => void): void {
    this.#refreshers.push(refresh);
  }

  listen(address: { host: string; port: number }): Promise<void> {
    return listen(this.#server, 'metrics listener', 'NM_ERR_METRICS_LISTEN', address.host, address.port);
  }

  get address(): string {
    return addressOf(this.#server);
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  async #scrape(): Promise<string> {
    for (const refresh of this.#refreshers) refresh();
    return this.registry.metrics();
  }
}
