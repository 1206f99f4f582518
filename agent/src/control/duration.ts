// The two duration syntaxes of the configuration kinds, read into milliseconds in one place:
// Gateway API's (GEP-2257: "1h30m", "500ms"; used by routes and nodemesh.io kinds) and
// Istio's (Go's time.ParseDuration subset Istio accepts: "1.5s", "10ms", "1m").
import { FieldErrors, show } from './fields.js';

export type DurationSyntax = 'gateway' | 'istio';

const UNIT_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

// GEP-2257: one to four <1-5 digits><unit>, units h, m, s, ms; no fractions, no sign.
const GATEWAY = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
// Go's syntax without sign and without the sub-millisecond units Istio refuses.
const ISTIO = /^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(h|ms|m|s))+$/;
const PART = /([0-9]*\.?[0-9]*)(h|ms|m|s)/g;

const EXPECTED: Record<DurationSyntax, string> = {
  gateway: 'a Gateway API duration: up to four <number><unit> parts with units h, m, s, ms and at most 5 digits each, such as "10s", "500ms" or "1h30m"',
  istio: 'a duration such as "10s", "1.5s", "250ms", "1m" or "1h" (units h, m, s, ms)',
};

/** Milliseconds, or undefined when `text` is not a duration in that syntax. */
export function parseDuration(text: string, syntax: DurationSyntax): number | undefined {
  if (!(syntax === 'gateway' ? GATEWAY : ISTIO).test(text)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of text.matchAll(PART)) ms += Number(amount) * UNIT_MS[unit!]!;
  // Round away float noise ("0.1s" * 1000) before checking for whole milliseconds.
  return Math.round(ms * 1e6) / 1e6;
}

/**
 * A duration field in ms; undefined (and no error) when absent. `minMs` is the smallest
 * value that makes sense for the field (Istio refuses less than 1ms; "0s" disables a
 * Gateway API timeout).
 */
export function readDuration(
  value: unknown,
  field: string,
  errors: FieldErrors,
  syntax: DurationSyntax,
  minMs: number,
): number | undefined {
  if (value === undefined || value === null) return undefined;
  const ms = typeof value === 'string' ? parseDuration(value, syntax) : undefined;
  if (ms === undefined) {
    errors.add(field, `must be ${EXPECTED[syntax]}, got ${show(value)}`);
    return undefined;
  }
  if (!Number.isInteger(ms)) {
    errors.add(field, `must be a whole number of milliseconds, got ${show(value)}`);
    return undefined;
  }
  if (ms < minMs) {
    errors.add(field, `must be at least ${minMs}ms, got ${show(value)}`);
    return undefined;
  }
  return ms;
}
