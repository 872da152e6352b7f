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
//
// Another partition manager's answers (SpmcProfile) change the data here, not the logic: the
// version functions are compared with, the functions not handled or not reported to VMs, the
// feature IDs, and w2 for RXTX_MAP and a few others.

import {
  FEATURE_ID_MASK,
  FEATURES_FID_BIT,
  FFA_ERRORS,
  FFA_FUNCTIONS,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  type FfaFunction,
  ffaSuccess,
  fidName,
  formatVersion,
  hex,
  lookupFid,
  RETRIEVE_REQ_HYP_RETRIEVE,
  RETRIEVE_REQ_NS_BIT,
  RXTX_MAX_PAGES_SHIFT,
} from '../../proto/ffa/index.js';
import type { EndpointKind } from './endpoint.js';
import { versionFor } from './profile.js';
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
  // v1.3 (reported only where the profile's version has them): Hafnium 2.14's ffa_features_function.
  NS_RES_INFO_GET: 'vm',
  ABORT: 'sp',
};

const kindName = (k: EndpointKind) => (k === 'sp' ? 'partitions' : 'VMs');

/** Interface properties [w2, w3] of `fn` for this caller, or a refusal (Hafnium's special cases). */
function interfaceProperties({ state, caller }: CallContext, fn: FfaFunction, name: string, props: number): [number, number] | Reply {
  const { profile } = state;
  const given = profile.featureW2[fn];
  if (given !== undefined) return [given, 0];
  switch (fn) {
    case 'RXTX_MAP': {
      // [1:0] minimum size and alignment; [31:16] the most pages, told to v1.2+ callers only.
      const maxPages = profile.rxtxReportMaxPages && caller.version >= FFA_VERSION_1_2 ? state.limits.rxtxMaxPages << RXTX_MAX_PAGES_SHIFT : 0;
      return [profile.rxtxMinSize | maxPages, 0];
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
 * Feature IDs (w1 bit 31 clear; bits [30:8] MBZ; no input properties): by default the interrupt each
 * kind of endpoint takes. Partitions get the Notification Pending and Managed Exit interrupts; VMs,
 * whose scheduler they are, the Schedule Receiver Interrupt. Whatever the caller's version, as
 * Hafnium. (The profile's table says which IDs exist and for whom.)
 */
function featureId({ caller, state }: CallContext, id: number, props: number): Reply {
  if ((id & ~FEATURE_ID_MASK) !== 0) {
    return refuse(NOT_SUPPORTED, 'features.feature_id_mbz', `FEATURES: feature ID ${hex(id)} sets bits [30:8], which must be zero`);
  }
  if (props !== 0) {
    return refuse(NOT_SUPPORTED, 'features.feature_properties', `FEATURES: feature ID ${id} takes no input properties; got ${hex(props)}`);
  }
  const entry = state.profile.featureIds[id];
  if (!entry) return refuse(NOT_SUPPORTED, 'features.unknown_feature', `FEATURES: feature ID ${id} is not one this SPMC provides`);
  const { to, w2, name } = entry;
  if (to !== 'all' && caller.kind !== to)
    return refuse(NOT_SUPPORTED, 'features.feature_not_for_caller', `FEATURES: the ${name} (feature ID ${id}) is provided to ${kindName(to)} only`);
  return ffaSuccess([w2, 0]);
}

export function featuresAbis(dispatch: () => AbiTable): AbiTable {
  const answer = (ctx: CallContext, id: number, inputProperties: number): Reply => {
    if ((id & FEATURES_FID_BIT) === 0) return featureId(ctx, id, inputProperties);
    const f = lookupFid(id);
    if (!f) return refuse(NOT_SUPPORTED, 'features.unknown_function', `FEATURES: ${hex(id)} is not an FF-A function ID`);
    const name = fidName(f.fid);
    const since = FFA_FUNCTIONS[f.fn].since;
    const { profile } = ctx.state;
    const implemented = versionFor(profile, ctx.caller.kind);
    if (since > implemented) {
      return refuse(
        NOT_SUPPORTED,
        'features.newer_version',
        `FEATURES: ${name} is from FF-A v${formatVersion(since)}; this SPMC implements v${formatVersion(implemented)}`,
      );
    }
    if (profile.strictFeatureProperties && inputProperties !== 0 && f.fn !== 'MEM_RETRIEVE_REQ') {
      return refuse(NOT_SUPPORTED, 'features.input_properties', `FEATURES: ${name} takes no input properties here; got ${hex(inputProperties)}`);
    }
    if (RETURN_ONLY.has(f.fn)) return ffaSuccess([0, 0]);
    const vm = ctx.caller.kind === 'vm';
    if (!dispatch()[f.fn] || (vm && profile.vmUnsupported.includes(f.fn)))
      return refuse(NOT_SUPPORTED, 'features.not_handled', `FEATURES: ${name} is not handled by this SPMC`);
    if (vm && profile.vmFeaturesHidden.includes(f.fn)) {
      return refuse(NOT_SUPPORTED, 'features.not_reported', `FEATURES: this SPMC handles ${name} but does not report it to VMs`);
    }
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
