// The built-in test service of the default manifest's partitions: a small command table served
// through the client driver's receive loop, like any other endpoint.

import { errorCodeToWord, U32 } from '../../proto/ffa/index.js';
import type { DirectRequestHandler, FfaDriver } from '../../client-driver/driver.js';
import { FfaDriverError } from '../../client-driver/errno.js';
import { PARTITION_COMMANDS as CMD } from './commands.js';

export function testService(drv: FfaDriver): DirectRequestHandler {
  return async (req, vcpu) => {
    if (req.kind === 'req2') return req.args; // every service UUID of the partition echoes x4..x17
    const [w3 = 0n, w4 = 0n, w5 = 0n, w6 = 0n, w7 = 0n] = req.args;
    switch (Number(w3 & U32)) {
      case CMD.FORWARD: {
        const next = Number(w4 & 0xffffn);
        const rest = (w4 & U32) >> 16n;
        const inner = rest !== 0n ? [BigInt(CMD.FORWARD), rest, w5, w6, w7] : [BigInt(CMD.ECHO), w5, w6, w7, 0n];
        try {
          return await drv.sendDirectReq(next, inner, { vcpu, width: 64 });
        } catch (e) {
          if (e instanceof FfaDriverError && e.ffaError !== undefined) return [BigInt(CMD.ERROR), errorCodeToWord(e.ffaError), 0n, 0n, 0n];
          throw e;
        }
      }
      case CMD.YIELD:
        await drv.yield(vcpu);
        return req.args;
      case CMD.ERROR:
        return [w3, w5 & U32, 0n, 0n, 0n];
      default:
        return req.args;
    }
  };
}

export const SERVICES = { 'test-service': testService } as const;
