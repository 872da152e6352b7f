// FFA_VERSION: negotiation and lock (Hafnium's rule).

import { FFA_VERSION_IMPLEMENTED, isCompatible, SMCCC_NOT_SUPPORTED, toRegisters } from '../../proto/ffa/index.js';
import type { AbiTable, Reply } from './state.js';

/** FFA_VERSION reports failure SMCCC-style: NOT_SUPPORTED in w0, not FFA_ERROR. */
const notSupported = (): Reply => ({ raw: toRegisters([SMCCC_NOT_SUPPORTED]) });

export const versionAbis: AbiTable = {
  VERSION: {
    handle({ caller }, { requested }) {
      if (!isCompatible(requested, FFA_VERSION_IMPLEMENTED)) return notSupported();
      // Once another call has been made the version is fixed; asking for it again is fine.
      if (caller.versionLocked && requested !== caller.version) return notSupported();
      caller.version = requested;
      return { raw: toRegisters([FFA_VERSION_IMPLEMENTED]) };
    },
    onInvalid: () => notSupported(),
  },
};
