// The FF-A ABI as code, shared by the SPMC, the driver and the trace.
export * from './version.js';
export * from './errors.js';
export * from './functions.js';
export * from './registers.js';
export * from './uuid.js';
export * from './endpoints.js';
export * from './features.js';
export * from './partition-info.js';
export * from './calls.js';
export * from './memory.js';
export * from './regions.js';
export * from './notifications.js';
export * from './indirect-message.js';
export * from './ns-res-info.js';
