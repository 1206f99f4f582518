// The testbed's error type: a stable code and a message naming what to check, like the
// agent's NodemeshError (whose code catalogue belongs to the agent, not to this script).

export type TestbedErrorCode =
  | 'NM_ERR_TESTBED_SPEC'
  | 'NM_ERR_TESTBED_UNKNOWN'
  | 'NM_ERR_TESTBED_CGROUP2'
  | 'NM_ERR_TESTBED_COMMAND'
  | 'NM_ERR_TESTBED_DESTROYED'
  | 'NM_ERR_TESTBED_SERVER';

export class TestbedError extends Error {
  readonly code: TestbedErrorCode;

  constructor(code: TestbedErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TestbedError';
    this.code = code;
  }
}
