// Distributed tracing of proxied requests, exported over OTLP/HTTP: a CLIENT span per request
// at the source node's proxy, started when the request arrives and carried upstream in the
// trace headers, and a SERVER span per request at the destination node's proxy, made after
// the fact from its RequestRecord. Off unless --tracing-endpoint is given.
import { ROOT_CONTEXT, SpanKind, trace, type Span, type Tracer } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { Logger } from 'pino';
import { first, type HeaderMap } from '../http/headers.js';
import type { RequestObserver, RequestRecord } from './request-record.js';
import { spanAttributes, spanName, spanStatus } from './span-attributes.js';
import type { TracingSettings } from './tracing-settings.js';
import { extract, inject } from './trace-context.js';

/** Bounds each export, and so the agent's stop when the collector does not answer. */
const EXPORT_TIMEOUT_MS = 5_000;

/** The source proxy's span of one request, ended with the request's record. */
export interface RequestSpan {
  readonly traceId: string;
  /** The traceparent header the upstream is sent. */
  readonly traceparent: string | undefined;
  end(record: RequestRecord): void;
}

/** What the L7 proxy needs: a span per request, whose context goes upstream in `headers`. */
export interface RequestTracer {
  startClient(headers: HeaderMap, service: { namespace: string; name: string; port: number }, method: string): RequestSpan;
}

export interface TracingDeps {
  node: string;
  log: Logger;
  /** Where finished spans go; a batch processor exporting to the endpoint by default. */
  processor?: SpanProcessor;
}

export class Tracing implements RequestTracer, RequestObserver {
  readonly #provider: BasicTracerProvider;
  readonly #tracer: Tracer;

  constructor(settings: Readonly<TracingSettings>, deps: TracingDeps) {
    const processor =
      deps.processor ??
      new BatchSpanProcessor(new ReportingExporter(new OTLPTraceExporter({ url: settings.endpoint, timeoutMillis: EXPORT_TIMEOUT_MS }), settings.endpoint, deps.log), {
        exportTimeoutMillis: EXPORT_TIMEOUT_MS,
      });
    this.#provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'nodemesh', 'k8s.node.name': deps.node }),
      // Istio's semantics: the ratio decides for new traces only; a sampling decision that
      // arrives with the request (traceparent flags, B3 sampled) is followed.
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(settings.sampling) }),
      spanProcessors: [processor],
    });
    this.#tracer = this.#provider.getTracer('nodemesh');
  }

  startClient(headers: HeaderMap, service: { namespace: string; name: string; port: number }, method: string): RequestSpan {
    const incoming = extract(headers);
    const span = this.#tracer.startSpan(spanName(service, method), { kind: SpanKind.CLIENT }, incoming.context);
    inject(trace.setSpan(ROOT_CONTEXT, span), headers, incoming.b3);
    return {
      traceId: span.spanContext().traceId,
      traceparent: first(headers.traceparent),
      end: (record) => finish(span, record, SpanKind.CLIENT),
    };
  }

  /** Destination records that carry the traceparent their request arrived with. */
  request(record: RequestRecord): void {
    if (record.reporter !== 'destination' || !record.traceparent) return;
    const parent = extract({ traceparent: record.traceparent }).context;
    if (!trace.getSpanContext(parent)) return;
    const span = this.#tracer.startSpan(spanName(record.destination.service, record.method), { kind: SpanKind.SERVER, startTime: record.startMs }, parent);
    finish(span, record, SpanKind.SERVER, record.startMs + record.durationMs);
  }

  /** Exports what is still buffered, then stops. */
  shutdown(): Promise<void> {
    return this.#provider.shutdown();
  }
}

function finish(span: Span, record: RequestRecord, kind: SpanKind, endMs?: number): void {
  if (span.isRecording()) {
    span.updateName(spanName(record.destination.service, record.method));
    span.setAttributes(spanAttributes(record, kind));
    span.setStatus(spanStatus(record, kind));
  }
  span.end(endMs);
}

/** Tells the operator once when exports start failing (collector down) and when they resume. */
class ReportingExporter implements SpanExporter {
  readonly #inner: SpanExporter;
  readonly #endpoint: string;
  readonly #log: Logger;
  #failing = false;

  constructor(inner: SpanExporter, endpoint: string, log: Logger) {
    this.#inner = inner;
    this.#endpoint = endpoint;
    this.#log = log;
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.#inner.export(spans, (result) => {
      const failed = result.code !== ExportResultCode.SUCCESS;
      if (failed && !this.#failing) {
        this.#log.warn({ endpoint: this.#endpoint, err: result.error?.message }, 'tracing: spans not exported; is the OTLP/HTTP collector reachable?');
      } else if (!failed && this.#failing) {
        this.#log.info({ endpoint: this.#endpoint }, 'tracing: span export resumed');
      }
      this.#failing = failed;
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}
