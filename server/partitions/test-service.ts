// The built-in test service of the default manifest's partitions: a small command table served
// through the client driver's receive loop, like any other endpoint.

import { errorCodeFromWord, errorCodeToWord, errorName, hex, joinU64, U32 } from '../../proto/ffa/index.js';
import type { DirectRequestHandler, FfaDriver } from '../../client-driver/driver.js';
import { FfaDriverError } from '../../client-driver/errno.js';
import { TransportError } from '../../client-driver/transport/transport.js';
import { MAX_MEMORY_ACCESS } from '../../proto/wire.js';
import { FFA_ERRORS, FFA_PAGE_SIZE } from '../../proto/ffa/index.js';
import { PARTITION_COMMANDS as CMD, memCommandType } from './commands.js';

/** An FF-A error as the w4 answer word; anything else is the service's own failure. */
async function status(op: () => Promise<unknown>): Promise<bigint> {
  try {
    await op();
    return 0n;
  } catch (e) {
    if (e instanceof FfaDriverError && e.ffaError !== undefined) return errorCodeToWord(e.ffaError);
    throw e;
  }
}

export function testService(drv: FfaDriver): DirectRequestHandler {
  // Notifications and indirect messages arrive through the NPI: log them on the console, and
  // send every indirect message back to its sender (the indirect echo).
  drv.notifier.onNotified = ({ fromSp, fromVm }, vcpu) => drv.consoleLog(`notified from-sp=${hex(fromSp)} from-vm=${hex(fromVm)}\n`, vcpu);
  drv.notifier.onUnclaimedMessage = async (msg, vcpu) => {
    const echoed = await status(() => drv.sendIndirect(msg.sender, msg.payload, { vcpu, uuid: msg.uuid }));
    await drv.consoleLog(
      `message from ${hex(msg.sender)}: ${msg.payload.length} bytes, echo ${echoed === 0n ? 'sent' : errorName(errorCodeFromWord(echoed))}\n`,
      vcpu,
    );
  };

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
      case CMD.NOTIFY:
        return [
          w3,
          await status(() =>
            drv.success(
              {
                fn: 'NOTIFICATION_SET',
                route: { source: drv.vmId, destination: Number(w4 & 0xffffn) },
                perVcpu: false,
                delaySri: false,
                vcpu: 0,
                bitmap: joinU64(w5, w6),
              },
              vcpu,
            ),
          ),
          0n,
          0n,
          0n,
        ];
      case CMD.BIND:
        return [
          w3,
          await status(() =>
            drv.success(
              {
                fn: 'NOTIFICATION_BIND',
                route: { source: Number(w4 & 0xffffn), destination: drv.vmId },
                perVcpu: false,
                bitmap: joinU64(w5, w6),
              },
              vcpu,
            ),
          ),
          0n,
          0n,
          0n,
        ];
      case CMD.SEND2: {
        const payload = new Uint8Array(24);
        const dv = new DataView(payload.buffer);
        [w5, w6, w7].forEach((w, i) => dv.setBigUint64(i * 8, BigInt.asUintN(64, w), true));
        return [w3, await status(() => drv.sendIndirect(Number(w4 & 0xffffn), payload, { vcpu })), 0n, 0n, 0n];
      }
      case CMD.MEM:
        return [w3, await memCommand(drv, req.source, joinU64(w4, w5), Number(w6 & 0xffn), Number(w7 & U32)), 0n, 0n, 0n];
      default:
        return req.args;
    }
  };
}

/** Retrieve, fill with `pattern`, check, relinquish (unless donated): 0 or the FF-A error, as a word. */
async function memCommand(drv: FfaDriver, sender: number, handle: bigint, pattern: number, typeNumber: number): Promise<bigint> {
  const type = memCommandType(typeNumber);
  if (!type) return errorCodeToWord(FFA_ERRORS.INVALID_PARAMETERS);
  try {
    const mem = await drv.memRetrieve({ handle, sender, type });
    for (const c of mem.constituents) {
      const bytes = BigInt(c.pageCount) * BigInt(FFA_PAGE_SIZE);
      for (let off = 0n; off < bytes; off += BigInt(MAX_MEMORY_ACCESS)) {
        const n = Number(bytes - off < BigInt(MAX_MEMORY_ACCESS) ? bytes - off : BigInt(MAX_MEMORY_ACCESS));
        await drv.vm.write(c.address + off, new Uint8Array(n).fill(pattern));
        const back = await drv.vm.read(c.address + off, n);
        if (!back.every((b) => b === pattern)) return errorCodeToWord(FFA_ERRORS.ABORTED);
      }
    }
    if (type !== 'donate') await drv.memRelinquish(handle);
    return 0n;
  } catch (e) {
    if (e instanceof FfaDriverError && e.ffaError !== undefined) return errorCodeToWord(e.ffaError);
    if (e instanceof TransportError) return errorCodeToWord(FFA_ERRORS.ABORTED); // a fault on its memory
    throw e;
  }
}

export const SERVICES = { 'test-service': testService } as const;
