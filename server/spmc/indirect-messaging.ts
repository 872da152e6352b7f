// Indirect messaging: FFA_MSG_SEND2 (Hafnium's api_ffa_msg_send2), from the sender's TX buffer
// into the receiver's RX buffer, with the RX-full framework notification.

import {
  decodeIndirectMessageHeader,
  FFA_ERRORS,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  ffaSuccess,
  formatVersion,
  FRAMEWORK_HYP_RX_FULL,
  FRAMEWORK_SPM_RX_FULL,
  hex,
  INDIRECT_MSG_HEADER_SIZE_V1_2,
  indirectMsgHeaderSize,
  PARTITION_PROPERTIES as P,
} from '../../proto/ffa/index.js';
import { fillRx, rxBufferSize, rxBusy } from './mailbox.js';
import { raiseNotifications } from './notifications.js';
import { type AbiTable, refuse } from './state.js';

const { INVALID_PARAMETERS, NOT_SUPPORTED, DENIED, BUSY } = FFA_ERRORS;
const F = 'MSG_SEND2';

export const indirectMessagingAbis: AbiTable = {
  MSG_SEND2: {
    handle({ state, caller, vcpu }, { senderVmId, delaySri }) {
      // w1 names a VM only when the hypervisor forwards for it; no endpoint here is the hypervisor.
      if (senderVmId !== 0)
        return refuse(INVALID_PARAMETERS, 'msg_send2.sender_vm_id', `${F}: w1 names sender ${hex(senderVmId)}; only the hypervisor forwarding a message may`);
      const tx = caller.mailbox;
      if (!tx) return refuse(DENIED, 'msg_send2.no_tx', `${F}: ${hex(caller.id)} has no TX buffer mapped`);

      // One copy of the header: later checks and the copy use it, whatever TX holds meanwhile.
      const header = decodeIndirectMessageHeader(state.memory.read(tx.tx, INDIRECT_MSG_HEADER_SIZE_V1_2));
      if (header.sender !== caller.id)
        return refuse(INVALID_PARAMETERS, 'msg_send2.header_sender', `${F}: header sender ${hex(header.sender)} is not the caller ${hex(caller.id)}`);
      if (header.receiver === header.sender)
        return refuse(INVALID_PARAMETERS, 'msg_send2.receiver_is_sender', `${F}: sender and receiver are both ${hex(header.sender)}`);
      if (caller.kind === 'vm' && delaySri)
        return refuse(INVALID_PARAMETERS, 'msg_send2.delay_sri', `${F}: only partitions may delay the SRI; ${hex(caller.id)} is a VM`);
      const receiver = state.endpoints.get(header.receiver);
      if (!receiver) return refuse(INVALID_PARAMETERS, 'msg_send2.receiver_unknown', `${F}: no endpoint ${hex(header.receiver)}`);

      // Whether both ends take indirect messages (ffa_indirect_msg_is_supported). A message
      // between two VMs is the hypervisor's, which leaves the sender's version to the copy.
      const spmcPath = caller.kind === 'sp' || receiver.kind === 'sp';
      if (spmcPath && caller.version < FFA_VERSION_1_1) {
        return refuse(
          DENIED,
          'msg_send2.sender_version',
          `${F}: sender ${hex(caller.id)} is FF-A v${formatVersion(caller.version)}; indirect messages need v1.1`,
        );
      }
      if (receiver.version < FFA_VERSION_1_1) {
        return refuse(
          DENIED,
          'msg_send2.receiver_version',
          `${F}: receiver ${hex(receiver.id)} is FF-A v${formatVersion(receiver.version)}; indirect messages need v1.1`,
        );
      }
      if ((caller.properties & P.INDIRECT_MSG) === 0)
        return refuse(DENIED, 'msg_send2.sender_no_indirect', `${F}: sender ${hex(caller.id)} does not send indirect messages`);
      if ((receiver.properties & P.INDIRECT_MSG) === 0)
        return refuse(DENIED, 'msg_send2.receiver_no_indirect', `${F}: receiver ${hex(receiver.id)} does not receive indirect messages`);
      if (rxBusy(receiver)) {
        const why = receiver.mailbox ? 'is full' : 'is not mapped';
        return refuse(BUSY, 'msg_send2.receiver_rx_busy', `${F}: the RX buffer of ${hex(receiver.id)} ${why}`);
      }

      // The copy (api_ffa_msg_send2_copy_data).
      if (caller.version <= FFA_VERSION_1_0)
        return refuse(NOT_SUPPORTED, 'msg_send2.sender_v1_0', `${F}: sender ${hex(caller.id)} is FF-A v1.0, which has no indirect messages`);
      const minOffset = indirectMsgHeaderSize(caller.version);
      if (header.offset < minOffset) {
        return refuse(
          INVALID_PARAMETERS,
          'msg_send2.offset',
          `${F}: payload offset ${header.offset} overlaps the ${minOffset}-byte header of a v${formatVersion(caller.version)} sender`,
        );
      }
      const total = header.offset + header.size; // both u32: no wrap in a JS number, compare instead
      const max = Math.min(rxBufferSize(caller), rxBufferSize(receiver));
      if (total > max)
        return refuse(INVALID_PARAMETERS, 'msg_send2.size', `${F}: offset ${header.offset} + size ${header.size} exceeds the ${max}-byte buffer`);

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
