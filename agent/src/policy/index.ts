// Authorization and peer authentication: pure functions over the mesh state that the inbound
// proxy calls per connection or request.
export { applicablePolicies, authorize, needsHttp } from './authorize.js';
export { authorizationChanged } from './inputs.js';
export { mtlsMode, type EffectiveMtlsMode } from './peer-authentication.js';
export type { AuthzDecision, AuthzHttp, AuthzRequest } from './request.js';
export { ROOT_NAMESPACE } from './scope.js';
