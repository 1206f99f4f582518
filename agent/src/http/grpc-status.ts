// gRPC status codes as the proxy answers a call it fails itself: a trailers-only response
// (HTTP 200, grpc-status, grpc-message), the mapping Envoy applies to its local replies.

export const GRPC_CODES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

export const GrpcCode = Object.fromEntries(GRPC_CODES.map((name, code) => [name, code])) as Record<(typeof GRPC_CODES)[number], number>;

/** The gRPC code for an HTTP status of a local reply (gRPC's "HTTP to gRPC status" table). */
export function grpcCodeForHttp(status: number): number {
  switch (status) {
    case 400:
      return GrpcCode.INTERNAL;
    case 401:
      return GrpcCode.UNAUTHENTICATED;
    case 403:
      return GrpcCode.PERMISSION_DENIED;
    case 404:
      return GrpcCode.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcCode.UNAVAILABLE;
    default:
      return GrpcCode.UNKNOWN;
  }
}

/**
 * grpc-message is percent-encoded (gRPC over HTTP/2 spec): only "%" and bytes outside
 * printable ASCII are; "/" and ":" stay as they are, since clients such as grpc-js decode
 * with decodeURI and would show "%2F".
 */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The grpc-timeout header in ms ("100m", "5S", "1H"...), or undefined when absent/invalid. */
export function grpcTimeoutMs(value: string | undefined): number | undefined {
  const m = value === undefined ? null : /^([0-9]{1,8})([HMSmun])$/.exec(value);
  if (!m) return undefined;
  const unitMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
  return Number(m[1]) * (unitMs[m[2] as string] as number);
}
