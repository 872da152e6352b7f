// Fault injection: rules (rules.ts) matched against every call (matcher.ts) by a link of the
// session core's interceptor chain (injector.ts), from a file, HTTP or the gRPC Debug service.

export { FAULTS_VIA, FaultInjector, type FaultInjectorOptions, type FaultRuleView } from './injector.js';
export { FaultRuleError, type FaultRule, type FaultRuleSet, parseRule, parseRuleSet } from './rules.js';
export { readFaultsFile } from './file.js';
export { traceFaults } from './trace.js';
export { CLOBBER_PATTERN } from './outcomes.js';
