// Direct messaging: FFA_MSG_SEND_DIRECT_REQ/RESP (32/64) and REQ2/RESP2, in Hafnium's order of
// checks (api_ffa_msg_send_direct_req / _resp).

import {
  type CallOf,
  FFA_ERRORS,
  FFA_VERSION_1_2,
  ffaError,
  isNilUuid,
  PARTITION_PROPERTIES as P,
  type SrcDst,
  type Uuid,
  uuidEquals,
} from '../../proto/ffa/index.js';
import { waitForNext } from './cpu-cycles.js';
import type { DirectRequest } from './endpoint.js';
import { type CallContext, park, type Reply, vcpuRef, wake } from './state.js';
import type { AbiTable } from './state.js';

const { INVALID_PARAMETERS, DENIED, BUSY } = FFA_ERRORS;

type RequestCall = CallOf<'MSG_SEND_DIRECT_REQ'> | CallOf<'MSG_SEND_DIRECT_REQ2'>;
type ResponseCall = CallOf<'MSG_SEND_DIRECT_RESP'> | CallOf<'MSG_SEND_DIRECT_RESP2'>;

function sendRequest(ctx: CallContext, call: RequestCall, route: SrcDst, uuid?: Uuid): Reply {
  const { state, caller, vcpu } = ctx;
  const req2 = call.fn === 'MSG_SEND_DIRECT_REQ2';
  const framework = call.fn === 'MSG_SEND_DIRECT_REQ' && call.message.kind === 'framework';

  // Who may send to whom. Identity is the caller's; a partition never sends to the normal world.
  const receiver = state.endpoints.get(route.destination);
  if (route.source !== caller.id || !receiver || receiver.id === caller.id) return ffaError(INVALID_PARAMETERS);
  if (caller.kind === 'sp' && receiver.kind === 'vm') return ffaError(INVALID_PARAMETERS);
  // Framework messages belong to the partition manager and the hypervisor, which is the server.
  if (framework) return ffaError(INVALID_PARAMETERS);
  if (uuid && !isNilUuid(uuid) && !receiver.uuids.some((u) => uuidEquals(u, uuid))) return ffaError(INVALID_PARAMETERS);

  // Messaging methods, from the manifest for partitions and from attach for VMs.
  const recvBit = req2 ? P.DIRECT_REQ2_RECV : P.DIRECT_REQ_RECV;
  const sendBit = req2 ? P.DIRECT_REQ2_SEND : P.DIRECT_REQ_SEND;
  if (req2 && (caller.version < FFA_VERSION_1_2 || receiver.version < FFA_VERSION_1_2)) return ffaError(DENIED);
  if ((receiver.properties & recvBit) === 0) return ffaError(DENIED);
  if ((caller.properties & sendBit) === 0) return ffaError(DENIED);

  // A request back into the call chain would deadlock it.
  const chain = vcpu.handling ? [...vcpu.handling.chain, caller.id] : [caller.id];
  if (chain.includes(receiver.id)) return ffaError(DENIED);

  // Served on the context matching the caller's vCPU; it must be waiting for a request.
  const target = receiver.vcpus[vcpu.index % receiver.vcpuCount]!;
  if (target.state !== 'waiting') return ffaError(BUSY);

  const origin = vcpuRef(caller, vcpu);
  target.handling = { origin, chain, kind: req2 ? 'req2' : 'req', framework, originGone: false } satisfies DirectRequest;
  const targetRef = vcpuRef(receiver, target);
  wake(state, targetRef, call);
  return park(vcpu, 'blocked', call.fn, targetRef);
}

function sendResponse(ctx: CallContext, call: ResponseCall): Reply {
  const { state, caller, vcpu } = ctx;
  const { route } = call;
  if (route.source !== caller.id || route.destination === caller.id) return ffaError(INVALID_PARAMETERS);
  const req = vcpu.handling;
  if (!req) return ffaError(DENIED);
  if (req.origin.endpoint !== route.destination) return ffaError(DENIED);
  const framework = call.fn === 'MSG_SEND_DIRECT_RESP' && call.message.kind === 'framework';
  if (framework !== req.framework) return ffaError(DENIED);
  if ((call.fn === 'MSG_SEND_DIRECT_RESP2') !== (req.kind === 'req2')) return ffaError(DENIED);

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
