// The model's parameters where the partition managers of the field differ: which version it
// reports, how it negotiates, what FFA_FEATURES says, the RX/TX rules, the partition-info layout and
// who the normal world sees. Data only: server/personalities names sets of them; the default is
// Hafnium as this model has always answered (the `hafnium` personality).

import {
  type EndpointId,
  FEATURE_IDS,
  FFA_VERSION_IMPLEMENTED,
  type FfaFunction,
  type FfaVersion,
  MEI_INTID,
  NPI_INTID,
  PARTITION_INFO_SIZE_V1_1,
  RXTX_MIN_SIZE_4K,
  SRI_INTID,
} from '../../proto/ffa/index.js';
import type { EndpointKind } from './endpoint.js';

/**
 * How FFA_VERSION answers a normal-world caller (partitions always get Hafnium's rule):
 * - `hafnium`: a compatible request (same major, minor not above) is taken and the SPMC's version
 *   returned; anything else NOT_SUPPORTED; the version locks at the first other call.
 * - `el3-spmc`: TF-A's EL3 SPMC: any request with bit 31 clear is recorded and the SPMC's own
 *   version returned, never NOT_SUPPORTED for an incompatible one, never locked.
 * - `optee`: OP-TEE's S-EL1 SPMC: below v1.1 it answers v1.0, otherwise v1.1, and that is what it
 *   uses; it may be negotiated again at any time.
 */
export type VmVersionRule = 'hafnium' | 'el3-spmc' | 'optee';

/** A feature ID's answer: who it is reported to and its w2. */
export interface FeatureIdAnswer {
  to: EndpointKind | 'all';
  w2: number;
  name: string;
}

export interface SpmcProfile {
  /** What FFA_VERSION reports and the newest version a caller may negotiate (Hafnium's FFA_VERSION_COMPILED). */
  version: FfaVersion;
  vmVersionRule: VmVersionRule;
  /** FFA_FEATURES(RXTX_MAP) w2[1:0]; RXTX_MAP then refuses smaller or less aligned buffers. */
  rxtxMinSize: number;
  /** FFA_FEATURES(RXTX_MAP) tells v1.2+ callers the most pages in w2[31:16] (Hafnium), or leaves it 0 (TF-A, OP-TEE). */
  rxtxReportMaxPages: boolean;
  /** A second RXTX_MAP is DENIED before its arguments are checked (Hafnium), or after them (TF-A, OP-TEE). */
  rxtxDeniedFirst: boolean;
  /** Partition-info descriptor size for v1.1+ callers: 24 (v1.1/v1.2 layout) or 48 (v1.3 layout). */
  partitionInfoSize: number;
  /** w3 of a PARTITION_INFO_GET that filled RX: the descriptor size, or 0 (OP-TEE before PR #6531). */
  partitionInfoSizeInW3: boolean;
  /**
   * Who the normal world is: `hypervisor` (many VMs; a VM sees the VMs, then the SPs) or `physical`
   * (the non-secure physical instance: one normal-world endpoint, ID 0, that sees the SPs only).
   */
  normalWorld: 'hypervisor' | 'physical';
  /** Functions this SPMC does not handle for VM callers: NOT_SUPPORTED, and FFA_FEATURES agrees. */
  vmUnsupported: readonly FfaFunction[];
  /** Functions handled for VM callers that FFA_FEATURES nevertheless does not report to them. */
  vmFeaturesHidden: readonly FfaFunction[];
  /** FFA_FEATURES w2 for these functions (in place of Hafnium's special cases). */
  featureW2: Partial<Record<FfaFunction, number>>;
  /** Feature IDs (w1 bit 31 clear) and their answers; the rest are NOT_SUPPORTED. */
  featureIds: Readonly<Record<number, FeatureIdAnswer>>;
  /** Feature ID input properties must be 0 and FID ones too, except MEM_RETRIEVE_REQ's (TF-A). */
  strictFeatureProperties: boolean;
}

export const HAFNIUM_FEATURE_IDS: Readonly<Record<number, FeatureIdAnswer>> = {
  [FEATURE_IDS.NPI]: { to: 'sp', w2: NPI_INTID, name: 'NPI' },
  [FEATURE_IDS.MEI]: { to: 'sp', w2: MEI_INTID, name: 'MEI' },
  [FEATURE_IDS.SRI]: { to: 'vm', w2: SRI_INTID, name: 'SRI' },
};

export const DEFAULT_PROFILE: SpmcProfile = {
  version: FFA_VERSION_IMPLEMENTED,
  vmVersionRule: 'hafnium',
  rxtxMinSize: RXTX_MIN_SIZE_4K,
  rxtxReportMaxPages: true,
  rxtxDeniedFirst: true,
  partitionInfoSize: PARTITION_INFO_SIZE_V1_1,
  partitionInfoSizeInW3: true,
  normalWorld: 'hypervisor',
  vmUnsupported: [],
  vmFeaturesHidden: [],
  featureW2: {},
  featureIds: HAFNIUM_FEATURE_IDS,
  strictFeatureProperties: false,
};

/** The one normal-world endpoint's ID at the non-secure physical instance. */
export const PHYSICAL_NWD_ID: EndpointId = 0;

/** The version a caller of this kind negotiates against: partitions keep at least the model's own. */
export const versionFor = (p: SpmcProfile, kind: EndpointKind): FfaVersion => (kind === 'sp' ? Math.max(p.version, FFA_VERSION_IMPLEMENTED) : p.version);
