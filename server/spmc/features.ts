// FFA_FEATURES, answered as Hafnium's ffa_features_function and ffa_features_feature (api.c) answer
// it, over what this dispatcher handles.
//
// A function is reported when the dispatch table has a handler for it and it exists in the version
// this SPMC implements. The caller's own version does not matter (Hafnium compares with
// FFA_VERSION_COMPILED): a v1.0 caller is told about v1.1 and v1.2 functions too. Hafnium then reports
// some functions only to the callers it serves them to (REPORTED_TO), reports the interfaces an SPMC
// only returns, and ignores the input properties except MEM_RETRIEVE_REQ's. Where Hafnium's answer
// and its own handling of the call disagree, this follows Hafnium; each such case is listed, with its
// source line, in test/features-consistency.test.ts.

import {
  FEATURE_ID_MASK,
  FEATURE_IDS,
  FEATURES_FID_BIT,
  FFA_ERRORS,
  FFA_FUNCTIONS,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  FFA_VERSION_IMPLEMENTED,
  type FfaFunction,
  ffaSuccess,
  fidName,
  formatVersion,
  hex,
  lookupFid,
  MEI_INTID,
  NPI_INTID,
  RETRIEVE_REQ_HYP_RETRIEVE,
  RETRIEVE_REQ_NS_BIT,
  RXTX_MAX_PAGES_SHIFT,
  RXTX_MIN_SIZE_4K,
  SRI_INTID,
} from '../../proto/ffa/index.js';
import type { EndpointKind } from './endpoint.js';
import { type AbiTable, type CallContext, refuse, type Reply } from './state.js';

const { NOT_SUPPORTED } = FFA_ERRORS;

/** Interfaces an SPMC only returns, never handles as a call; FF-A requires them reported. */
const RETURN_ONLY: ReadonlySet<FfaFunction> = new Set<FfaFunction>(['ERROR', 'SUCCESS', 'MEM_RETRIEVE_RESP']);

/**
 * Functions Hafnium reports to one kind of caller only: FFA_YIELD at the secure virtual instance
 * (partitions), FFA_NOTIFICATION_INFO_GET to the normal world's scheduler (every VM here is its own).
 */
const REPORTED_TO: Partial<Record<FfaFunction, EndpointKind>> = {
  YIELD: 'sp',
  NOTIFICATION_INFO_GET: 'vm',
};

const kindName = (k: EndpointKind) => (k === 'sp' ? 'partitions' : 'VMs');

/** Interface properties [w2, w3] of `fn` for this caller, or a refusal (Hafnium's special cases). */
function interfaceProperties({ state, caller }: CallContext, fn: FfaFunction, name: string, props: number): [number, number] | Reply {
  switch (fn) {
    case 'RXTX_MAP': {
      // [1:0] minimum size and alignment (4K); [31:16] the most pages, told to v1.2+ callers only.
      const maxPages = caller.version >= FFA_VERSION_1_2 ? state.limits.rxtxMaxPages << RXTX_MAX_PAGES_SHIFT : 0;
      return [RXTX_MIN_SIZE_4K | maxPages, 0];
    }
    case 'MEM_RETRIEVE_REQ':
      // A v1.1+ caller must say it handles the NS bit; other input bits only draw Hafnium's warning.
      if (caller.version >= FFA_VERSION_1_1 && (props & RETRIEVE_REQ_NS_BIT) === 0) {
        return refuse(
          NOT_SUPPORTED,
          'features.retrieve_ns_bit',
          `FEATURES: a v${formatVersion(caller.version)} caller asking about ${name} must set input property bit 1 (NS-bit handling); it passed ${hex(props)}`,
        );
      }
      // No dynamic buffer; NS-bit handling; hypervisor retrieve requests. w3 (outstanding retrievals) 0.
      return [RETRIEVE_REQ_NS_BIT | RETRIEVE_REQ_HYP_RETRIEVE, 0];
    default:
      return [0, 0];
  }
}

/**
 * Feature IDs (w1 bit 31 clear; bits [30:8] MBZ; no input properties): the interrupt each kind of
 * endpoint takes. Partitions get the Notification Pending and Managed Exit interrupts; VMs, whose
 * scheduler they are, the Schedule Receiver Interrupt. Whatever the caller's version, as Hafnium.
 */
function featureId({ caller }: CallContext, id: number, props: number): Reply {
  if ((id & ~FEATURE_ID_MASK) !== 0) {
    return refuse(NOT_SUPPORTED, 'features.feature_id_mbz', `FEATURES: feature ID ${hex(id)} sets bits [30:8], which must be zero`);
  }
  if (props !== 0) {
    return refuse(NOT_SUPPORTED, 'features.feature_properties', `FEATURES: feature ID ${id} takes no input properties; got ${hex(props)}`);
  }
  const forKind: Record<number, [EndpointKind, number, string]> = {
    [FEATURE_IDS.NPI]: ['sp', NPI_INTID, 'NPI'],
    [FEATURE_IDS.MEI]: ['sp', MEI_INTID, 'MEI'],
    [FEATURE_IDS.SRI]: ['vm', SRI_INTID, 'SRI'],
  };
  const entry = forKind[id];
  if (!entry) return refuse(NOT_SUPPORTED, 'features.unknown_feature', `FEATURES: feature ID ${id} is not one this SPMC provides`);
  const [kind, intid, name] = entry;
  if (caller.kind !== kind)
    return refuse(NOT_SUPPORTED, 'features.feature_not_for_caller', `FEATURES: the ${name} (feature ID ${id}) is provided to ${kindName(kind)} only`);
  return ffaSuccess([intid, 0]);
}

export function featuresAbis(dispatch: () => AbiTable): AbiTable {
  const answer = (ctx: CallContext, id: number, inputProperties: number): Reply => {
    if ((id & FEATURES_FID_BIT) === 0) return featureId(ctx, id, inputProperties);
    const f = lookupFid(id);
    if (!f) return refuse(NOT_SUPPORTED, 'features.unknown_function', `FEATURES: ${hex(id)} is not an FF-A function ID`);
    const name = fidName(f.fid);
    const since = FFA_FUNCTIONS[f.fn].since;
    if (since > FFA_VERSION_IMPLEMENTED) {
      return refuse(
        NOT_SUPPORTED,
        'features.newer_version',
        `FEATURES: ${name} is from FF-A v${formatVersion(since)}; this SPMC implements v${formatVersion(FFA_VERSION_IMPLEMENTED)}`,
      );
    }
    if (RETURN_ONLY.has(f.fn)) return ffaSuccess([0, 0]);
    if (!dispatch()[f.fn]) return refuse(NOT_SUPPORTED, 'features.not_handled', `FEATURES: ${name} is not handled by this SPMC`);
    const only = REPORTED_TO[f.fn];
    if (only && ctx.caller.kind !== only) {
      return refuse(NOT_SUPPORTED, 'features.not_for_caller', `FEATURES: ${name} is reported to ${kindName(only)} only (Hafnium's ffa_features_function)`);
    }
    const props = interfaceProperties(ctx, f.fn, name, inputProperties);
    return Array.isArray(props) ? ffaSuccess(props) : props;
  };
  return {
    FEATURES: {
      handle: (ctx, { id, inputProperties }) => answer(ctx, id, inputProperties),
      // Hafnium reads w1 and w2 only: bits set in w3..w7 do not change the answer.
      onInvalid: (ctx, invalid) => (invalid.call.fn === 'FEATURES' ? answer(ctx, invalid.call.id, invalid.call.inputProperties) : undefined),
    },
  };
}
