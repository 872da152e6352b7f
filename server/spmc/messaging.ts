// Direct messaging: FFA_MSG_SEND_DIRECT_REQ/RESP (32/64) and REQ2/RESP2, in Hafnium's order of
// checks (api_ffa_msg_send_direct_req / _resp), each refusal with its reason.

import {
  type CallOf,
  type EndpointId,
  FFA_ERRORS,
  FFA_VERSION_1_2,
  type FfaVersion,
  formatUuid,
  formatVersion,
  hex,
  isNilUuid,
  isSecureId,
  isSpmdLogicalId,
  PARTITION_PROPERTIES as P,
  type SrcDst,
  type Uuid,
  uuidEquals,
} from '../../proto/ffa/index.js';
import { waitForNext } from './cpu-cycles.js';
import type { DirectRequest, Vcpu } from './endpoint.js';
import { logicalAnswer, logicalProperties, LOGICAL_PARTITION_VERSION, type LogicalPartition } from './logical-partitions.js';
import { npiInterrupt, takeLatchedNpi } from './notifications.js';
import { type CallContext, park, refuse, type Reply, vcpuRef, wake } from './state.js';
import type { AbiTable } from './state.js';

const { INVALID_PARAMETERS, DENIED, BUSY } = FFA_ERRORS;

type RequestCall = CallOf<'MSG_SEND_DIRECT_REQ'> | CallOf<'MSG_SEND_DIRECT_REQ2'>;
type ResponseCall = CallOf<'MSG_SEND_DIRECT_RESP'> | CallOf<'MSG_SEND_DIRECT_RESP2'>;

/** What the checks before delivery need of a receiver: an endpoint or a logical partition. */
interface Receiver {
  id: EndpointId;
  uuids: readonly Uuid[];
  version: FfaVersion;
  properties: number;
}

const asReceiver = (lp: LogicalPartition): Receiver => ({ id: lp.id, uuids: lp.uuids, version: LOGICAL_PARTITION_VERSION, properties: logicalProperties(lp) });

/** Why a context cannot take a request now, or undefined when it waits for one. */
function busyWith(v: Vcpu): string | undefined {
  if (v.handling?.response) return 'is taking its notification pending interrupt';
  if (v.handling) return `is serving a request from ${hex(v.handling.origin.endpoint)}`;
  if (v.state === 'running') return 'is running';
  return undefined;
}

function sendRequest(ctx: CallContext, call: RequestCall, route: SrcDst, uuid?: Uuid): Reply {
  const { state, caller, vcpu } = ctx;
  const req2 = call.fn === 'MSG_SEND_DIRECT_REQ2';
  const fn = call.fn;
  const code = fn.toLowerCase();
  const framework = call.fn === 'MSG_SEND_DIRECT_REQ' && call.message.kind === 'framework';
  const { source, destination } = route;

  // Framework messages belong to the SPMD and the hypervisor; here the server is both.
  if (framework)
    return refuse(INVALID_PARAMETERS, `${code}.framework`, `${fn}: framework messages come from the SPMD or the hypervisor, not from ${hex(caller.id)}`);
  // Who may send to whom (ffa_direct_msg_is_direct_request_valid). Identity is the caller's.
  if (source === destination) return refuse(INVALID_PARAMETERS, `${code}.receiver_is_sender`, `${fn}: sender and receiver are both ${hex(source)}`);
  if (source !== caller.id) return refuse(INVALID_PARAMETERS, `${code}.sender_not_caller`, `${fn}: sender ${hex(source)} is not the caller ${hex(caller.id)}`);
  if (caller.kind === 'sp' && !isSecureId(destination)) {
    return refuse(
      INVALID_PARAMETERS,
      `${code}.sp_to_normal_world`,
      `${fn}: partition ${hex(caller.id)} may not send a direct request to the normal world (${hex(destination)})`,
    );
  }

  const endpoint = state.endpoints.get(destination);
  const logical = isSpmdLogicalId(destination) ? state.logicalPartitions.find((lp) => lp.id === destination) : undefined;
  if (logical && (caller.kind === 'vm' || !logical.answers)) {
    // Hafnium does not forward it (vm_find fails); TF-A's SPMD refuses it from either world.
    const why = caller.kind === 'vm' ? 'is reachable from partitions only' : 'takes no direct requests (the manifest gives it no answers)';
    return refuse(INVALID_PARAMETERS, `${code}.receiver_logical`, `${fn}: SPMD logical partition ${hex(destination)} ${why}`);
  }
  const receiver: Receiver | undefined = endpoint ?? (logical && asReceiver(logical));
  if (!receiver) return refuse(INVALID_PARAMETERS, `${code}.receiver_unknown`, `${fn}: no endpoint ${hex(destination)}`);
  if (uuid && !isNilUuid(uuid) && !receiver.uuids.some((u) => uuidEquals(u, uuid))) {
    return refuse(INVALID_PARAMETERS, `${code}.uuid_unknown`, `${fn}: ${hex(receiver.id)} has no service ${formatUuid(uuid)}`);
  }

  // Messaging methods (ffa_direct_msg_is_direct_request_supported), from the manifest for
  // partitions and from attach for VMs.
  if (req2 && caller.version < FFA_VERSION_1_2) {
    return refuse(DENIED, `${code}.sender_version`, `${fn}: sender ${hex(caller.id)} is FF-A v${formatVersion(caller.version)}; REQ2 needs v1.2`);
  }
  if (req2 && receiver.version < FFA_VERSION_1_2) {
    return refuse(DENIED, `${code}.receiver_version`, `${fn}: receiver ${hex(receiver.id)} is FF-A v${formatVersion(receiver.version)}; REQ2 needs v1.2`);
  }
  const [sendBit, sendName] = req2 ? [P.DIRECT_REQ2_SEND, 'DIRECT_REQ2_SEND'] : [P.DIRECT_REQ_SEND, 'DIRECT_REQ_SEND'];
  const [recvBit, recvName] = req2 ? [P.DIRECT_REQ2_RECV, 'DIRECT_REQ2_RECV'] : [P.DIRECT_REQ_RECV, 'DIRECT_REQ_RECV'];
  if ((caller.properties & sendBit) === 0) {
    return refuse(
      DENIED,
      `${code}.sender_cannot_send`,
      `${fn}: ${hex(caller.id)} does not send ${req2 ? 'REQ2' : 'direct'} requests (no ${sendName} property)`,
    );
  }
  if ((receiver.properties & recvBit) === 0) {
    return refuse(
      DENIED,
      `${code}.receiver_cannot_receive`,
      `${fn}: ${hex(receiver.id)} does not receive ${req2 ? 'REQ2' : 'direct'} requests (no ${recvName} property)`,
    );
  }
  // A logical partition the manifest lets answer does so at once; it has no contexts to schedule.
  if (!endpoint) return logicalAnswer(logical!, caller.id, call.fn === 'MSG_SEND_DIRECT_REQ' ? call.width : 64, call.args);

  // Served on the context matching the caller's vCPU, which must be waiting for a request.
  const target = endpoint.vcpus[vcpu.index % endpoint.vcpuCount]!;
  const busy = busyWith(target);
  if (busy) return refuse(BUSY, `${code}.receiver_busy`, `${fn}: ${hex(endpoint.id)} context ${target.index} ${busy}`);
  // A request back into the call chain would deadlock it (the runtime model's check).
  const chain = vcpu.handling ? [...vcpu.handling.chain, caller.id] : [caller.id];
  if (chain.includes(endpoint.id)) {
    return refuse(
      DENIED,
      `${code}.call_chain_loop`,
      `${fn}: ${hex(endpoint.id)} is already in this call chain (${[...chain, endpoint.id].map(hex).join(' -> ')})`,
    );
  }
  if (target.state !== 'waiting') {
    return refuse(BUSY, `${code}.receiver_not_waiting`, `${fn}: ${hex(endpoint.id)} context ${target.index} is ${target.state}, not waiting for a request`);
  }

  const origin = vcpuRef(caller, vcpu);
  target.handling = { origin, chain, kind: req2 ? 'req2' : 'req', framework, originGone: false } satisfies DirectRequest;
  const targetRef = vcpuRef(endpoint, target);
  wake(state, targetRef, call);
  return park(vcpu, 'blocked', call.fn, targetRef);
}

function sendResponse(ctx: CallContext, call: ResponseCall): Reply {
  const { state, caller, vcpu } = ctx;
  const fn = call.fn;
  const code = fn.toLowerCase();
  const { source, destination } = call.route;
  // ffa_direct_msg_is_direct_response_valid.
  if (source === destination) return refuse(INVALID_PARAMETERS, `${code}.receiver_is_sender`, `${fn}: sender and receiver are both ${hex(source)}`);
  if (source !== caller.id) return refuse(INVALID_PARAMETERS, `${code}.sender_not_caller`, `${fn}: sender ${hex(source)} is not the caller ${hex(caller.id)}`);
  // The runtime model, then the request outstanding (..._validate_ongoing_request).
  const req = vcpu.handling;
  if (!req || req.response) return refuse(DENIED, `${code}.no_request`, `${fn}: ${hex(caller.id)} context ${vcpu.index} has no direct request to answer`);
  if (req.origin.endpoint !== destination) {
    return refuse(DENIED, `${code}.not_origin`, `${fn}: the request came from ${hex(req.origin.endpoint)}, not ${hex(destination)}`);
  }
  const framework = call.fn === 'MSG_SEND_DIRECT_RESP' && call.message.kind === 'framework';
  if (framework !== req.framework) {
    return refuse(
      DENIED,
      `${code}.framework_mismatch`,
      `${fn}: a ${framework ? 'framework' : 'partition'} response to a ${req.framework ? 'framework' : 'partition'} message`,
    );
  }
  const resp2 = call.fn === 'MSG_SEND_DIRECT_RESP2';
  if (resp2 !== (req.kind === 'req2')) {
    return refuse(
      DENIED,
      `${code}.kind_mismatch`,
      `${fn}: the request was ${req.kind === 'req2' ? 'MSG_SEND_DIRECT_REQ2' : 'MSG_SEND_DIRECT_REQ'}; answer it with ${req.kind === 'req2' ? 'RESP2' : 'RESP'}`,
    );
  }

  // Notifications arrived for the responder: it takes the NPI now, on the requester's cycles, and
  // the requester gets this response when the responder next waits (Hafnium's
  // ffa_interrupts_intercept_call leaves the requester preempted until then).
  if (takeLatchedNpi(caller)) {
    req.response = call;
    return npiInterrupt();
  }
  vcpu.handling = undefined;
  if (!req.originGone) wake(state, req.origin, call);
  else state.dropped++;
  // A response ends the cycle: the responder waits for its next request.
  return waitForNext(state, vcpu, call.fn, call);
}

export const messagingAbis: AbiTable = {
  MSG_SEND_DIRECT_REQ: { handle: (ctx, call) => sendRequest(ctx, call, call.route) },
  MSG_SEND_DIRECT_REQ2: { handle: (ctx, call) => sendRequest(ctx, call, call.route, call.uuid) },
  MSG_SEND_DIRECT_RESP: { handle: (ctx, call) => sendResponse(ctx, call) },
  MSG_SEND_DIRECT_RESP2: { handle: (ctx, call) => sendResponse(ctx, call) },
};
