/**
 * The thread of one vCPU: runs KVM_RUN synchronously, decodes each exit, lets
 * an optional in-thread handler answer it, and otherwise hands it to the
 * Vcpu on the main thread and waits for the next request. All of the vCPU's
 * ioctls are issued here, from the thread that runs it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { viewOf } from '../sys/ffi.js';
import { getRegs, getSregs, kvmRun, setCpuid2, setRegs, setSregs } from '../sys/kvm.js';
import { KVM_RUN_OFFSETS } from '../sys/kvm-uapi.js';
import { gettid, pthreadSelf } from '../sys/libc.js';
import { setupRegs, setupSregs } from './cpu-setup.js';
import { applyResponse, decodeExit, type ExitResponse, type VcpuExit } from './exits.js';
import { serializeError, type ExitHandlerModule, type WorkerInit, type WorkerReply, type WorkerRequest } from './worker-protocol.js';

const init = workerData as WorkerInit;
const port = parentPort;
if (!port) throw new Error('vcpu-worker must run in a worker thread');
const run = new DataView(viewOf(init.runAddress, init.runSize));
const context = { target: `vCPU ${init.id} (fd ${init.fd})` };
let handler: ((exit: VcpuExit) => ExitResponse | undefined) | undefined;
let lastExit: VcpuExit | undefined;

function reply(message: WorkerReply): void {
  port?.postMessage(message);
}

/** Runs until an exit the in-thread handler does not answer. */
function runUntilExit(response: ExitResponse | undefined): WorkerReply {
  if (lastExit) applyResponse(run, lastExit, response);
  let handled = 0;
  for (;;) {
    const { result, errno } = kvmRun(init.fd);
    const exit = decodeExit(run, result, errno);
    if (exit.kind === 'interrupted') run.setUint8(KVM_RUN_OFFSETS.immediate_exit, 0);
    const answer = handler?.(exit);
    lastExit = exit;
    if (answer === undefined) return { type: 'exit', exit, handled };
    applyResponse(run, exit, answer);
    handled++;
  }
}

function serve(request: WorkerRequest): WorkerReply {
  switch (request.type) {
    case 'setup':
      setCpuid2(init.fd, init.cpuid, context);
      setSregs(init.fd, setupSregs(getSregs(init.fd, context), request.setup), context);
      setRegs(init.fd, setupRegs(request.setup), context);
      lastExit = undefined;
      return { type: 'ok' };
    case 'run':
      return runUntilExit(request.response);
    case 'getRegs':
      return { type: 'ok', value: getRegs(init.fd, context) };
    case 'setRegs':
      setRegs(init.fd, request.regs, context);
      return { type: 'ok' };
    case 'getSregs':
      return { type: 'ok', value: getSregs(init.fd, context) };
    case 'setSregs':
      setSregs(init.fd, request.sregs, context);
      return { type: 'ok' };
  }
}

if (init.handler !== undefined) {
  const module = (await import(init.handler)) as ExitHandlerModule;
  handler = module.createExitHandler(init.handlerOptions);
}

port.on('message', (request: WorkerRequest) => {
  try {
    reply(serve(request));
  } catch (error) {
    reply({ type: 'error', error: serializeError(error) });
  }
});
reply({ type: 'ready', pthread: pthreadSelf(), tid: gettid() });
