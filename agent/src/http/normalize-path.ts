// Request path normalization before authorization, as Istio's default `pathNormalization: BASE`
// (Envoy's `normalize_path`): percent-decode the unreserved characters, turn backslashes into
// slashes, resolve "." and ".." segments (RFC 3986 §5.2.4). BASE does not merge slashes, so
// "//admin" stays "//admin" (Istio's MERGE_SLASHES would). Only the policy sees the result:
// the pod receives the original request target.

/** The normalized path (query kept as is), or undefined for a path Envoy rejects with 400. */
export function normalizePath(target: string): string | undefined {
  const q = target.search(/[?#]/);
  const path = q < 0 ? target : target.slice(0, q);
  const rest = q < 0 ? '' : target.slice(q);
  if (/%00/.test(path)) return undefined;
  // "Normalization happens only once, no double decoding": one pass over the escapes.
  const decoded = path.replace(/%([0-9a-fA-F]{2})/g, (escape: string, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return /[A-Za-z0-9\-._~]/.test(c) ? c : escape;
  });
  return removeDotSegments(decoded.replace(/\\/g, '/')) + rest;
}

function removeDotSegments(input: string): string {
  let out = '';
  let rest = input;
  while (rest.length > 0) {
    if (rest.startsWith('../')) rest = rest.slice(3);
    else if (rest.startsWith('./')) rest = rest.slice(2);
    else if (rest.startsWith('/./')) rest = rest.slice(2);
    else if (rest === '/.') rest = '/';
    else if (rest.startsWith('/../') || rest === '/..') {
      rest = rest === '/..' ? '/' : rest.slice(3);
      out = out.slice(0, Math.max(0, out.lastIndexOf('/')));
    } else if (rest === '.' || rest === '..') rest = '';
    else {
      const next = rest.indexOf('/', 1);
      const end = next < 0 ? rest.length : next;
      out += rest.slice(0, end);
      rest = rest.slice(end);
    }
  }
  return out;
}
