// FFA_VERSION: negotiation and lock (Hafnium's api_ffa_version).
//
// An endpoint starts at a version: a partition at the one its manifest declares (Hafnium's load.c
// copies the manifest's ffa-version into vm->ffa_version), a VM at v1.0. Until the endpoint makes
// another FF-A call, FFA_VERSION with any version compatible with the SPMC's replaces it, whatever
// the manifest says (a partition declared v1.2 may negotiate v1.1 or v1.0, one declared v1.0 may
// negotiate v1.2); an incompatible request is NOT_SUPPORTED and leaves it as it was. The first other
// call locks it (Hafnium's ffa_handler sets ffa_version_negotiated); from then on asking for the same
// version succeeds and asking for another is NOT_SUPPORTED. The negotiated version is the
// endpoint's from then on, for everything: its layouts and what others see of it. The manifest keeps
// the declared one (Spmc.partition(id).ffaVersion), and a remote partition that attaches again
// starts from it again.

//
// Other partition managers answer a normal-world caller otherwise (SpmcProfile.vmVersionRule):
// TF-A's EL3 SPMC (ffa_version_handler) records any well-formed request and returns its own
// version; OP-TEE's S-EL1 SPMC (spmc_exchange_version) settles on v1.0 or v1.1. Neither locks.

import { FFA_VERSION_1_0, FFA_VERSION_1_1, isCompatible, isVersionWord, SMCCC_NOT_SUPPORTED, toRegisters, type FfaVersion } from '../../proto/ffa/index.js';
import { versionFor } from './profile.js';
import type { AbiTable, CallContext, Reply } from './state.js';

/** FFA_VERSION reports failure SMCCC-style: NOT_SUPPORTED in w0, not FFA_ERROR (so no reason). */
const notSupported = (): Reply => ({ raw: toRegisters([SMCCC_NOT_SUPPORTED]) });

function negotiate(ctx: CallContext, requested: FfaVersion): Reply {
  const { caller, state } = ctx;
  const own = versionFor(state.profile, caller.kind);
  const rule = caller.kind === 'vm' ? state.profile.vmVersionRule : 'hafnium';
  if (rule === 'el3-spmc') {
    if (!isVersionWord(requested)) return notSupported();
    // Recorded as asked; a request this model cannot speak leaves the layouts at the SPMC's own.
    caller.version = isCompatible(requested, own) ? requested : own;
    return { raw: toRegisters([own]) };
  }
  if (rule === 'optee') {
    if (!isVersionWord(requested)) return notSupported();
    caller.version = requested < FFA_VERSION_1_1 ? FFA_VERSION_1_0 : FFA_VERSION_1_1;
    return { raw: toRegisters([caller.version]) };
  }
  if (!isCompatible(requested, own)) return notSupported();
  if (caller.versionLocked && requested !== caller.version) return notSupported();
  caller.version = requested;
  return { raw: toRegisters([own]) };
}

export const versionAbis: AbiTable = {
  VERSION: {
    handle: (ctx, { requested }) => negotiate(ctx, requested),
    // Hafnium reads w1 only: bits set in w2..w7 do not change the answer.
    onInvalid: (ctx, invalid) => (invalid.call.fn === 'VERSION' ? negotiate(ctx, invalid.call.requested) : notSupported()),
  },
};
