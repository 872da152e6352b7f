// FFA_FEATURES: answered from the dispatch table itself, so what is reported is what is handled.

import {
  FEATURE_ID_MASK,
  FEATURE_IDS,
  FEATURES_FID_BIT,
  FFA_VERSION_1_1,
  MEI_INTID,
  NPI_INTID,
  SRI_INTID,
  FFA_ERRORS,
  type FfaFunction,
  FFA_FUNCTIONS,
  ffaError,
  ffaSuccess,
  lookupFid,
} from '../../proto/ffa/index.js';
import type { AbiTable, CallContext, Reply } from './state.js';

/** Interfaces the SPMC only ever returns to a VM; the ACS requires them to be reported. */
const RETURN_ONLY: ReadonlySet<FfaFunction> = new Set<FfaFunction>(['ERROR', 'SUCCESS', 'INTERRUPT', 'MEM_RETRIEVE_RESP']);

/**
 * Feature IDs (w1 bit 31 clear; bits [30:8] MBZ): the interrupt each kind of endpoint takes.
 * Partitions get the Notification Pending and Managed Exit interrupts; VMs, whose scheduler they
 * are, the Schedule Receiver Interrupt.
 */
function featureInterrupt({ caller }: CallContext, id: number): number | undefined {
  if (caller.version < FFA_VERSION_1_1 || (id & ~FEATURE_ID_MASK) !== 0) return undefined;
  switch (id) {
    case FEATURE_IDS.NPI:
      return caller.kind === 'sp' ? NPI_INTID : undefined;
    case FEATURE_IDS.MEI:
      return caller.kind === 'sp' ? MEI_INTID : undefined;
    case FEATURE_IDS.SRI:
      return caller.kind === 'vm' ? SRI_INTID : undefined;
    default:
      return undefined;
  }
}

export function featuresAbis(dispatch: () => AbiTable): AbiTable {
  return {
    FEATURES: {
      handle(ctx: CallContext, { id, inputProperties }): Reply {
        const notSupported = ffaError(FFA_ERRORS.NOT_SUPPORTED);
        if ((id & FEATURES_FID_BIT) === 0) {
          const intid = featureInterrupt(ctx, id);
          return intid !== undefined && inputProperties === 0 ? ffaSuccess([intid, 0]) : notSupported;
        }
        const f = lookupFid(id);
        if (!f) return notSupported;
        // Report what exists at the caller's negotiated version: a v1.0 driver sees a v1.0 SPMC.
        const spec: { since: number; until?: number } = FFA_FUNCTIONS[f.fn];
        if (spec.since > ctx.caller.version || (spec.until !== undefined && spec.until < ctx.caller.version)) return notSupported;
        if (RETURN_ONLY.has(f.fn)) return inputProperties === 0 ? ffaSuccess([0, 0]) : notSupported;
        const handler = dispatch()[f.fn];
        if (!handler) return notSupported;
        if (handler.features) {
          const props = handler.features(ctx, f.width, inputProperties);
          return props ? ffaSuccess(props) : notSupported;
        }
        return inputProperties === 0 ? ffaSuccess([0, 0]) : notSupported;
      },
    },
  };
}
