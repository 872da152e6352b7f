// The rules in force go into the trace as `faults` records (now, and on every change): a replay
// loads them at the same point, and applies each rule where a record carries its mark.

import type { Tracer } from '../debug/tracer.js';
import type { FaultInjector } from './injector.js';

export function traceFaults(faults: FaultInjector, tracer: Tracer): () => void {
  tracer.note({ kind: 'faults', ...faults.snapshot() });
  return faults.onChange((set) => tracer.note({ kind: 'faults', ...set }));
}
