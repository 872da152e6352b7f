// The personalities: which partition manager of the field the server answers as. Each is data: a
// few model parameters (server/spmc/profile.ts) and named hooks on the session core's interceptor
// chain (hooks.ts), with what it reproduces, its public sources, and what the Linux driver
// (drivers/firmware/arm_ffa/driver.c) would do against it. Not forks of the model.

import {
  FEATURE_IDS,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  FFA_VERSION_1_3,
  MEM_SEND_DYNAMIC_BUFFER,
  NOTIFICATION_FEATURE_NO_PER_VCPU_SP,
  NOTIFICATION_FEATURE_NO_PER_VCPU_VM,
  PARTITION_INFO_SIZE_V1_3,
  RXTX_MIN_SIZE_64K,
  SRI_INTID,
} from '../../proto/ffa/index.js';
import { HAFNIUM_FEATURE_IDS, type SpmcProfile } from '../spmc/profile.js';

/** Hooks a personality puts on the interceptor chain (hooks.ts implements each). */
export type PersonalityHook = 'clobber-x8-x17';

export interface Personality {
  readonly name: string;
  /** One line (`serve --personality list`). */
  readonly summary: string;
  /** What it reproduces, and where each difference comes from. */
  readonly reproduces: string;
  /** Public sources: source files at a tag, issues, pull requests. */
  readonly sources: readonly string[];
  /** What the Linux arm_ffa driver would do against it (the README table). */
  readonly linux: string;
  readonly profile: Partial<SpmcProfile>;
  readonly hooks: readonly PersonalityHook[];
}

/** Hafnium 2.14 (tag v2.14.0, src/api.c): FF-A v1.3. */
const HAFNIUM_2_14: Partial<SpmcProfile> = {
  version: FFA_VERSION_1_3,
  featureIds: {
    ...HAFNIUM_FEATURE_IDS,
    // ffa_features_feature: FFA_FEATURE_NOTIFICATION, per-vCPU notifications unsupported for VMs and SPs.
    [FEATURE_IDS.NOTIFICATION]: { to: 'all', w2: NOTIFICATION_FEATURE_NO_PER_VCPU_VM | NOTIFICATION_FEATURE_NO_PER_VCPU_SP, name: 'notification feature' },
  },
};

export const PERSONALITIES: readonly Personality[] = [
  {
    name: 'hafnium',
    summary: 'Hafnium as hypervisor and SPMC, FF-A v1.2 (the default: this model as it always answered)',
    reproduces: 'Hafnium: every check order and error code of the model; VMs see the VMs, then the SPs',
    sources: ['TF-Hafnium/hafnium src/api.c, src/ffa_memory.c'],
    linux: 'works (the reference the Linux driver is tested against)',
    profile: {},
    hooks: [],
  },
  {
    name: 'hafnium-2.14',
    summary: 'Hafnium 2.14: FF-A v1.3, FFA_NS_RES_INFO_GET for VMs, FFA_ABORT for partitions, notification feature ID 4',
    reproduces:
      'FFA_VERSION answers 1.3 and takes any 1.x up to 1.3 (api_ffa_version); FEATURES reports NS_RES_INFO_GET to VMs only, ABORT to partitions only, ' +
      'feature ID 4 with w2 = 0x3; NS_RES_INFO_GET lists the VMs’ RX/TX buffers and memory lent or shared to partitions; ABORT from a partition answers ' +
      'ABORTED to the request it served. Descriptors stay 24 bytes (sizeof(struct ffa_partition_info) is 24 at v2.14.0)',
    sources: ['TF-Hafnium/hafnium v2.14.0 src/api.c: api_ffa_version, ffa_features_function, ffa_features_feature, api_ffa_ns_res_info_get, api_ffa_abort'],
    linux: 'works: asks for 1.2, gets 1.3 and runs as 1.2 (same major, older minor)',
    profile: HAFNIUM_2_14,
    hooks: [],
  },
  {
    name: 'tf-a-el3-spmc',
    summary: "TF-A's EL3 SPMC: own version for any request, no feature IDs, SPs only, endpoint 0, no notifications or indirect messages",
    reproduces:
      'FFA_VERSION records any request with bit 31 clear and answers 1.2, never NOT_SUPPORTED, never locked; FEATURES: no feature IDs, ' +
      'input properties must be 0, RXTX_MAP w2 = 0 (no page maximum), not for the normal world: MEM_DONATE, notifications, MSG_SEND2, ' +
      'PARTITION_INFO_GET_REGS, CONSOLE_LOG, MSG_WAIT; RXTX_MAP checks its arguments before a second map is DENIED; PARTITION_INFO_GET lists the SPs only; ' +
      'the normal world is one endpoint, ID 0',
    sources: [
      'ARM-software/arm-trusted-firmware services/std_svc/spm/el3_spmc/spmc_main.c: ffa_version_handler, ffa_features_handler, rxtx_map_handler, partition_info_get_handler, ffa_id_get_handler',
    ],
    linux: 'works without notifications (FEATURES(SRI) and NOTIFICATION_BITMAP_CREATE are NOT_SUPPORTED, so ffa_notifications_setup gives up cleanly)',
    profile: {
      version: FFA_VERSION_1_2,
      vmVersionRule: 'el3-spmc',
      rxtxReportMaxPages: false,
      rxtxDeniedFirst: false,
      normalWorld: 'physical',
      featureIds: {},
      strictFeatureProperties: true,
      vmUnsupported: [
        'MEM_DONATE',
        'MEM_RELINQUISH',
        'MSG_WAIT',
        'YIELD',
        'MSG_SEND2',
        'RX_ACQUIRE',
        'NOTIFICATION_BITMAP_CREATE',
        'NOTIFICATION_BITMAP_DESTROY',
        'NOTIFICATION_BIND',
        'NOTIFICATION_UNBIND',
        'NOTIFICATION_SET',
        'NOTIFICATION_GET',
        'NOTIFICATION_INFO_GET',
        'PARTITION_INFO_GET_REGS',
        'CONSOLE_LOG',
        'MEM_PERM_GET',
        'MEM_PERM_SET',
        'SECONDARY_EP_REGISTER',
      ],
    },
    hooks: [],
  },
  {
    name: 'optee',
    summary: "OP-TEE's S-EL1 SPMC: FF-A v1.1 at most, SPs only, endpoint 0, FEATURES without ID_GET/RUN/LEND/DONATE/RETRIEVE",
    reproduces:
      'FFA_VERSION answers 1.0 below 1.1 and 1.1 otherwise, and may be asked again (spmc_exchange_version); FEATURES (handle_features): SRI to the normal world, ' +
      'MEI with w2 = 0, no NPI, RXTX_MAP w2 = 0, MEM_SHARE w2 bit 0 (dynamic buffer), and no answer for ID_GET and RUN although it handles them; ' +
      'MEM_LEND, MEM_DONATE, MEM_RETRIEVE_REQ, MEM_FRAG_RX and MSG_SEND2 are not for the normal world; RXTX_MAP checks the page count before a second map is DENIED; ' +
      'PARTITION_INFO_GET lists the SPs only; the normal world is one endpoint, ID 0',
    sources: [
      'OP-TEE/optee_os core/arch/arm/kernel/thread_spmc.c: spmc_exchange_version, handle_features, spmc_handle_rxtx_map, spmc_handle_partition_info_get',
    ],
    linux:
      'works at v1.1 (no DIRECT_REQ2, no register-form discovery); mem_ops_native comes from FEATURES(MEM_SHARE_64). MEM_SHARE’s dynamic-buffer bit is reported, but this model still takes descriptors only in TX',
    profile: {
      version: FFA_VERSION_1_1,
      vmVersionRule: 'optee',
      rxtxReportMaxPages: false,
      rxtxDeniedFirst: false,
      normalWorld: 'physical',
      featureIds: {
        [FEATURE_IDS.SRI]: { to: 'vm', w2: SRI_INTID, name: 'SRI' },
        [FEATURE_IDS.MEI]: { to: 'all', w2: 0, name: 'MEI' },
      },
      featureW2: { MEM_SHARE: MEM_SEND_DYNAMIC_BUFFER },
      vmUnsupported: [
        'MEM_LEND',
        'MEM_DONATE',
        'MEM_RETRIEVE_REQ',
        'MEM_FRAG_RX',
        'MSG_SEND2',
        'RX_ACQUIRE',
        'YIELD',
        'MSG_WAIT',
        'MEM_PERM_GET',
        'MEM_PERM_SET',
      ],
      vmFeaturesHidden: ['ID_GET', 'RUN'],
    },
    hooks: [],
  },
  {
    name: 'physical',
    summary: 'the non-secure physical instance, no hypervisor: one normal-world endpoint, ID 0, that sees the SPs only',
    reproduces: 'a system without a hypervisor (and pKVM’s host view): PARTITION_INFO_GET lists only SPs, ID_GET answers 0, a second VM cannot attach',
    sources: ['FF-A DEN0077 §2 (physical FF-A instances)', 'issue 16 (boot loaders assume this view)'],
    linux: 'works: vm_id 0, every listed partition is an SP; the driver registers itself as device 0',
    profile: { normalWorld: 'physical' },
    hooks: [],
  },
  {
    name: 'descriptor-48',
    summary: 'Hafnium 2.14 with the v1.3 48-byte partition-info descriptors of later Hafnium (NVIDIA NV-Kernels #437/#438/#453)',
    reproduces:
      'a v1.3 SPMC returning 48-byte partition-info descriptors (protocol UUID, image UUID, partition version) to v1.1+ callers, in RX (w3 = 48) ' +
      'and in PARTITION_INFO_GET_REGS (x2[63:48] = 48, two descriptors per call)',
    sources: [
      'NVIDIA/NV-Kernels#437, #438, #453 (arm_ffa: honor partition info descriptor size)',
      'TF-Hafnium/hafnium after v2.14: sizeof(struct ffa_partition_info) == 48',
    ],
    linux: 'before the fix, __ffa_partition_info_get_regs stepped 3 registers per descriptor: every other partition was read from a slice of two',
    profile: { ...HAFNIUM_2_14, partitionInfoSize: PARTITION_INFO_SIZE_V1_3 },
    hooks: [],
  },
  {
    name: 'partition-info-size-zero',
    summary: 'PARTITION_INFO_GET answers w3 = 0 instead of the descriptor size (OP-TEE before PR #6531)',
    reproduces: 'OP-TEE’s SPMC before its fix: FFA_PARTITION_INFO_GET filled RX with 24-byte descriptors but returned 0 in w3',
    sources: ['OP-TEE/optee_os#6531 (core: ffa: return fpi size from FFA_PARTITION_INFO_GET)'],
    linux: '__ffa_partition_info_get takes w3 as the stride: with 0 it copies nothing and registers every partition as ID 0',
    profile: { partitionInfoSizeInW3: false },
    hooks: [],
  },
  {
    name: 'min-rxtx-64k',
    summary: 'FEATURES(RXTX_MAP) reports a 64 KiB minimum buffer; RXTX_MAP refuses smaller or less aligned buffers',
    reproduces: 'a system whose minimum RX/TX buffer is 64 KiB (w2[1:0] = 1): RXTX_MAP of fewer than 16 pages, or not 64 KiB aligned, is INVALID_PARAMETERS',
    sources: ['NVIDIA/NV-Kernels#437, #438, #453 (drivers that rejected RXTX_MAP sizes above 4 KiB)'],
    linux: 'works since it reads RXTX_MAP_MIN_BUFSZ; alloc_pages_exact gives a 64 KiB aligned buffer',
    profile: { rxtxMinSize: RXTX_MIN_SIZE_64K },
    hooks: [],
  },
  {
    name: 'clobber-x8-x17',
    summary: 'answers to v1.2 callers do not preserve x8..x17 (RustedFirmware-A/rusted-firmware-a#96)',
    reproduces: 'an SPMC that leaves garbage in x8..x17 of answers whose results end at x7 (TFTF: "FF-A callee preserves GP register set per SMCCC")',
    sources: ['RustedFirmware-A/rusted-firmware-a#96'],
    linux: 'works: it reads only the result registers of each answer',
    profile: {},
    hooks: ['clobber-x8-x17'],
  },
];

export const PERSONALITY_NAMES: readonly string[] = PERSONALITIES.map((p) => p.name);

export const DEFAULT_PERSONALITY = 'hafnium';

/** The personality called `name`, or undefined. */
export const findPersonality = (name: string): Personality | undefined => PERSONALITIES.find((p) => p.name === name);
