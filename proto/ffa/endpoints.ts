// Endpoint IDs and partition properties.

export type EndpointId = number; // u16

export const SPMC_ID: EndpointId = 0x8000;
export const SP_ID_BASE: EndpointId = 0x8001;
export const VM_ID_MIN: EndpointId = 1;
export const VM_ID_MAX: EndpointId = 0x7fff;
/** Bit 15 set: a secure-world endpoint. */
export const SECURE_ID_BIT = 0x8000;

export const isSecureId = (id: EndpointId): boolean => (id & SECURE_ID_BIT) !== 0;
export const isVmId = (id: EndpointId): boolean => id >= VM_ID_MIN && id <= VM_ID_MAX;

/** The SPMD's own ID at the secure physical instance. */
export const SPMD_ID: EndpointId = 0xffff;
/** IDs of the SPMD's (EL3) logical partitions: the 63 below the SPMD's (Hafnium's EL3_SPMD_LP_ID_START/END). */
export const SPMD_LP_ID_START: EndpointId = SPMD_ID - 63;
export const SPMD_LP_ID_END: EndpointId = SPMD_ID - 1;
export const isSpmdLogicalId = (id: EndpointId): boolean => id >= SPMD_LP_ID_START && id <= SPMD_LP_ID_END;

/** Partition properties (u32) of the partition-info descriptor. */
export const PARTITION_PROPERTIES = {
  DIRECT_REQ_RECV: 1 << 0,
  DIRECT_REQ_SEND: 1 << 1,
  INDIRECT_MSG: 1 << 2,
  NOTIFICATION_RECV: 1 << 3,
  // bits [5:4]: partition ID type; 00 = PE endpoint
  VM_CREATED: 1 << 6,
  VM_DESTROYED: 1 << 7,
  AARCH64_EXEC: 1 << 8,
  DIRECT_REQ2_RECV: 1 << 9,
  DIRECT_REQ2_SEND: 1 << 10,
} as const;

export const PARTITION_ID_TYPE_SHIFT = 4;
export const PARTITION_ID_TYPE_MASK = 0x3 << PARTITION_ID_TYPE_SHIFT;

/** Property bits defined for a reader of each version; the rest are MBZ in what it receives. */
export const PARTITION_PROPERTIES_MASK_V1_0 = 0x7;
export const PARTITION_PROPERTIES_MASK_V1_1 = 0x7ff;
