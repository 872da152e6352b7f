// The command table of the built-in test partitions: w3 of a direct request picks the command,
// w4..w7 carry its arguments. One table, used by the partitions, the tests and the README.

import { MEM_TRANSACTION_TYPES, type MemTransactionType } from '../../proto/ffa/index.js';

export const PARTITION_COMMANDS = {
  /** Respond with w3..w7 exactly as received. Unknown commands are echoed too. */
  ECHO: 0x6563686f, // "echo"
  /**
   * w4 = the next partition, or a list of hops packed 16 bits each (first hop lowest): send a
   * 64-bit request to the first hop, FORWARD again with the rest, or ECHO with w5..w7 as its w4..w6
   * at the last; respond with that partition's response payload. An inner failure is answered as
   * ERROR with the FF-A code in w4.
   */
  FORWARD: 0x66776420, // "fwd "
  /** Call FFA_YIELD once; once run again, respond as ECHO. */
  YIELD: 0x796c6420, // "yld "
  /** Respond with w3 = ERROR and w4 = the FF-A error code given in w5. */
  ERROR: 0x65727220, // "err "
  /**
   * w4/w5 = handle low/high, w6 = pattern byte, w7 = transaction type (1 share, 2 lend, 3 donate):
   * retrieve it from the requester, write the pattern over every byte, read it back, relinquish
   * unless donated; respond w4 = 0 or the FF-A error code.
   */
  MEM: 0x6d656d20, // "mem "
  /** w4 = receiver, w5/w6 = bitmap low/high: FFA_NOTIFICATION_SET from this partition; respond w4 = 0 or the FF-A error. */
  NOTIFY: 0x6e746679, // "ntfy"
  /** w4 = receiver: FFA_MSG_SEND2 with w5..w7 as a 24-byte payload; respond w4 = 0 or the FF-A error. */
  SEND2: 0x736e6432, // "snd2"
  /** w4 = sender, w5/w6 = bitmap low/high: FFA_NOTIFICATION_BIND them for this partition; respond w4 = 0 or the FF-A error. */
  BIND: 0x626e6420, // "bnd "
} as const;

/** MEM's w7: a transaction type as FF-A numbers them (1 share, 2 lend, 3 donate). */
export const memCommandType = (n: number): MemTransactionType | undefined =>
  (Object.keys(MEM_TRANSACTION_TYPES) as MemTransactionType[]).find((t) => MEM_TRANSACTION_TYPES[t] === n);

export type PartitionCommand = keyof typeof PARTITION_COMMANDS;

/** Hops for FORWARD: [0x8002, 0x8003] -> 0x80038002. */
export function packHops(hops: readonly number[]): bigint {
  return hops.reduceRight((acc, h) => (acc << 16n) | BigInt(h & 0xffff), 0n);
}
