import { it } from 'node:test';
import assert from 'node:assert/strict';
import { encodeGrpcMessage } from './grpc-status.js';

it('percent-encodes grpc-message as the gRPC spec asks: only "%" and non-printable or non-ASCII bytes', () => {
  assert.equal(encodeGrpcMessage('fault filter abort by FaultInjection shop/f: 100%'), 'fault filter abort by FaultInjection shop/f: 100%25');
  assert.equal(encodeGrpcMessage('a\nb é'), 'a%0Ab %C3%A9');
  // What grpc-js (decodeURI) and grpc-go (any %XX) read back.
  assert.equal(decodeURI(encodeGrpcMessage('reset reason: remote/ü%')), 'reset reason: remote/ü%');
});
