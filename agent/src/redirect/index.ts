// The capture side of the data path (DESIGN.md step 1) as the rest of the agent sees it.
export { Redirect, type FlowOrigin, type FlowRecord, type MeshDestination, type PodMtls, type RedirectOptions, type RedirectStatus } from './redirect.js';
export { cgroupId, checkPrerequisites, findCgroup2Mount } from './prerequisites.js';
export { PlaintextSteering, type SteeredPod, type SteeringStatus } from './plaintext-steering.js';
export type { KernelMtlsMode } from './abi.js';
