// FFA_FEATURES: feature IDs (w1 bit 31 clear) and the interface properties some FIDs report.

/** w1 bit 31 set: w1 is a FID; clear: a feature ID in [7:0] with [30:8] MBZ. */
export const FEATURES_FID_BIT = 0x80000000;
export const FEATURE_ID_MASK = 0xff;

export const FEATURE_IDS = {
  /** Notification Pending Interrupt */
  NPI: 1,
  /** Schedule Receiver Interrupt */
  SRI: 2,
  /** Managed Exit Interrupt */
  MEI: 3,
  /** Notification features (FF-A v1.3): w2 says which optional notification features are absent. */
  NOTIFICATION: 4,
} as const;
export type FeatureIdName = keyof typeof FEATURE_IDS;

/** Interrupt IDs this SPMC reports for the feature IDs (Hafnium's values). */
export const NPI_INTID = 5;
export const MEI_INTID = 4;
export const SRI_INTID = 8;

/** FEATURES(NOTIFICATION) w2 (v1.3): per-vCPU notifications are not supported for VMs (bit 0), for SPs (bit 1). */
export const NOTIFICATION_FEATURE_NO_PER_VCPU_VM = 1 << 0;
export const NOTIFICATION_FEATURE_NO_PER_VCPU_SP = 1 << 1;

/** FEATURES(MEM_SHARE/LEND/DONATE) w2 bit 0: a descriptor may travel in a buffer the endpoint allocated (w3/w4). */
export const MEM_SEND_DYNAMIC_BUFFER = 1 << 0;

/** FF-A page granule of every descriptor and mailbox size. */
export const FFA_PAGE_SIZE = 4096;

// RXTX_MAP properties in w2: [1:0] minimum size and alignment, [31:16] max pages (v1.2).
export const RXTX_MIN_SIZE_MASK = 0x3;
export const RXTX_MIN_SIZE_4K = 0;
export const RXTX_MIN_SIZE_64K = 1;
export const RXTX_MIN_SIZE_16K = 2;
export const RXTX_MAX_PAGES_SHIFT = 16;

/** Bytes of the minimum RX/TX size encoding; undefined for the reserved value. */
export function rxtxMinSizeBytes(props: number): number | undefined {
  switch (props & RXTX_MIN_SIZE_MASK) {
    case RXTX_MIN_SIZE_4K:
      return FFA_PAGE_SIZE;
    case RXTX_MIN_SIZE_16K:
      return 16384;
    case RXTX_MIN_SIZE_64K:
      return 65536;
    default:
      return undefined;
  }
}

export const rxtxMaxPages = (props: number): number => (props >>> RXTX_MAX_PAGES_SHIFT) & 0xffff;

// MEM_RETRIEVE_REQ input/output properties.
export const RETRIEVE_REQ_NS_BIT = 1 << 1;
export const RETRIEVE_REQ_HYP_RETRIEVE = 1 << 2;

/** RXTX_MAP w3: bits [5:0] page count. */
export const RXTX_PAGE_COUNT_MASK = 0x3f;
