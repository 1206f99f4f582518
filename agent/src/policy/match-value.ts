// The two value comparisons of authorization rules: Istio's string forms ("abc" exact,
// "abc*" prefix, "*abc" suffix, "*" any non-empty value) and IP-in-CIDR.
import { isIP } from 'node:net';

export function matchesPattern(pattern: string, value: string, ignoreCase = false): boolean {
  if (ignoreCase) return matchesPattern(pattern.toLowerCase(), value.toLowerCase());
  if (pattern === '*') return value !== '';
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  return value === pattern;
}

/** `block` is an address or a CIDR range; an IPv4-mapped IPv6 address counts as IPv4. */
export function inIpBlock(block: string, ip: string): boolean {
  const slash = block.indexOf('/');
  const base = parseIP(slash < 0 ? block : block.slice(0, slash));
  const addr = parseIP(ip);
  if (!base || !addr || base.bits !== addr.bits) return false;
  const length = slash < 0 ? base.bits : Number(block.slice(slash + 1)) - (base.mapped ? 96 : 0);
  const shift = BigInt(base.bits - Math.max(0, length));
  return base.value >> shift === addr.value >> shift;
}

function parseIP(text: string): { bits: 32 | 128; value: bigint; mapped?: true } | undefined {
  const ip = text.replace(/%.*$/, '');
  const family = isIP(ip);
  if (family === 4) return { bits: 32, value: ip.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(octet), 0n) };
  if (family !== 6) return undefined;
  const mapped = /^::ffff:([0-9.]+)$/i.exec(ip);
  if (mapped && isIP(mapped[1]!) === 4) return { ...parseIP(mapped[1]!)!, mapped: true };
  const groups = (part: string): string[] => {
    if (part === '') return [];
    const out = part.split(':');
    const last = out[out.length - 1]!;
    if (last.includes('.')) {
      const [a, b, c, d] = last.split('.').map(Number) as [number, number, number, number];
      out.splice(-1, 1, ((a << 8) | b).toString(16), ((c << 8) | d).toString(16));
    }
    return out;
  };
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return { bits: 128, value: all.reduce((acc, g) => (acc << 16n) | BigInt(`0x${g}`), 0n) };
}
