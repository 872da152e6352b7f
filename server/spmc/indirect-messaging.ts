// Indirect messaging: FFA_MSG_SEND2 (Hafnium's api_ffa_msg_send2), from the sender's TX buffer
// into the receiver's RX buffer, with the RX-full framework notification.

import {
  decodeIndirectMessageHeader,
  FFA_ERRORS,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  ffaError,
  ffaSuccess,
  FRAMEWORK_HYP_RX_FULL,
  FRAMEWORK_SPM_RX_FULL,
  INDIRECT_MSG_HEADER_SIZE_V1_2,
  indirectMsgHeaderSize,
  PARTITION_PROPERTIES as P,
} from '../../proto/ffa/index.js';
import { fillRx, rxBufferSize, rxBusy } from './mailbox.js';
import { raiseNotifications } from './notifications.js';
import type { AbiTable } from './state.js';

const { INVALID_PARAMETERS, NOT_SUPPORTED, DENIED, BUSY } = FFA_ERRORS;

export const indirectMessagingAbis: AbiTable = {
  MSG_SEND2: {
    handle({ state, caller, vcpu }, { senderVmId, delaySri }) {
      // w1 names a VM only when the hypervisor forwards for it; no endpoint here is the hypervisor.
      if (senderVmId !== 0) return ffaError(INVALID_PARAMETERS);
      // Indirect messages arrived in v1.1; a v1.0 caller has no header layout to send.
      if (caller.version <= FFA_VERSION_1_0) return ffaError(NOT_SUPPORTED);
      const tx = caller.mailbox;
      if (!tx) return ffaError(DENIED);

      // One copy of the header: later checks and the copy use it, whatever TX holds meanwhile.
      const header = decodeIndirectMessageHeader(state.memory.read(tx.tx, INDIRECT_MSG_HEADER_SIZE_V1_2));
      if (header.sender !== caller.id) return ffaError(INVALID_PARAMETERS);
      if (header.receiver === header.sender) return ffaError(INVALID_PARAMETERS);
      if (caller.kind === 'vm' && delaySri) return ffaError(INVALID_PARAMETERS);
      const receiver = state.endpoints.get(header.receiver);
      if (!receiver) return ffaError(INVALID_PARAMETERS);
      if (receiver.version < FFA_VERSION_1_1) return ffaError(DENIED);
      if ((caller.properties & P.INDIRECT_MSG) === 0 || (receiver.properties & P.INDIRECT_MSG) === 0) return ffaError(DENIED);
      if (rxBusy(receiver)) return ffaError(BUSY);

      if (header.offset < indirectMsgHeaderSize(caller.version)) return ffaError(INVALID_PARAMETERS);
      const total = header.offset + header.size; // both u32: no wrap in a JS number, compare instead
      if (total > Math.min(rxBufferSize(caller), rxBufferSize(receiver))) return ffaError(INVALID_PARAMETERS);

      fillRx(state, receiver, state.memory.read(tx.tx, total), caller.id, 'MSG_SEND2');
      // VMs always take framework notifications; a partition only if it receives notifications.
      if (receiver.kind === 'vm' || receiver.notifications.enabled) {
        const bit = caller.kind === 'vm' ? FRAMEWORK_HYP_RX_FULL : FRAMEWORK_SPM_RX_FULL;
        raiseNotifications(state, receiver, receiver.notifications.framework, bit, delaySri ? vcpu : undefined);
      }
      return ffaSuccess();
    },
  },
};
