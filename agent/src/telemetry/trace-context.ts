// Trace context on the wire, for the L7 proxy's spans: read from a request's headers (W3C
// traceparent/tracestate first, else B3 single or multi) and written back for the upstream,
// in W3C always and in B3 too when the client spoke B3, so B3-only apps keep their traces.
import { ROOT_CONTEXT, type Context, type TextMapGetter, type TextMapSetter, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { B3InjectEncoding, B3Propagator } from '@opentelemetry/propagator-b3';
import { first, type HeaderMap } from '../http/headers.js';

/** How the client sent B3, to answer in kind; absent when it did not. */
export type B3Format = 'single' | 'multi';

export interface Extracted {
  /** Holds the client's span context when a header carried a valid one. */
  context: Context;
  b3?: B3Format;
}

const w3c = new W3CTraceContextPropagator();
const b3Readers = new B3Propagator();
const b3Writers: Record<B3Format, B3Propagator> = {
  single: new B3Propagator({ injectEncoding: B3InjectEncoding.SINGLE_HEADER }),
  multi: new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER }),
};
const B3_HEADERS = ['b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags'];

const getter: TextMapGetter<HeaderMap> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => first(carrier[key]),
};
const setter: TextMapSetter<HeaderMap> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

export function extract(headers: HeaderMap): Extracted {
  const b3: B3Format | undefined = headers.b3 !== undefined ? 'single' : headers['x-b3-traceid'] !== undefined ? 'multi' : undefined;
  const fromW3c = w3c.extract(ROOT_CONTEXT, headers, getter);
  if (trace.getSpanContext(fromW3c)) return { context: fromW3c, ...(b3 ? { b3 } : {}) };
  if (!b3) return { context: ROOT_CONTEXT };
  return { context: b3Readers.extract(ROOT_CONTEXT, headers, getter), b3 };
}

/** Replaces the trace headers with `context`'s span (the proxy's span, parent of the upstream's). */
export function inject(context: Context, headers: HeaderMap, b3?: B3Format): void {
  delete headers.tracestate;
  w3c.inject(context, headers, setter);
  if (!b3) return;
  // A stale parent span id or flags from the client must not survive next to the new ids.
  for (const name of B3_HEADERS) delete headers[name];
  b3Writers[b3].inject(context, headers, setter);
}
