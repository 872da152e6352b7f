// Built-in partitions: each manifest partition with a built-in service gets a driver over the
// in-process transport and one receive loop per execution context.

import { FfaDriver } from '../../client-driver/driver.js';
import { EmulatedVm } from '../../client-driver/vm.js';
import { coreOf, type SessionCore } from '../session/core.js';
import type { Spmc } from '../spmc/spmc.js';
import { InProcessConnector } from '../session/in-process.js';
import { SERVICES } from './test-service.js';

export interface RunningPartition {
  id: number;
  driver: FfaDriver;
  /** One receive loop per context; they end when the partition is stopped. */
  loops: Promise<void>[];
}

export async function startBuiltinPartitions(target: SessionCore | Spmc, onError?: (id: number, e: unknown) => void): Promise<RunningPartition[]> {
  const core = coreOf(target);
  const connector = new InProcessConnector(core);
  const running: RunningPartition[] = [];
  for (const p of core.spmc.partitions()) {
    if (p.behaviour.kind !== 'builtin') continue;
    const vm = EmulatedVm.fromAttachment(connector.partition(p.id), p.name, p.execContexts);
    // The partition's image speaks the version its manifest declares.
    const driver = new FfaDriver(vm, { version: p.ffaVersion, onHandlerError: (e) => onError?.(p.id, e) });
    await driver.init();
    const service = SERVICES[p.behaviour.service as keyof typeof SERVICES](driver);
    const loops = Array.from({ length: p.execContexts }, (_, vcpu) => driver.serveDirectRequests(service, vcpu).catch((e) => onError?.(p.id, e)));
    running.push({ id: p.id, driver, loops });
  }
  return running;
}
