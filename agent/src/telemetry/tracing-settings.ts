// The tracing flags, read and checked without loading the OpenTelemetry SDK: with tracing off
// (the default) the agent never loads it.
import { NodemeshError } from '../errors.js';

export interface TracingSettings {
  /** Full OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces. */
  endpoint: string;
  /** Share of new traces sampled; a request that arrives with a decision keeps it. */
  sampling: number;
}

/** Every new trace: whoever sets an endpoint wants to see traces (Istio's default is 0.01). */
export const DEFAULT_SAMPLING = 1;

/** --tracing-endpoint / --tracing-sampling; undefined (tracing off) without an endpoint. */
export function parseTracingSettings(endpoint: string | undefined, sampling: string | undefined): TracingSettings | undefined {
  if (endpoint === undefined) {
    if (sampling !== undefined) throw new NodemeshError('NM_ERR_CLI_ARGUMENT', '--tracing-sampling needs --tracing-endpoint URL: tracing is off without one');
    return undefined;
  }
  const url = URL.canParse(endpoint) ? new URL(endpoint) : undefined;
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--tracing-endpoint must be the http(s) URL of an OTLP/HTTP traces receiver (e.g. http://collector:4318/v1/traces), got "${endpoint}"`);
  }
  const ratio = sampling === undefined ? DEFAULT_SAMPLING : Number(sampling);
  if (sampling?.trim() === '' || !(ratio >= 0 && ratio <= 1)) {
    throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--tracing-sampling must be a ratio from 0 to 1 (e.g. 0.01 for 1% of new traces), got "${sampling}"`);
  }
  return Object.freeze({ endpoint: url.href, sampling: ratio });
}
