// The node's most recent request records at both ends (source and destination reporters),
// for the admin API's /requests view: a bounded buffer, newest last, shaped as plain JSON.
import { NodemeshError } from '../errors.js';
import { objectKey } from '../state/model.js';
import type { RequestObserver, RequestRecord } from './request-record.js';

export interface RequestView {
  reporter: RequestRecord['reporter'];
  startMs: number;
  durationMs: number;
  protocol: RequestRecord['protocol'];
  httpVersion: RequestRecord['httpVersion'];
  method: string;
  authority: string;
  path: string;
  status: number;
  grpcStatus: number | null;
  responseFlags: RequestRecord['responseFlags'];
  requestBytes: number;
  responseBytes: number;
  retries: number;
  requestId: string | null;
  source: { pod: string | null; ip: string; identity: string | null };
  destination: { service: string | null; endpoint: string | null; pod: string | null };
  security: RequestRecord['security'];
  authorization: { allowed: boolean; reason: string; policy?: string } | null;
}

const DEFAULT_CAPACITY = 1000;

export class RecentRequests implements RequestObserver {
  readonly #capacity: number;
  readonly #records: RequestRecord[] = [];
  /** Where the next record goes once the buffer is full (a ring: no copying per request). */
  #next = 0;

  constructor(capacity = DEFAULT_CAPACITY) {
    this.#capacity = capacity;
  }

  request(record: RequestRecord): void {
    this.#records[this.#next] = record;
    this.#next = (this.#next + 1) % this.#capacity;
  }

  /** Oldest first; only one reporter's when `reporter` is given. */
  views(reporter?: string): RequestView[] {
    if (reporter !== undefined && reporter !== 'source' && reporter !== 'destination') {
      throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `reporter must be source or destination, got "${reporter}"`);
    }
    const ordered = [...this.#records.slice(this.#next), ...this.#records.slice(0, this.#next)];
    return ordered.filter((r) => !reporter || r.reporter === reporter).map(view);
  }
}

function view(r: RequestRecord): RequestView {
  const { service, endpoint } = r.destination;
  return {
    reporter: r.reporter,
    startMs: r.startMs,
    durationMs: Math.round(r.durationMs * 1000) / 1000,
    protocol: r.protocol,
    httpVersion: r.httpVersion,
    method: r.method,
    authority: r.authority,
    path: r.path,
    status: r.status,
    grpcStatus: r.grpcStatus ?? null,
    responseFlags: r.responseFlags,
    requestBytes: r.requestBytes,
    responseBytes: r.responseBytes,
    retries: r.retries,
    requestId: r.requestId ?? null,
    source: { pod: r.source.pod ? objectKey(r.source.pod.namespace, r.source.pod.name) : null, ip: r.source.ip, identity: r.source.identity ?? null },
    destination: {
      service: service ? `${objectKey(service.namespace, service.name)}:${service.port}` : null,
      endpoint: endpoint ? `${endpoint.ip}:${endpoint.port}` : null,
      pod: endpoint ? objectKey(endpoint.pod.namespace, endpoint.pod.name) : null,
    },
    security: r.security,
    authorization: r.authorization ?? null,
  };
}
