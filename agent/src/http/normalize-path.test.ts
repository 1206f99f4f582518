import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizePath } from './normalize-path.js';

describe('normalizePath: Istio pathNormalization BASE', () => {
  const cases: Array<[string, string | undefined]> = [
    ['/admin', '/admin'],
    ['/./admin', '/admin'],
    ['/a/../admin', '/admin'],
    ['/a/b/../../admin/', '/admin/'],
    ['/../../admin', '/admin'],
    ['/admin/..', '/'],
    ['/%2e%2E/admin', '/admin'],
    ['/%61%44min', '/aDmin'],
    ['/a\\..\\admin', '/admin'],
    // Reserved escapes stay encoded; no double decoding.
    ['/a%2fb', '/a%2fb'],
    ['/%252e%252e/admin', '/%252e%252e/admin'],
    // BASE keeps repeated slashes (MERGE_SLASHES would merge them).
    ['//admin', '//admin'],
    ['/a/./b?x=/../y#f', '/a/b?x=/../y#f'],
    ['/%00', undefined],
  ];
  for (const [input, expected] of cases) {
    it(`${input} → ${String(expected)}`, () => assert.equal(normalizePath(input), expected));
  }
});
