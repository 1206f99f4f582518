import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GrpcCode, encodeGrpcMessage, grpcCodeForHttp, grpcTimeoutMs } from './grpc-status.js';

describe('GrpcCode', () => {
  it('numbers the codes as the gRPC spec does', () => {
    assert.equal(GrpcCode.OK, 0);
    assert.equal(GrpcCode.DEADLINE_EXCEEDED, 4);
    assert.equal(GrpcCode.RESOURCE_EXHAUSTED, 8);
    assert.equal(GrpcCode.UNAVAILABLE, 14);
    assert.equal(GrpcCode.UNAUTHENTICATED, 16);
  });
});

describe('grpcCodeForHttp', () => {
  it("follows gRPC's HTTP to gRPC status table", () => {
    const table: Array<[number, keyof typeof GrpcCode]> = [
      [400, 'INTERNAL'],
      [401, 'UNAUTHENTICATED'],
      [403, 'PERMISSION_DENIED'],
      [404, 'UNIMPLEMENTED'],
      [429, 'UNAVAILABLE'],
      [502, 'UNAVAILABLE'],
      [503, 'UNAVAILABLE'],
      [504, 'UNAVAILABLE'],
    ];
    for (const [status, name] of table) assert.equal(grpcCodeForHttp(status), GrpcCode[name], `HTTP ${status}`);
  });

  it('answers UNKNOWN for any other status', () => {
    for (const status of [200, 302, 405, 408, 500, 501]) assert.equal(grpcCodeForHttp(status), GrpcCode.UNKNOWN, `HTTP ${status}`);
  });
});

describe('encodeGrpcMessage', () => {
  it('leaves printable ASCII readable, spaces included', () => {
    assert.equal(encodeGrpcMessage('no healthy upstream'), 'no healthy upstream');
  });

  it("percent-encodes '%', control characters and non-ASCII as UTF-8", () => {
    assert.equal(encodeGrpcMessage('100%'), '100%25');
    assert.equal(encodeGrpcMessage('a\nb'), 'a%0Ab');
    assert.equal(encodeGrpcMessage('café'), 'caf%C3%A9');
  });

  it('produces only header-safe characters that percent-decode to the message', () => {
    for (const message of ['upstream reset: code 2', 'route shop/web: 50% → v2\r\n', '日本 ✓ "quoted" ;,/?']) {
      const encoded = encodeGrpcMessage(message);
      assert.match(encoded, /^[\x20-\x7e]*$/);
      assert.equal(decodeURIComponent(encoded), message);
    }
  });
});

describe('grpcTimeoutMs', () => {
  it('converts every unit of the grpc-timeout header to milliseconds', () => {
    assert.equal(grpcTimeoutMs('1H'), 3_600_000);
    assert.equal(grpcTimeoutMs('2M'), 120_000);
    assert.equal(grpcTimeoutMs('5S'), 5000);
    assert.equal(grpcTimeoutMs('100m'), 100);
    assert.equal(grpcTimeoutMs('1500u'), 1.5);
    assert.equal(grpcTimeoutMs('2000000n'), 2);
    assert.equal(grpcTimeoutMs('99999999S'), 99_999_999_000);
  });

  it('is undefined when absent or not a valid TimeoutValue + TimeoutUnit', () => {
    for (const value of [undefined, '', '10', 'S', '10s', '10ms', '1.5S', '-1S', ' 1S', '1S ', '123456789S']) {
      assert.equal(grpcTimeoutMs(value), undefined, JSON.stringify(value));
    }
  });
});
